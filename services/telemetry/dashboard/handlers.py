"""The dashboard's aiohttp handlers: `/` (the page), `/static/<file>` (ours), `/static/lib/<file>` (the
libraries, from their wheels). Every answer carries a Content-Security-Policy that allows only this origin
(scripts, styles, API calls), so the page cannot load or send anything elsewhere, and no-cache so an upgrade
shows at once (files are revalidated with their ETag: a 304 costs no body).
"""

from __future__ import annotations

import logging

from aiohttp import web

from services.telemetry.dashboard.assets import AssetMissing, library_path, static_path

log = logging.getLogger(__name__)

# plotly and vis-network set inline styles (style attributes, injected <style>): 'unsafe-inline' for styles
# only; scripts come from 'self' alone. data: images: vis-network's and plotly's icons.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(static_path("index.html"), headers=HEADERS)


async def static_file(request: web.Request) -> web.FileResponse:
    try:
        path = static_path(request.match_info["name"])
    except KeyError:
        raise web.HTTPNotFound(text="no such file\n") from None
    return web.FileResponse(path, headers=HEADERS)


async def library_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    try:
        path = library_path(name)
    except KeyError:
        raise web.HTTPNotFound(text="no such file\n") from None
    except AssetMissing as exc:
        log.error("dashboard asset missing: %s", exc)
        raise web.HTTPInternalServerError(text=f"{exc}\n") from None
    return web.FileResponse(path, headers=HEADERS)


def routes() -> list[web.RouteDef]:
    """GET (and HEAD) `/`, `/static/lib/{name}`, `/static/{name}`; 404 for a file that is not ours."""
    return [
        web.get("/", page),
        web.get("/static/lib/{name}", library_file),
        web.get("/static/{name}", static_file),
    ]
