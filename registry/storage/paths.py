"""The one map from registry concepts to storage keys.

The layout is the CNCF distribution registry's (`docker/registry/v2/...`), so a
filesystem or bucket that registry wrote can be served by Berth as it is:

    blobs/<alg>/<hex[:2]>/<hex>/data                          content, shared by all repositories
    repositories/<name>/_layers/<alg>/<hex>/link                blob readable in <name>
    repositories/<name>/_manifests/revisions/<alg>/<hex>/link   manifest stored in <name>
                                 .../<alg>/<hex>/mediatype  pushed Content-Type (Berth; only
                                                            for manifests without mediaType)
    repositories/<name>/_manifests/tags/<tag>/current/link      tag -> manifest digest
    repositories/<name>/_uploads/<id>/{data,startedat}           upload session
    repositories/<name>/_uploads/<id>/hashstates/<alg>/<offset>  its resumable digest
    repositories/<name>/_referrers/<alg>/<hex>/<alg>/<hex>/link  subject -> referrer (Berth)
    repositories/<name>/_tags/<tag>                              the tag index (Berth)
    repositories/<name>/_tags.complete                           it holds every tag
    repositories/<name>/_pulls/<alg>/<hex>    when a manifest was last pulled from <name>
                                              (Berth; kept only for pull retention rules)
    repositories/<name>/_usage/baseline         bytes and tags an exact recount found (Berth)
    repositories/<name>/_usage/<epoch>/<process>  one process's changes since (Berth)
    _index/repositories/<name>!                                  the catalog index (Berth)
    _index/repositories.complete                                 it holds every repository
    _uses/<alg>/<hex>                     when a manifest push last named a digest (Berth)
    _gc/lease                             the latest collection's start (Berth)
    _gc/quarantine/<run>/<alg>/<hex>      blobs a collection set aside (Berth)
    _health/probe                         written by readiness checks (Berth)
    _layout                               the storage layout's version (Berth; layout.py)
    _fsck/quarantine/<alg>/<hex>          corrupt blob data fsck moved aside (Berth)
    _usage/epoch                          the epoch usage changes are counted in (Berth)

Link files hold the digest as text. Names under a repository that start with `_` are
never repository-name components (the name grammar forbids a leading `_`).

The indexes are flat keys listed in byte order, one page per request: tags have no `/`, so
`<tag>` sorts as the tag does; repository names do, so each ends in `!`, which sorts before
every character a name may hold ("a!" < "a-b!" < "a/b!", as "a" < "a-b" < "a/b").
"""

from __future__ import annotations

from dataclasses import dataclass

from client.oci.digest import Digest, DigestError

ROOT = "docker/registry/v2"
REPOSITORIES = f"{ROOT}/repositories"
BLOBS = f"{ROOT}/blobs"
OLD_CATALOG_INDEX = f"{ROOT}/_catalog"  # the first index (one directory per name: wrong order)
# A repository exists while it holds one of these (directories exist while they have content).
REPOSITORY_MARKERS = ("_layers", "_manifests")
# Directories below a repository that hold no upload sessions (a walk for them skips these).
NOT_UPLOADS = ("_layers", "_manifests", "_referrers", "_pulls", "_usage")
UPLOAD_FILES = ("data", "startedat")  # those whose times say when a session was last used


@dataclass(frozen=True, slots=True)
class IndexKeys:
    """The keys of a flat index: one empty object per entry under `prefix` (ending in
    `end`, so that byte order is entry order), and the marker saying it is `complete`."""

    prefix: str
    complete: str
    end: str = ""

    def key(self, entry: str) -> str:
        return f"{self.prefix}/{entry}{self.end}"

    def listed_after(self, entry: str) -> str:
        """The listing position (relative to `prefix`) just after `entry`."""
        return entry + self.end

    def entry(self, listed: str) -> str | None:
        """The entry a listed key (relative to `prefix`) stands for; None for other keys."""
        return listed[: len(listed) - len(self.end)] if listed.endswith(self.end) else None


# Berth: one key per repository, for `_catalog`
CATALOG_INDEX = IndexKeys(f"{ROOT}/_index/repositories", f"{ROOT}/_index/repositories.complete",
                          "!")


HEALTH_PROBE = f"{ROOT}/_health/probe"
LAYOUT_VERSION = f"{ROOT}/_layout"
USES = f"{ROOT}/_uses"
GC = f"{ROOT}/_gc"
GC_LEASE = f"{GC}/lease"
QUARANTINE = f"{GC}/quarantine"


FSCK_QUARANTINE = f"{ROOT}/_fsck/quarantine"


def fsck_quarantined(digest: Digest) -> str:
    """Where `berth fsck --repair` moves blob data that does not hash to its digest (kept
    for inspection; never read by the registry)."""
    return f"{FSCK_QUARANTINE}/{digest.algorithm}/{digest.hex}"


USAGE_EPOCH = f"{ROOT}/_usage/epoch"


def usage(name: str) -> str:
    """A repository's usage counters: `baseline` and `<epoch>/<process>` deltas."""
    return f"{repository(name)}/_usage"


def usage_baseline(name: str) -> str:
    return f"{usage(name)}/baseline"


def usage_delta(name: str, epoch: int, process: str) -> str:
    return f"{usage(name)}/{epoch}/{process}"


def usage_listed(name: str, listed: str) -> str:
    """The key of something listed below `usage(name)`."""
    return f"{usage(name)}/{listed}"


def usage_epoch_of(listed: str) -> int | None:
    """The epoch of a key listed below `usage(name)` when it is a delta, else None."""
    epoch, slash, _ = listed.partition("/")
    return int(epoch) if slash and epoch.isdigit() else None


def use_record(digest: Digest) -> str:
    """When a manifest push last named `digest` (the object's time; it holds nothing)."""
    return f"{USES}/{digest.algorithm}/{digest.hex}"


def quarantine_run(run: str) -> str:
    return f"{QUARANTINE}/{run}"


def quarantined(run: str, digest: Digest) -> str:
    """Where collection `run` sets a blob's data aside before deciding to delete it."""
    return f"{quarantine_run(run)}/{digest.algorithm}/{digest.hex}"


def blob_dir(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def blob_data(digest: Digest) -> str:
    return f"{blob_dir(digest)}/data"


def blob_tree(*levels: str) -> str:
    """`blobs`, `blobs/<alg>`, `blobs/<alg>/<xx>`: the levels of the content store."""
    return "/".join((BLOBS, *levels))


def blob_of_data(listed: str) -> Digest | None:
    """The digest whose data a key listed below BLOBS (`<alg>/<xx>/<hex>/data`) holds."""
    parts = listed.split("/")
    if len(parts) != 4 or parts[3] != "data" or parts[2][:2] != parts[1]:
        return None
    return digest_named(parts[0], parts[2])


def digest_tree(base: str, algorithm: str) -> str:
    """The `<base>/<alg>` level of a `<base>/<alg>/<hex>/…` tree of links."""
    return f"{base}/{algorithm}"


def digest_named(algorithm: str, encoded: str) -> Digest | None:
    """The digest a `<alg>/<hex>` pair of directory names stands for (None: not one)."""
    try:
        return Digest.parse(f"{algorithm}:{encoded}")
    except DigestError:
        return None


def repository_markers(name: str) -> list[str]:
    return [f"{repository(name)}/{marker}" for marker in REPOSITORY_MARKERS]


def repository_of_marker(walked: str) -> str | None:
    """The repository a walked path (relative to REPOSITORIES) marks, if it is a marker."""
    parent, _, leaf = walked.rpartition("/")
    return parent if parent and leaf in REPOSITORY_MARKERS else None


def upload_of(walked: str) -> tuple[str, str, str] | None:
    """(repository, upload id, file) for a walked path (relative to REPOSITORIES) that is
    one of a session's UPLOAD_FILES; None otherwise."""
    repo, marker, rest = walked.rpartition("/_uploads/")
    upload_id, _, leaf = rest.partition("/")
    return (repo, upload_id, leaf) if marker and leaf in UPLOAD_FILES else None


def walked(relative: str) -> str:
    """The key of a path a walk of REPOSITORIES found."""
    return f"{REPOSITORIES}/{relative}"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, digest: Digest) -> str:
    return f"{repository(name)}/_layers/{digest.algorithm}/{digest.hex}/link"


def layers(name: str) -> str:
    return f"{repository(name)}/_layers"


def revision_link(name: str, digest: Digest) -> str:
    return f"{revisions(name)}/{digest.algorithm}/{digest.hex}/link"


def revision_media_type(name: str, digest: Digest) -> str:
    """The Content-Type a manifest was pushed with, kept only when its bytes lack one."""
    return f"{revisions(name)}/{digest.algorithm}/{digest.hex}/mediatype"


def revisions(name: str) -> str:
    return f"{repository(name)}/_manifests/revisions"


def tags(name: str) -> str:
    return f"{repository(name)}/_manifests/tags"


def tag(name: str, tag_name: str) -> str:
    return f"{tags(name)}/{tag_name}"


def tag_link(name: str, tag_name: str) -> str:
    return f"{tag(name, tag_name)}/current/link"


def tag_index(name: str) -> IndexKeys:
    return IndexKeys(f"{repository(name)}/_tags", f"{repository(name)}/_tags.complete")


def uploads(name: str) -> str:
    return f"{repository(name)}/_uploads"


def upload(name: str, upload_id: str) -> str:
    return f"{uploads(name)}/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload(name, upload_id)}/data"


def upload_started(name: str, upload_id: str) -> str:
    return f"{upload(name, upload_id)}/startedat"


def upload_hashstate(name: str, upload_id: str, algorithm: str, offset: int) -> str:
    """The running digest of a session after `offset` bytes (as distribution stores it)."""
    return f"{upload(name, upload_id)}/hashstates/{algorithm}/{offset}"


def all_referrers(name: str) -> str:
    """The `_referrers/<alg>/<hex>/…` tree of a repository."""
    return f"{repository(name)}/_referrers"


def pulls(name: str) -> str:
    return f"{repository(name)}/_pulls"


def pull_record(name: str, digest: Digest) -> str:
    """When `digest` was last pulled from `name` (the object's time; it holds nothing)."""
    return f"{pulls(name)}/{digest.algorithm}/{digest.hex}"


def referrers(name: str, subject: Digest) -> str:
    return f"{repository(name)}/_referrers/{subject.algorithm}/{subject.hex}"


def referrer_link(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers(name, subject)}/{referrer.algorithm}/{referrer.hex}/link"
