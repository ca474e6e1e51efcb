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
    _index/repositories/<name>!                                  the catalog index (Berth)
    _index/repositories.complete                                 it holds every repository

Link files hold the digest as text. Names under a repository that start with `_` are
never repository-name components (the name grammar forbids a leading `_`).

The indexes are flat keys listed in byte order, one page per request: tags have no `/`, so
`<tag>` sorts as the tag does; repository names do, so each ends in `!`, which sorts before
every character a name may hold ("a!" < "a-b!" < "a/b!", as "a" < "a-b" < "a/b").
"""

from __future__ import annotations

from client.oci.digest import Digest

ROOT = "docker/registry/v2"
REPOSITORIES = f"{ROOT}/repositories"
BLOBS = f"{ROOT}/blobs"
CATALOG = f"{ROOT}/_index/repositories"  # Berth: one key per repository, for `_catalog`
CATALOG_COMPLETE = f"{ROOT}/_index/repositories.complete"
CATALOG_END = "!"
OLD_CATALOG = f"{ROOT}/_catalog"  # the first index (one directory per name: wrong order)
REPOSITORY_MARKERS = ("_layers", "_manifests")


def blob_dir(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def blob_data(digest: Digest) -> str:
    return f"{blob_dir(digest)}/data"


def catalog_entry(name: str) -> str:
    return f"{CATALOG}/{name}{CATALOG_END}"


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


def tag_index(name: str) -> str:
    return f"{repository(name)}/_tags"


def tag_index_complete(name: str) -> str:
    return f"{repository(name)}/_tags.complete"


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


def referrers(name: str, subject: Digest) -> str:
    return f"{repository(name)}/_referrers/{subject.algorithm}/{subject.hex}"


def referrer_link(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers(name, subject)}/{referrer.algorithm}/{referrer.hex}/link"
