"""The telemetry service's dashboard: one page (`/`) and its assets (`/static/...`), reading the JSON API.

    routes() -> list[aiohttp.web.RouteDef]   what the service adds to its aiohttp application
    assets.py    where the page's files and the browser libraries it loads are (installed wheels)
    handlers.py  the aiohttp handlers: the page, our static files, the libraries; security headers

The page (static/) polls the service's API every few seconds: /api/graph, /api/series, /api/proxies,
/api/logs and Zipkin's /api/v2/... (shapes in proto/observations.py and proto/xds.ProxyStatusReply).
Nothing loads from another origin; docs/dashboard.md describes every view.
"""

from services.telemetry.dashboard.handlers import routes

__all__ = ["routes"]
