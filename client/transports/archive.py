"""The `docker save` archive format (`docker-archive:FILE[:REF]`): what its reader
(`archive_reader`) and its writer (`archive_writer`) share.

The format (moby `image/tarexport`, containers/image `docker/internal/tarfile`,
go-containerregistry `pkg/v1/tarball`): a plain tar whose `manifest.json` lists images as
`{"Config": PATH, "RepoTags": ["name:tag"], "Layers": [PATH, ...], "LayerSources":
{diffID: descriptor}}`; the config is the image config JSON (its `rootfs.diff_ids` pair up
with `Layers`); `repositories` is the pre-1.10 `{name: {tag: id}}` map. Layer files are
uncompressed tars in `docker save` and skopeo output, but every loader decompresses what
it finds, so gzip (and zstd) files are layers too.
"""

from __future__ import annotations

import tarfile
from typing import Any

from ..errors import BerthError, UsageError
from ..oci.digest import Digest, DigestError
from ..oci.jsondoc import JSONDocumentError, loads

MANIFEST_JSON = "manifest.json"
REPOSITORIES = "repositories"
JSON_LIMIT = 16 * 1024 * 1024  # manifest.json and configs are read whole; refuse absurd ones
BLOCK = tarfile.BLOCKSIZE


def split_archive_spec(spec: str) -> tuple[str, str | None]:
    """`FILE[:REF]` as skopeo splits it: FILE ends at the first ':' (REF may hold colons:
    `out.tar:localhost:5000/app:v1`), so FILE itself cannot contain one."""
    path, sep, ref = spec.partition(":")
    if not path:
        raise UsageError("docker-archive needs a file: docker-archive:FILE[:NAME:TAG]")
    if sep and not ref:
        raise UsageError(f"docker-archive:{spec}: empty image reference after ':'")
    return path, ref if sep else None


def tag_of(repo_tag: str) -> str | None:
    """The TAG of a RepoTags entry (`NAME:TAG`), None when it has none."""
    colon = repo_tag.rfind(":")
    return repo_tag[colon + 1 :] if colon > repo_tag.rfind("/") else None


def json_document(data: bytes, where: str) -> Any:
    """manifest.json or a config, parsed; `where` names it in the error."""
    try:
        return loads(data)
    except JSONDocumentError as exc:
        raise BerthError(f"{where}: {exc}") from None


def config_diff_ids(config: bytes, where: str) -> list[Digest]:
    """An image config's `rootfs.diff_ids`: they pair up with manifest.json's `Layers`."""
    doc = json_document(config, where)
    rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list):
        raise BerthError(f"{where}: not an image config (no rootfs.diff_ids)")
    try:
        return [Digest.parse(d) for d in ids]
    except DigestError as exc:
        raise BerthError(f"{where}: rootfs.diff_ids: {exc}") from None
