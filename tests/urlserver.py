"""A loopback HTTP server standing in for the `urls` host of foreign layers."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class UrlServer:
    """Serves `blobs` at /blobs/<name>, and /fwlink/<name> redirects there (as Microsoft's
    links do); records every request's headers."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        outer = self
        self.requests: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(dict(self.headers))
                kind, _, name = self.path.strip("/").partition("/")
                if kind == "fwlink" and name in blobs:
                    self.send_response(302)
                    self.send_header("Location", f"/blobs/{name}")
                    self.end_headers()
                elif kind == "blobs" and name in blobs:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(blobs[name])))
                    self.end_headers()
                    self.wfile.write(blobs[name])
                else:
                    self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
