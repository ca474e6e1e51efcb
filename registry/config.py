"""Typed registry settings: one YAML file, environment overrides, command-line flags.

Keys follow the CNCF distribution registry's `config.yml` wherever the concept is the
same, so an operator's file carries across; Berth-only settings live under `berth:`.
Precedence: flags > `BERTH_SECTION__KEY=value` environment variables > file > defaults.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

log = logging.getLogger(__name__)

ENV_PREFIX = "BERTH_"
MiB = 1024 * 1024

class _Ignored:
    """Marks a distribution key Berth accepts in a copied config.yml but does not use: it
    is validated as anything, and logged once at start when set."""


Ignored = Annotated[Any, _Ignored()]


_SECONDS = re.compile(r"\d+(?:\.\d+)?")  # a plain number: seconds
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]i?b?|b)?", re.IGNORECASE)


def parse_size(value: Any) -> int:
    """Bytes from a number or a string with a unit: `512`, `100MB` (powers of 1000),
    `10GiB` (powers of 1024), `1.5 TiB`; `k`, `M`, `G`… alone are binary, as in `ls -h`."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 0:
            return value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        number, unit = float(match[1]), (match[2] or "b").lower()
        binary = unit == "b" or "i" in unit or len(unit) == 1
        power = "bkmgtp".index(unit[0])
        return int(number * (1024 if binary else 1000) ** power)
    raise ValueError(f"not a size: {value!r} (use e.g. 500MB, 10GiB, or bytes)")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the offending key."""


def read_file(path: Path, error: type[ConfigError] = ConfigError) -> str:
    """A configured file's text; `error` naming the file when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None


def parse_duration(value: Any) -> float:
    """Seconds from a number, a string of one (`60`), or a Go-style duration string
    (`168h`, `1h30m`, `10s`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if _SECONDS.fullmatch(text):
            return float(text)
        if _DURATION.sub("", text) == "" and text:
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))
    raise ValueError(f"not a duration: {value!r} (use e.g. '30s', '10m', '168h')")


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be a positive duration")
    return value


# durations in settings: plain seconds or Go-style strings (parse_duration)
Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FilesystemSettings(Section):
    rootdirectory: Path = Path("data")
    maxthreads: int = Field(32, ge=4, le=1024)


class DeleteSettings(Section):
    enabled: bool = True


class UploadPurgingSettings(Section):
    enabled: bool = True
    age: Duration = 7 * 24 * 3600.0
    interval: PositiveDuration = 24 * 3600.0
    dryrun: bool = False



class ReadOnlySettings(Section):
    """Every write is refused (405 UNSUPPORTED) and background writers pause; switched
    without a restart by SIGHUP, which re-reads the file (backups, migrations)."""

    enabled: bool = False


class MaintenanceSettings(Section):
    uploadpurging: UploadPurgingSettings = UploadPurgingSettings()
    readonly: ReadOnlySettings = ReadOnlySettings()


class S3Settings(Section):
    bucket: str
    region: str = "us-east-1"
    regionendpoint: str | None = None  # a custom endpoint (RGW, MinIO, moto)
    accesskey: str | None = None  # none: the standard AWS credential chain
    secretkey: str | None = None
    rootdirectory: str = ""  # a key prefix inside the bucket
    forcepathstyle: bool = False
    chunksize: int = Field(10 * MiB, ge=5 * MiB)  # first part size; grows past 1,000 parts
    encrypt: bool = False
    keyid: str | None = None
    storageclass: str | None = None
    maxthreads: int = Field(32, ge=4, le=1024)  # Berth: thread and connection pool size
    secure: Ignored = None
    v4auth: Ignored = None
    skipverify: Ignored = None
    multipartcopychunksize: Ignored = None
    multipartcopymaxconcurrency: Ignored = None
    multipartcopythresholdsize: Ignored = None
    useragent: Ignored = None
    usedualstack: Ignored = None
    loglevel: Ignored = None


class RedirectSettings(Section):
    disable: bool = False  # blob GETs answer 307 to a presigned URL when the driver can


class InMemorySettings(Section):
    """No settings: content lives in the process and is lost when it exits."""


class StorageSettings(Section):
    filesystem: FilesystemSettings | None = None
    inmemory: InMemorySettings | None = None
    s3: S3Settings | None = None
    delete: DeleteSettings = DeleteSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    redirect: RedirectSettings = RedirectSettings()
    cache: Ignored = None
    tag: Ignored = None

    @model_validator(mode="after")
    def _one_driver(self) -> StorageSettings:
        chosen = [d for d in ("filesystem", "inmemory", "s3") if getattr(self, d) is not None]
        if len(chosen) > 1:
            raise ValueError(f"configure one storage driver, not {' and '.join(chosen)}")
        if not chosen:
            object.__setattr__(self, "filesystem", FilesystemSettings())
        return self

    @property
    def driver(self) -> str:
        return next(d for d in ("s3", "inmemory", "filesystem") if getattr(self, d) is not None)


class TLSSettings(Section):
    certificate: Path  # PEM, the server's certificate (chain) first
    key: Path  # PEM private key
    clientcas: tuple[Path, ...] = ()  # CA bundles: when set, clients must present a certificate
    minimumtls: Literal["tls1.2", "tls1.3"] = "tls1.2"
    letsencrypt: Ignored = None


class PrometheusSettings(Section):
    enabled: bool = False
    path: str = "/metrics"
    # Berth: serve the metrics on the main listener too (no credentials asked)
    mainlistener: bool = False

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or value.startswith("/v2"):
            raise ValueError("must be an absolute path outside /v2")
        return value


class DebugSettings(Section):
    """A second listener for operators: health, readiness, metrics (never the API)."""

    addr: str | None = None
    prometheus: PrometheusSettings = PrometheusSettings()
    tls: Ignored = None

    @field_validator("addr")
    @classmethod
    def _addr(cls, value: str | None) -> str | None:
        if value is not None:
            split_address(value)
        return value

    @model_validator(mode="after")
    def _somewhere(self) -> DebugSettings:
        prometheus = self.prometheus
        if prometheus.enabled and self.addr is None and not prometheus.mainlistener:
            raise ValueError("prometheus.enabled needs http.debug.addr (or "
                             "prometheus.mainlistener)")
        return self


class HTTPSettings(Section):
    addr: str = "127.0.0.1:5000"
    draintimeout: Duration = 30.0
    # Berth: on SIGTERM, /readyz answers 503 for this long while everything is still
    # served, so a load balancer stops sending before the listener closes.
    shutdowndelay: Duration = 0.0
    # Slow clients (Berth's keys; distribution sets none): request headers must arrive
    # whole within `readheadertimeout` of the connection opening or of their first byte;
    # a request body may pause at most `bodytimeout`; an idle keep-alive connection is
    # closed after `idletimeout`.
    readheadertimeout: PositiveDuration = 20.0
    bodytimeout: PositiveDuration = 60.0
    idletimeout: PositiveDuration = 75.0
    tls: TLSSettings | None = None
    # Peers whose X-Forwarded-For names the client (addresses or CIDR networks)
    trustedproxies: tuple[str, ...] = ()
    # Plain HTTP on a non-loopback address while auth is on sends passwords and tokens in
    # clear: refused unless set (e.g. behind a proxy that terminates TLS).
    insecure: bool = False
    debug: DebugSettings = DebugSettings()
    # Berth: processes serving the listeners (docs/operations.md); none: one per CPU
    workers: int | None = Field(None, ge=1, le=256)
    secret: Ignored = None
    headers: Ignored = None
    relativeurls: Ignored = None
    host: Ignored = None
    http2: Ignored = None


    @field_validator("addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        split_address(value)
        return value

    @field_validator("trustedproxies")
    @classmethod
    def _networks(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"not an address or network: {value!r}") from None
        return values


class URLPolicy(Section):
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    @field_validator("allow", "deny")
    @classmethod
    def _regexes(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
        return patterns


class ManifestValidation(Section):
    urls: URLPolicy = URLPolicy()


class ValidationSettings(Section):
    disabled: bool = False
    manifests: ManifestValidation = ManifestValidation()


class AccessLogSettings(Section):
    disabled: bool = False


class LogSettings(Section):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    formatter: Literal["text", "json"] = "text"
    accesslog: AccessLogSettings = AccessLogSettings()
    fields: dict[str, str] = Field(default_factory=dict)  # added to every entry
    hooks: Ignored = None


class HtpasswdSettings(Section):
    path: Path  # `htpasswd -B` entries (bcrypt), reloaded when the file changes
    realm: str = "berth"


class TokenSettings(Section):
    """Bearer tokens (Docker registry token specification)."""

    realm: str | None = None  # where clients get tokens; default: this server's /auth/token
    service: str = "berth"  # the `aud` tokens must carry
    issuer: str = "berth"  # the `iss` tokens must carry
    rootcertbundle: Path | None = None  # PEM certificates whose keys may sign tokens
    jwks: Path | None = None  # and/or a JWKS file of such public keys
    # Berth's built-in token server at /auth/token (users from auth.htpasswd, grants from
    # auth.policy); off to rely on an external issuer only.
    builtin: bool = True
    signingkey: Path | None = None  # PEM private key (RSA, EC P-256/384/521 or Ed25519)
    expiration: Duration = 300.0
    refreshexpiration: Duration = 7 * 24 * 3600.0
    leeway: Duration = 60.0  # clock skew allowed on exp/nbf/iat
    autoredirect: Ignored = None
    autoredirectpath: Ignored = None


    @model_validator(mode="after")
    def _keys(self) -> TokenSettings:
        if not self.builtin and not (self.rootcertbundle or self.jwks):
            raise ValueError("an external issuer needs rootcertbundle or jwks to check tokens")
        if not self.builtin and not self.realm:
            raise ValueError("an external issuer needs realm (its token endpoint URL)")
        return self


class LoginLimitSettings(Section):
    """Failed logins allowed per user and per client address within `window`."""

    attempts: int = Field(5, ge=1)
    window: Duration = 60.0
    tracked: int = Field(10_000, ge=100)  # users/addresses remembered at most



class AuthSettings(Section):
    htpasswd: HtpasswdSettings | None = None
    token: TokenSettings | None = None
    policy: Path | None = None  # who may do what (docs/access-control.md); default: users: all
    reloadinterval: Duration = 2.0  # between checks of the files for changes (0: SIGHUP only)
    loginlimit: LoginLimitSettings = LoginLimitSettings()
    silly: Any = None
    none: Any = None


    @model_validator(mode="after")
    def _mode(self) -> AuthSettings:
        if self.silly is not None or self.none is not None:
            raise ValueError("Berth has no 'silly' or 'none' auth: use htpasswd or token")
        if self.htpasswd is None and self.token is None:
            raise ValueError("configure auth.htpasswd (Basic) and/or auth.token (bearer tokens)")
        return self


class GCSettings(Section):
    """Garbage collection inside the server (docs/gc.md), and the grace period every
    collection and every manifest push agree on."""

    enabled: bool = False  # collect on a schedule in `berth serve`
    interval: PositiveDuration = 24 * 3600.0
    # Unreferenced blobs (and untagged manifests) younger than this are kept, and so is
    # anything a manifest push named within it; a push must finish within half of it.
    grace: PositiveDuration = 3600.0
    deleteuntagged: bool = False  # also forget manifests no tag reaches



class ScrubSettings(Section):
    """The server's background scrub: `berth fsck` without repair, at a bounded rate, every
    `interval`, problems reported in the log (docs/fsck.md)."""

    enabled: bool = False
    interval: PositiveDuration = 7 * 24 * 3600.0
    rate: int = Field(50 * MiB, ge=1)  # bytes of blob data verified per second, at most



_GLOB_CHARS = re.compile(r"[a-z0-9._/*?-]+")


def glob_regex(glob: str) -> re.Pattern[str]:
    """A repository glob as a regex matching whole names: `*` and `?` stay within one
    path component, `**` crosses `/` (`prod/**` also matches `prod`, `**/cache` also
    `cache`)."""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("(?:/.*)?")
            i += 3
        elif glob.startswith("**/", i) and (i == 0 or glob[i - 1] == "/"):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(glob[i], re.escape(glob[i])))
            i += 1
    return re.compile("".join(out))


def _glob(glob: str) -> str:
    if not _GLOB_CHARS.fullmatch(glob):
        raise ValueError(f"bad glob {glob!r}: use repository-name characters (a-z 0-9 . _ "
                         "- /) and the wildcards * ? **")
    return glob


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regex {pattern!r}: {exc}") from None
    return pattern


def _listed(values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise ValueError("list at least one")
    return values


Glob = Annotated[str, AfterValidator(_glob)]
Regex = Annotated[str, AfterValidator(_regex)]
Globs = Annotated[tuple[Glob, ...], AfterValidator(_listed)]


class KeepTags(Section):
    """One `keeptags` rule (zot's keepTags): of the tags any of `patterns` matches (every
    tag when there are none), keep those meeting any criterion set, or all of them when
    none is (docs/retention.md)."""

    patterns: tuple[Regex, ...] = ()
    mostrecentlypushedcount: int | None = Field(None, ge=0)
    pushedwithin: Duration | None = None
    # by pull time: recorded only while a rule asks for it
    mostrecentlypulledcount: int | None = Field(None, ge=0)
    pulledwithin: Duration | None = None


    @property
    def by_pulls(self) -> bool:
        return self.mostrecentlypulledcount is not None or self.pulledwithin is not None


class RetentionPolicy(Section):
    repositories: Globs
    deleteuntagged: bool = False  # forget manifests no tag reaches, older than `delay`
    keeptags: tuple[KeepTags, ...] = ()  # none: every tag is kept


class RetentionSettings(Section):
    """Which tags and untagged manifests a garbage collection deletes, per repository
    (the first policy whose `repositories` match applies)."""

    delay: Duration = 24 * 3600.0  # untagged manifests younger than this are kept
    policies: tuple[RetentionPolicy, ...] = ()
    pullflush: PositiveDuration = 60.0  # how often the pulls noted in memory are written


    @property
    def records_pulls(self) -> bool:
        """Whether pulls are recorded: only when a rule uses them."""
        return any(k.by_pulls for p in self.policies for k in p.keeptags)


class ImmutableTagRule(Section):
    """Tags matching `tags` in repositories matching `repositories` can be neither moved
    to another digest nor deleted once they exist."""

    repositories: Globs
    tags: Annotated[tuple[Regex, ...], AfterValidator(_listed)]


class QuotaRule(Section):
    """A quota for the repositories a pattern matches (docs/quotas.md)."""

    repositories: Glob  # as in retention rules: "team/*", "prod/**"
    maxbytes: int | None = None  # stored bytes, each blob once per repository
    maxtags: int | None = Field(None, ge=0)

    _sizes = field_validator("maxbytes", mode="before")(parse_size)

    @model_validator(mode="after")
    def _limits(self) -> QuotaRule:
        if self.maxbytes is None and self.maxtags is None:
            raise ValueError(f"the rule for {self.repositories!r} sets neither maxbytes "
                             "nor maxtags")
        return self


class CacheSettings(Section):
    """What each process keeps in memory to answer manifest reads (docs/consistency.md)."""

    manifests: int = Field(64 * MiB, ge=0)  # manifest bytes kept, by digest (immutable)
    # Where storage gives no change tokens (S3): how long a tag's digest, or a
    # repository's holding a manifest, read by one process may go unchecked (0: never).
    ttl: Duration = 1.0

    _sizes = field_validator("manifests", mode="before")(parse_size)


class BerthSettings(Section):
    """Settings with no counterpart in distribution's config."""

    gc: GCSettings = GCSettings()
    scrub: ScrubSettings = ScrubSettings()
    retention: RetentionSettings = RetentionSettings()
    immutabletags: tuple[ImmutableTagRule, ...] = ()
    cache: CacheSettings = CacheSettings()


    quotas: tuple[QuotaRule, ...] = ()  # the first rule whose pattern matches applies

    manifest_max_bytes: int = Field(4 * MiB, ge=1024)
    # Advertised to clients as OCI-Chunk-Min-Length (a hint: smaller chunks still work).
    # Default: 1 MiB; on S3, 5 MiB (its part minimum: smaller chunks are carried over).
    chunk_min_length: int | None = Field(None, ge=1)
    # fsync data and links before they become visible (turn off only on throwaway storage).
    fsync: bool = True


class StorageDriverHealth(Section):
    """distribution's periodic storage check: every `interval`, failing after `threshold`
    failures in a row (0: the first). Berth always runs it for /readyz; `enabled` puts it
    in /debug/health as distribution does."""

    enabled: bool = False
    interval: PositiveDuration = 10.0
    threshold: int = Field(0, ge=0)



class HealthSettings(Section):
    storagedriver: StorageDriverHealth = StorageDriverHealth()
    file: Ignored = None
    http: Ignored = None
    tcp: Ignored = None


class IgnoreSettings(Section):
    mediatypes: tuple[str, ...] = ()
    actions: tuple[Literal["push", "pull", "delete", "mount"], ...] = ()


class EndpointSettings(Section):
    """One webhook: distribution's keys and meaning (docs/events.md)."""

    name: str
    url: str
    disabled: bool = False
    headers: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    timeout: PositiveDuration = 1.0
    threshold: int = Field(10, ge=0)  # failures in a row before delivery backs off
    backoff: Duration = 1.0
    ignoredmediatypes: tuple[str, ...] = ()
    ignore: IgnoreSettings = IgnoreSettings()
    # Berth: events waiting for this endpoint at most (more are dropped, and counted)
    queuesizelimit: int = Field(10_000, ge=1)


    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://[^/\s]+", value):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value


class EventSettings(Section):
    includereferences: Ignored = None


class NotificationsSettings(Section):
    events: EventSettings = EventSettings()
    endpoints: tuple[EndpointSettings, ...] = ()


class Config(Section):
    version: Any = None
    log: LogSettings = LogSettings()
    http: HTTPSettings = HTTPSettings()
    storage: StorageSettings = StorageSettings()
    validation: ValidationSettings = ValidationSettings()
    berth: BerthSettings = BerthSettings()
    auth: AuthSettings | None = None
    health: HealthSettings = HealthSettings()
    notifications: NotificationsSettings = NotificationsSettings()
    redis: Ignored = None
    proxy: Ignored = None
    compatibility: Ignored = None
    reporting: Ignored = None

    @property
    def filesystem(self) -> FilesystemSettings:
        return self.storage.filesystem or FilesystemSettings()

    @property
    def chunk_min_length(self) -> int:
        default = 5 * MiB if self.storage.driver == "s3" else MiB
        return self.berth.chunk_min_length or default

    @model_validator(mode="after")
    def _no_passwords_in_clear(self) -> Config:
        host, _ = split_address(self.http.addr)
        loopback = host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
        if self.auth and not self.http.tls and not self.http.insecure and not loopback:
            raise ValueError(
                f"auth without http.tls on {self.http.addr} sends credentials in clear: "
                "configure http.tls, or set http.insecure: true behind a TLS proxy")
        return self


def split_address(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        child = tree.get(key)
        if not isinstance(child, dict):
            child = tree[key] = {}
        tree = child
    tree[path[-1]] = value


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, list[str], Any]]:
    """`BERTH_STORAGE__DELETE__ENABLED=false` →
    ('BERTH_STORAGE__DELETE__ENABLED', ['storage','delete','enabled'], False)."""
    out = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            continue
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        out.append((name, path, value))
    return out


def _format_error(exc: ValidationError, where: str,
                  origins: Mapping[tuple[str, ...], str]) -> str:
    """`<where the value came from>: <key>: <what is wrong>`: the file, the environment
    variable or the flag that set the failing key (or one above it)."""
    errors = exc.errors()
    first = errors[0]
    loc = tuple(str(p) for p in first["loc"])
    for depth in range(len(loc), 0, -1):
        if loc[:depth] in origins:
            where = origins[loc[:depth]]
            break
    key = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".")
    key = key or "(top level)"
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    message = message.removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {key}: {message}{more}"


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Config:
    """Read the YAML file (if any), apply environment and dotted-key overrides, validate.
    `flags` names the command-line flag behind each override, for error messages."""
    tree: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        tree = loaded or {}
    origins: dict[tuple[str, ...], str] = {}
    for name, key_path, value in _env_overrides(os.environ if environ is None else environ):
        _set_path(tree, key_path, value)
        origins[tuple(key_path)] = name
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(tree, dotted.split("."), value)
            flag = (flags or {}).get(dotted)
            origins[tuple(dotted.split("."))] = flag or f"the command line ({dotted})"
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, where, origins)) from None
    _warn_ignored(config)
    return config


def _warn_ignored(section: BaseModel, where: str = "") -> None:
    """Log each distribution key set in the file that Berth does not use."""
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        if value is None:
            continue
        if any(isinstance(m, _Ignored) for m in info.metadata):
            log.warning("config: %s%s is a distribution setting Berth ignores", where, name)
        elif isinstance(value, BaseModel):
            _warn_ignored(value, f"{where}{name}.")
