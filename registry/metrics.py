"""The registry's Prometheus metrics, in one place (docs/operations.md lists them).

Names and labels follow the CNCF distribution registry where the concept is the same
(`registry_http_*` by route name, `registry_storage_action_seconds` by driver and
action), so its dashboards work unchanged; the rest are `berth_*`. Labels are bounded
sets: route names, methods, status codes, driver actions, outcomes — never a digest or a
user, and a repository only for the repositories a quota rule covers.

With several workers (registry/workers.py) prometheus_client's multiprocess mode keeps
the values in files every worker's `/metrics` adds up; each gauge says how.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# distribution's buckets (docker/go-metrics defaults)
_DURATIONS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25, 60)
_SIZES = tuple(1024.0 * 2 ** i for i in range(22))  # 1 KiB … 2 GiB

HTTP_IN_FLIGHT = Gauge("registry_http_in_flight_requests", "The in-flight HTTP requests",
                       ["handler"], registry=REGISTRY, multiprocess_mode="livesum")
HTTP_REQUESTS = Counter("registry_http_requests", "Total number of HTTP requests made.",
                        ["handler", "code", "method"], registry=REGISTRY)
HTTP_DURATION = Histogram("registry_http_request_duration_seconds",
                          "The HTTP request latencies in seconds.", ["handler", "method"],
                          buckets=_DURATIONS, registry=REGISTRY)
HTTP_REQUEST_SIZE = Histogram("registry_http_request_size_bytes",
                              "The HTTP request sizes in bytes (the body as received).",
                              ["handler"], buckets=_SIZES, registry=REGISTRY)
HTTP_RESPONSE_SIZE = Histogram("registry_http_response_size_bytes",
                               "The HTTP response sizes in bytes (the body as sent, "
                               "sendfile included).", ["handler"], buckets=_SIZES,
                               registry=REGISTRY)

STORAGE_ACTION = Histogram("registry_storage_action_seconds",
                           "The number of seconds that the storage action takes",
                           ["driver", "action"], registry=REGISTRY)
STORAGE_ERRORS = Counter("berth_storage_errors", "Storage actions that failed (a missing "
                         "path is an answer, not a failure).", ["driver", "action"],
                         registry=REGISTRY)

AUTH = Counter("berth_auth_requests", "Requests by what access control decided: allowed, "
               "challenged (401), denied (403), throttled (429).", ["outcome"],
               registry=REGISTRY)
TOKENS = Counter("berth_auth_tokens", "Token requests to the built-in token server, "
                 "by outcome: issued or refused.", ["outcome"], registry=REGISTRY)

GC_RUNS = Counter("berth_gc_runs", "Garbage collections run by this process, by outcome "
                  "(done, failed, skipped).", ["outcome"], registry=REGISTRY)
GC_SECONDS = Histogram("berth_gc_duration_seconds", "How long a collection took.",
                       buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
                       registry=REGISTRY)
GC_FREED_BYTES = Counter("berth_gc_freed_bytes", "Bytes of blob data deleted by garbage "
                         "collection.", registry=REGISTRY)
GC_DELETED = Counter("berth_gc_deleted", "What garbage collection deleted, by kind "
                     "(blob, manifest).", ["kind"], registry=REGISTRY)
PURGED_UPLOADS = Counter("berth_uploads_purged", "Abandoned upload sessions purged.",
                         registry=REGISTRY)

SCRUB_RUNS = Counter("berth_scrub_runs", "Background scrubs, by outcome (done, failed).",
                     ["outcome"], registry=REGISTRY)
SCRUB_PROBLEMS = Gauge("berth_scrub_problems", "Problems the latest scrub found (0: clean).",
                       registry=REGISTRY, multiprocess_mode="mostrecent")
SCRUB_BYTES = Counter("berth_scrub_verified_bytes", "Blob bytes scrubs read and verified.",
                      registry=REGISTRY)

# Per repository, but only for repositories a quota rule covers (their number is the
# operator's choice), set by each garbage collection's exact recount.
QUOTA_USED_BYTES = Gauge("berth_quota_used_bytes", "Stored bytes a repository's quota "
                         "counts, as of the latest recount.", ["repository"], registry=REGISTRY,
                         multiprocess_mode="mostrecent")
QUOTA_LIMIT_BYTES = Gauge("berth_quota_limit_bytes", "A repository's maxbytes quota.",
                          ["repository"], registry=REGISTRY,
                         multiprocess_mode="mostrecent")
QUOTA_USED_TAGS = Gauge("berth_quota_used_tags", "Tags a repository's quota counts, as of "
                        "the latest recount.", ["repository"], registry=REGISTRY,
                         multiprocess_mode="mostrecent")
QUOTA_LIMIT_TAGS = Gauge("berth_quota_limit_tags", "A repository's maxtags quota.",
                         ["repository"], registry=REGISTRY,
                         multiprocess_mode="mostrecent")

EVENTS_SENT = Counter("berth_events_sent", "Events an endpoint accepted.", ["endpoint"],
                      registry=REGISTRY)
EVENTS_FAILED = Counter("berth_events_failed_deliveries", "Deliveries that failed (each "
                        "is retried).", ["endpoint"], registry=REGISTRY)
EVENTS_DROPPED = Counter("berth_events_dropped", "Events dropped: the endpoint's queue was "
                         "full.", ["endpoint"], registry=REGISTRY)
EVENTS_PENDING = Gauge("berth_events_pending", "Events queued for an endpoint.",
                       ["endpoint"], registry=REGISTRY, multiprocess_mode="livesum")

# (an Info metric in spirit: multiprocess mode has none)
BUILD = Gauge("berth_build_info", "The running Berth: always 1.", ["version", "python"],
              registry=REGISTRY, multiprocess_mode="max")


def _version() -> str:
    try:
        return version("berth")
    except PackageNotFoundError:
        return "unknown"


BUILD.labels(_version(), platform.python_version()).set(1)
