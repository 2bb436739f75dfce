"""`/docs` (Swagger UI) and `/redoc` without internet access.

FastAPI's own pages load Swagger UI and ReDoc from a CDN: on a machine without internet (a
support laptop behind a proxy, an air-gapped operator host) `/docs` was a blank page. Here
the assets come from the `fastapi-offline` package (MIT), which ships the Swagger UI
(Apache-2.0) and ReDoc (MIT) bundles, served by the API itself under `/docs-assets/`; the
pages reference nothing else. ReDoc's Google Fonts are left out, and the one image its
bundle loads from Redocly's CDN (the "API docs by Redocly" logo) is replaced by an inline one
when the bundle is served (tests/browser/test_docs_offline.py sees every request the pages
make).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, Response

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

# Swagger UI options: the key entered under "Authorize" survives a reload; no call to the
# public validator service (validator.swagger.io) — nothing leaves the machine.
SWAGGER_UI_PARAMETERS = {
    "persistAuthorization": True,
    "validatorUrl": None,
    "displayRequestDuration": True,
    "tryItOutEnabled": False,
}


REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
INLINE_LOGO = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@lru_cache(maxsize=1)
def redoc_bundle() -> bytes:
    """ReDoc's bundle without its one request to Redocly's CDN (read once per process)."""
    return (
        (ASSETS / "redoc.standalone.js")
        .read_bytes()
        .replace(REDOC_LOGO.encode(), INLINE_LOGO.encode())
    )


def install(app: FastAPI) -> None:
    """Serve the assets and the two pages; `app` must be created with `docs_url=None` and
    `redoc_url=None` (FastAPI's CDN pages off)."""

    # Before the mount: this one asset is served patched.
    @app.get(f"{ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(
            redoc_bundle(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} — API",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} — API reference",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
