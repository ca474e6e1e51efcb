"""`/v2/<name>/referrers/<digest>`: the manifests whose `subject` is a digest."""

from __future__ import annotations

import json

from aiohttp import web

from client.oci import mediatypes as mt

from .common import digest_param, registry, repository


async def list_referrers(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    subject = digest_param(request.match_info["digest"])
    artifact_type = request.query.get("artifactType") or None
    infos = await registry(request).manifests.referrers(name, subject, artifact_type)
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [i.descriptor() for i in sorted(infos, key=lambda i: i.digest)],
    }
    headers = {"Content-Type": mt.OCI_INDEX}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    return web.Response(body=json.dumps(body).encode(), headers=headers)


def routes(app: web.Application) -> None:
    app.router.add_route("GET", "/v2/{name:.+}/referrers/{digest:[^/]+}", list_referrers)
