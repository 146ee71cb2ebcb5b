"""The interactive API docs (``/docs``: Swagger UI, ``/redoc``: ReDoc), served from this server's own files.

FastAPI's defaults load Swagger UI and ReDoc from a CDN, so on an air-gapped host (where GPU servers often live) the
pages stay blank. The assets come from the ``fastapi-offline`` distribution (a dependency: Swagger UI 5, which
renders the OpenAPI 3.1 document FastAPI writes, and ReDoc 2), and are served at ``/docs/assets/<file>`` from an
allow-list. Without that distribution the pages fall back to the CDN, as FastAPI does.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import FileResponse, HTMLResponse

from service.api.errors import NotFound

log = logging.getLogger(__name__)

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs/assets"
ASSETS_PACKAGE = "fastapi_offline"
ASSET_TYPES = {  # the files served, and their media types: nothing else under the package is reachable
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
ASSET_CACHE = "public, max-age=86400"  # the files change only with the installed package


def assets_dir() -> Path | None:
    """The directory holding the UI files, or None when the distribution is not installed."""
    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if all((static / name).is_file() for name in ASSET_TYPES) else None


def install(app: FastAPI) -> None:
    """Add the docs routes to an app built with ``docs_url=None, redoc_url=None``."""
    static = assets_dir()
    if static is None:
        log.warning("%s is not installed: /docs and /redoc load Swagger UI and ReDoc from a CDN "
                    "(pip install fastapi-offline serves them from this server)", ASSETS_PACKAGE.replace("_", "-"))

    def urls(req: Request) -> tuple[str, str]:
        root = req.scope.get("root_path", "").rstrip("/")
        return root + (app.openapi_url or "/openapi.json"), root + ASSETS_URL

    async def swagger(req: Request) -> HTMLResponse:
        openapi, assets = urls(req)
        title = f"{app.title} - Swagger UI"
        redirect = req.scope.get("root_path", "").rstrip("/") + OAUTH2_REDIRECT_URL
        if static is None:
            return get_swagger_ui_html(openapi_url=openapi, title=title, oauth2_redirect_url=redirect)
        return get_swagger_ui_html(openapi_url=openapi, title=title, oauth2_redirect_url=redirect,
                                   swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css", swagger_favicon_url=f"{assets}/favicon.png")

    async def redoc(req: Request) -> HTMLResponse:
        openapi, assets = urls(req)
        title = f"{app.title} - ReDoc"
        if static is None:
            return get_redoc_html(openapi_url=openapi, title=title)
        return get_redoc_html(openapi_url=openapi, title=title, redoc_js_url=f"{assets}/redoc.standalone.js",
                              redoc_favicon_url=f"{assets}/favicon.png", with_google_fonts=False)

    async def oauth2_redirect(req: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def asset(req: Request) -> FileResponse:
        name = req.path_params["name"]
        if static is None:
            raise NotFound(f"no docs asset {name!r}: {ASSETS_PACKAGE.replace('_', '-')} is not installed")
        if name not in ASSET_TYPES:
            raise NotFound(f"no docs asset {name!r}; served: {', '.join(sorted(ASSET_TYPES))}")
        return FileResponse(static / name, media_type=ASSET_TYPES[name], headers={"cache-control": ASSET_CACHE})

    app.add_route(DOCS_URL, swagger, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
    app.add_route(ASSETS_URL + "/{name}", asset, include_in_schema=False)
