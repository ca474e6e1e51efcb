"""The distribution-spec error codes as one exception family.

Every 4xx body uses one of the spec's fourteen codes (v1.1: "The code field MUST be one of
the following"); the message says what exactly went wrong. 5xx bodies are not bound by
that list: Berth answers UNKNOWN (a bug) and UNAVAILABLE (storage down, retry later).

Registry semantics raise these with what went wrong; `response()` is their HTTP form:
the status and the spec's JSON body `{"errors": [{"code", "message", "detail"}]}`.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from aiohttp import web


class RegistryError(Exception):
    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "unknown error"
    closes_connection: ClassVar[bool] = False  # the request's body may still be arriving

    def __init__(
        self, message: str | None = None, detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.detail = detail
        self.headers = headers or {}
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Whole across processes (manifests are examined in a worker): the default keeps
        # only the message.
        return (_rebuild, (type(self), self.message, self.detail, self.headers))

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}

    def response(self) -> web.Response:
        """The HTTP answer: the status, the spec's JSON body, the error's headers (the one
        place the body is rendered, for the API and the token server alike)."""
        response = web.Response(status=self.status, body=json.dumps(self.body()).encode(),
                                content_type="application/json", headers=self.headers)
        if self.closes_connection:
            response.force_close()
        return response


def _rebuild(cls: type[RegistryError], message: str, detail: Any,
             headers: dict[str, str]) -> RegistryError:
    error = cls.__new__(cls)
    RegistryError.__init__(error, message, detail, headers)
    return error


class BlobUnknown(RegistryError):
    code, status, default_message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"


class BodyStalled(BlobUploadInvalid):
    """The client stopped sending the body: 408, and the connection is closed."""

    status, default_message = 408, "the request body stopped arriving"
    closes_connection = True


class BlobUploadUnknown(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code, status = "DIGEST_INVALID", 400
    default_message = "provided digest did not match uploaded content"


class ManifestBlobUnknown(RegistryError):
    code, status = "MANIFEST_BLOB_UNKNOWN", 400
    default_message = "manifest references a manifest or blob unknown to registry"


class ManifestInvalid(RegistryError):
    code, status, default_message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestUnknown(RegistryError):
    code, status, default_message = "MANIFEST_UNKNOWN", 404, "manifest unknown to registry"


class NameInvalid(RegistryError):
    code, status, default_message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(RegistryError):
    code, status, default_message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(RegistryError):
    code, status, default_message = "SIZE_INVALID", 400, "provided length did not match content"


class ManifestTooLarge(SizeInvalid):
    status, default_message = 413, "manifest exceeds the size limit"


class RangeInvalid(BlobUploadInvalid):
    """A chunk that does not continue the upload where it stands: 416 with the current Range."""

    status, default_message = 416, "requested range not satisfiable"


class BlobRangeNotSatisfiable(RegistryError):
    code, status, default_message = "SIZE_INVALID", 416, "requested range not satisfiable"


class Unauthorized(RegistryError):
    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"


class Denied(RegistryError):
    code, status, default_message = "DENIED", 403, "requested access to the resource is denied"


class Unsupported(RegistryError):
    code, status, default_message = "UNSUPPORTED", 405, "the operation is unsupported"


class NotFound(RegistryError):
    code, status, default_message = "UNSUPPORTED", 404, "no such endpoint"


class TooManyRequests(RegistryError):
    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"


class Unavailable(RegistryError):
    code, status, default_message = "UNAVAILABLE", 503, "storage is unavailable, try again"

    def __init__(self, message: str | None = None, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
