"""HTTP to one registry: TLS choices, auth negotiation, retries with backoff.

A `RegistrySession` learns the registry's challenge once (`GET /v2/`), then sends each
request with the credentials its scope needs: HTTP Basic, or a bearer token fetched from
the realm (Docker registry token specification), cached until it expires. A request with
a replayable body is retried on connection errors, 429 and 5xx, honouring `Retry-After`.
Redirects are followed by hand so that credentials never reach another host.

Loopback hosts without an explicit scheme are treated as Docker treats insecure
registries: HTTPS (unverified) first, plain HTTP when TLS is not spoken there. The answer
is remembered per host for the life of the process, so the probe happens once at most.
With `--debug`, every request and its status is logged (`client.session`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import ssl
import time
from collections.abc import AsyncIterable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from .auth import Challenge, Credentials, parse_challenges
from .errors import AuthError, NetworkError, RegistryResponseError
from .oci.jsondoc import JSONDocumentError, loads

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "berth/0.1"

Body = bytes | AsyncIterable[bytes] | None

# What the TLS probe of a loopback host found ("https" or "http"), for this process: every
# session (and every Client) to the host after the first one skips the probe.
_probed_schemes: dict[str, str] = {}


@dataclass(frozen=True)
class TransportOptions:
    insecure: bool = False  # https without verification; http when TLS fails
    plain_http: bool | None = None  # None: http for loopback hosts, https elsewhere
    ca_file: str | None = None
    retries: int = 4
    backoff: float = 0.5  # seconds, doubled per attempt, with jitter
    connect_timeout: float = 30.0
    read_timeout: float = 300.0
    user_agent: str = USER_AGENT


def is_loopback(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _retry_after(response: aiohttp.ClientResponse | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


@dataclass
class _Token:
    header: str
    expires: float


class RegistrySession:
    """Authenticated HTTP to one registry host (`host[:port]`)."""

    def __init__(
        self, host: str, credentials: Credentials | Callable[[], Credentials | None] | None = None,
        options: TransportOptions | None = None, http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.host = host
        # Credentials, or how to find them (a Docker config file, maybe a credential helper
        # process): looked up once, off the event loop, when the registry first asks.
        self.credentials: Credentials | None = None
        self._find_credentials: Callable[[], Credentials | None] | None = None
        if callable(credentials):
            self._find_credentials = credentials
        else:
            self.credentials = credentials
        self.options = options or TransportOptions()
        # Loopback registries are treated as Docker treats insecure ones: HTTPS without
        # verification first, plain HTTP when TLS is not spoken there (remembered per host).
        self._probe = self.options.plain_http is None and is_loopback(host)
        self.scheme = "http" if self.options.plain_http else "https"
        if self._probe and host in _probed_schemes:
            self.scheme = _probed_schemes[host]
        self._http = http
        self._own_http = http is None
        self._closed = False
        self._challenge: Challenge | None = None
        self._challenge_known = False
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._token_locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self._lock = asyncio.Lock()

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def _ssl(self) -> ssl.SSLContext | bool:
        if self.options.insecure or self._probe:
            return False
        if self.options.ca_file:
            return ssl.create_default_context(cafile=self.options.ca_file)
        return True

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise NetworkError(f"{self.host}: the session is closed")
        if self._http is None:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=self.options.connect_timeout,
                sock_read=self.options.read_timeout,
            )
            connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=64)
            self._http = aiohttp.ClientSession(
                timeout=timeout, connector=connector,
                headers={"User-Agent": self.options.user_agent}, auto_decompress=False,
            )
        return self._http

    async def close(self) -> None:
        self._closed = True
        if self._http is not None and self._own_http:
            await self._http.close()
        self._http = None

    async def __aenter__(self) -> RegistrySession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- auth ---------------------------------------------------------------------

    async def _learn_challenge(self) -> None:
        async with self._lock:
            if self._challenge_known:
                return
            if self._probe and self.host not in _probed_schemes:
                await self._probe_scheme()
                _probed_schemes[self.host] = self.scheme
            response = await self._send_retrying("GET", f"{self.base_url}/v2/")
            async with response:
                if response.status == 401:
                    self._challenge = self._pick(response)
                    if self._find_credentials is not None:
                        self.credentials = await asyncio.to_thread(self._find_credentials)
                        self._find_credentials = None
                elif response.status >= 400 and response.status != 404:
                    raise RegistryResponseError(response.status, "GET", str(response.url),
                                                await _json_or_none(response))
            self._challenge_known = True

    async def _probe_scheme(self) -> None:
        try:
            response = await self.http.get(f"https://{self.host}/v2/", allow_redirects=False,
                                           timeout=aiohttp.ClientTimeout(total=10))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("%s: no TLS (%s), using plain HTTP for this process", self.host, exc)
            self.scheme = "http"
        else:
            response.release()
            log.debug("%s: TLS answered (HTTP %d), using HTTPS", self.host, response.status)
            self.scheme = "https"

    @staticmethod
    def _pick(response: aiohttp.ClientResponse) -> Challenge | None:
        challenges: list[Challenge] = []
        for header in response.headers.getall("WWW-Authenticate", []):
            challenges += parse_challenges(header)
        for scheme in ("bearer", "basic"):
            for challenge in challenges:
                if challenge.scheme == scheme:
                    return challenge
        return None

    async def _authorization(self, scopes: Sequence[str], fresh: bool = False) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            if self.credentials is None or self.credentials.identity_token:
                return None  # try anonymously: the registry may allow it for this repository
            return self.credentials.basic()
        key = tuple(sorted(set(scopes)))
        stale = self._tokens.get(key) if fresh else None
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:  # one fetch per scope set, however many requests wait for it
            cached = self._tokens.get(key)
            usable = cached is not None and cached is not stale
            if usable and cached is not None and cached.expires > time.time() + 10:
                return cached.header
            token, lifetime = await self._fetch_token(challenge, key)
            header = f"Bearer {token}"
            self._tokens[key] = _Token(header, time.time() + lifetime)
            return header

    def forget_token(self, scopes: Sequence[str]) -> None:
        """Drop the cached token of a scope set (the registry refused it)."""
        self._tokens.pop(tuple(sorted(set(scopes))), None)

    async def _fetch_token(self, challenge: Challenge, scopes: Sequence[str]) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthError(f"{self.host} sent a bearer challenge without a realm")
        service = challenge.params.get("service")
        creds = self.credentials
        try:
            if creds is not None and creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "client_id": "berth", "scope": " ".join(scopes)}
                if service:
                    form["service"] = service
                log.debug("POST %s (refresh token, scope %s)", realm, form["scope"])
                response = await self.http.post(realm, data=form, allow_redirects=True)
            else:
                params: list[tuple[str, str]] = [("scope", s) for s in scopes]
                if service:
                    params.append(("service", service))
                headers = {"Authorization": creds.basic()} if creds and creds.username else {}
                response = await self.http.get(realm, params=params, headers=headers)
                log.debug("GET %s: HTTP %d", response.url, response.status)
            async with response:
                if response.status in (401, 403):
                    raise AuthError(
                        f"authentication to {self.host} failed (HTTP {response.status} from "
                        f"{urlsplit(realm).netloc}): check the credentials (berth login)"
                    )
                if response.status != 200:
                    raise AuthError(f"token server {realm} answered HTTP {response.status}")
                body = loads(await response.read())
        except aiohttp.ClientError as exc:
            raise NetworkError(f"cannot reach token server {realm}: {exc}") from None
        except JSONDocumentError as exc:
            raise AuthError(f"token server {realm} answered with {exc}") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"token server {realm} returned no token")
        lifetime = body.get("expires_in") or 60
        return token, float(lifetime) if isinstance(lifetime, int | float) else 60.0

    # -- requests -----------------------------------------------------------------

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str], data: Body,
        params: Any,
    ) -> aiohttp.ClientResponse:
        try:
            response = await self.http.request(
                method, url, headers=headers, data=data, params=params, allow_redirects=False
            )
        except aiohttp.ClientSSLError as exc:
            same_host = urlsplit(url).netloc == self.host
            if self.options.insecure and self.scheme == "https" and same_host:
                log.info("%s: TLS failed (%s), falling back to plain HTTP", self.host, exc)
                self.scheme = "http"
                return await self._send(method, url.replace("https://", "http://", 1),
                                        headers, data, params)
            raise NetworkError(f"TLS error talking to {self.host}: {exc}") from None
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            log.debug("%s %s: %s", method, url, exc or type(exc).__name__)
            raise
        log.debug("%s %s: HTTP %d", method, response.url, response.status)
        return response

    async def _send_retrying(self, method: str, url: str) -> aiohttp.ClientResponse:
        """A body-less request, retried on connection errors, 429 and 5xx."""
        attempt = 0
        while True:
            try:
                response = await self._send(method, url, {}, None, None)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                if attempt >= self.options.retries:
                    raise NetworkError(f"cannot reach {self.host}: {exc or type(exc).__name__}"
                                       ) from None
                await self._backoff(attempt, None, f"{type(exc).__name__} {exc}")
            else:
                if response.status not in RETRY_STATUSES or attempt >= self.options.retries:
                    return response
                delay = _retry_after(response)
                response.release()
                await self._backoff(attempt, delay, f"HTTP {response.status}")
            attempt += 1

    async def request(
        self, method: str, path: str, *, scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None, data: Body = None, params: Any = None,
        expect: Collection[int] = (200,), follow_redirects: bool = True, retry: bool = True,
    ) -> aiohttp.ClientResponse:
        """Send a request to `path` (relative to the host, or an absolute URL the registry
        gave, e.g. an upload Location). Returns the response, unread, when its status is in
        `expect`; otherwise raises `RegistryResponseError` (or `AuthError` for 401/403). With
        `retry=False` a failure is reported at once (uploads resume on their own)."""
        await self._learn_challenge()
        url = path if path.startswith(("http://", "https://")) else urljoin(self.base_url, path)
        replayable = data is None or isinstance(data, bytes)
        attempt = 0 if retry else self.options.retries
        reauthenticated = False
        while True:
            request_headers = dict(headers or {})
            auth = await self._authorization(scopes, fresh=reauthenticated)
            if auth and urlsplit(url).netloc == self.host:
                request_headers["Authorization"] = auth
            response: aiohttp.ClientResponse | None = None
            try:
                response = await self._send(method, url, request_headers, data, params)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                if not replayable or attempt >= self.options.retries:
                    raise NetworkError(f"{method} {url}: {exc or type(exc).__name__}") from None
                await self._backoff(attempt, None, f"{type(exc).__name__} {exc}")
                attempt += 1
                continue
            status = response.status
            if status == 401 and not reauthenticated and replayable:
                self._challenge = self._pick(response) or self._challenge
                response.release()
                reauthenticated = True
                continue
            if status in RETRY_STATUSES and replayable and attempt < self.options.retries:
                delay = _retry_after(response)
                response.release()
                await self._backoff(attempt, delay, f"HTTP {status}")
                attempt += 1
                continue
            if follow_redirects and status in (301, 302, 303, 307, 308) and method in (
                "GET", "HEAD"
            ):
                location = response.headers.get("Location")
                response.release()
                if location:
                    return await self._follow(method, urljoin(url, location), expect)
            if status in expect:
                return response
            body = await _json_or_none(response)
            response.release()
            if status in (401, 403):
                challenge = self._pick(response) if status == 401 else None
                if status == 401:
                    self.forget_token(scopes)  # the next request asks for a new one
                denied = status == 403 or bool(
                    challenge and challenge.params.get("error") == "insufficient_scope")
                message = _auth_message(self.host, denied, method, url, body)
                if self.credentials is None:
                    # anonymous: whether the registry says "log in" or "not allowed", logging
                    # in is what may change its answer
                    message += f"; you are anonymous: log in first (berth login {self.host})"
                elif denied and self.credentials.username:
                    message += f" (as {self.credentials.username})"
                raise AuthError(message)
            raise RegistryResponseError(status, method, url, body)

    async def _follow(
        self, method: str, url: str, expect: Collection[int]
    ) -> aiohttp.ClientResponse:
        """Follow a redirect (e.g. to object storage) without the registry's credentials."""
        for _ in range(10):
            try:
                response = await self.http.request(method, url, allow_redirects=False)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                raise NetworkError(f"{method} {url}: {exc or type(exc).__name__}") from None
            log.debug("%s %s (redirected, no credentials): HTTP %d", method, response.url,
                      response.status)
            if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                url = urljoin(url, response.headers["Location"])
                response.release()
                continue
            if response.status in expect:
                return response
            response.release()
            raise RegistryResponseError(response.status, method, url)
        raise NetworkError(f"{method} {url}: too many redirects")

    async def _backoff(self, attempt: int, delay: float | None, why: str) -> None:
        if delay is None:
            delay = self.options.backoff * (2**attempt) * (0.5 + random.random())
        delay = min(delay, 60.0)
        log.info("%s: %s, retrying in %.1fs", self.host, why, delay)
        await asyncio.sleep(delay)


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    try:
        data = await response.content.read(1 << 20)
        return loads(data) if data else None
    except (JSONDocumentError, aiohttp.ClientError):
        return None


def _auth_message(host: str, denied: bool, method: str, url: str, body: Any) -> str:
    codes = ""
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        codes = ", ".join(str(e.get("message") or e.get("code")) for e in body["errors"]
                          if isinstance(e, dict))
    what = "access denied" if denied else "authentication required"
    return f"{host}: {what} for {method} {urlsplit(url).path}" + (f" ({codes})" if codes else "")
