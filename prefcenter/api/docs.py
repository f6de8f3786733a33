"""The OpenAPI UI under ``/schema``, rendered by Swagger UI whose assets prefcenter serves itself.

litestar's :class:`SwaggerRenderPlugin` loads Swagger UI's script, style sheet and the favicon from a
CDN, so without internet ``/schema`` was a blank page (issue 10). :class:`BundledSwaggerUI` renders
the same page but points it at ``/schema/assets/<bundle version>/...``, a route it adds to the OpenAPI
router that answers from the files of the installed ``openapi-ui-bundles`` package (Swagger UI 5, which
renders OpenAPI 3.1; ``swagger-ui-bundle`` 1.1.0 ships Swagger UI 4, which refuses a 3.1 document).

Only the files the page loads are served (an allow-list, not the package folder), with their content
type and ``nosniff``. The bundle's version is part of the URL, so the assets may be cached for a year
(``immutable``): an upgrade changes the URL. The routes carry no roles, so the role check lets them
through without a key, as it does the page and ``/schema/openapi.json``.
"""

from __future__ import annotations

import functools
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import openapi_ui_bundles
from litestar import Response, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath
from litestar.router import Router

BUNDLE_DIR: Final[Path] = openapi_ui_bundles.swagger_ui.static_path
BUNDLE_VERSION: Final[str] = version("openapi-ui-bundles")
ASSETS_SUBPATH: Final[str] = f"/assets/{BUNDLE_VERSION}"
ASSET_CACHE_CONTROL: Final[str] = "public, max-age=31536000, immutable"

JS = "text/javascript"  # litestar adds "; charset=utf-8" to text/* types
CSS = "text/css"
PNG = "image/png"
ASSET_TYPES: Final[dict[str, str]] = {
    "swagger-ui-bundle.js": JS,
    "swagger-ui-standalone-preset.js": JS,
    "swagger-ui.css": CSS,
    "favicon-32x32.png": PNG,
    "favicon-16x16.png": PNG,
}


@functools.cache
def asset_bytes(name: str) -> bytes:
    """One allow-listed asset, read once per process (about 1.8 MB for all of them)."""
    return (BUNDLE_DIR / name).read_bytes()


def serve_asset(name: FromPath[str]) -> Response[bytes]:
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        raise NotFoundException(f"No documentation asset {name!r}.")
    return Response(
        asset_bytes(name),
        media_type=media_type,
        headers={"cache-control": ASSET_CACHE_CONTROL, "x-content-type-options": "nosniff"},
    )


class BundledSwaggerUI(SwaggerRenderPlugin):
    """litestar's Swagger UI page (same paths: the OpenAPI root and ``/swagger`` under it, and
    ``/oauth2-redirect.html``), with every asset served from the installed package."""

    def __init__(self, openapi_path: str = "/schema", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._point_at(openapi_path)

    def _point_at(self, openapi_path: str) -> None:
        base = f"{openapi_path.rstrip('/')}{ASSETS_SUBPATH}"
        self.js_url = f"{base}/swagger-ui-bundle.js"
        self.css_url = f"{base}/swagger-ui.css"
        self.standalone_preset_js_url = f"{base}/swagger-ui-standalone-preset.js"
        self.favicon = (
            f"<link rel='icon' type='image/png' sizes='32x32' href='{base}/favicon-32x32.png'>"
            f"<link rel='icon' type='image/png' sizes='16x16' href='{base}/favicon-16x16.png'>"
        )

    def receive_router(self, router: Router) -> None:
        """Add the asset route to the OpenAPI router, and take the URLs from where it is mounted."""
        super().receive_router(router)
        self._point_at(router.path)
        router.register(
            get(
                f"{ASSETS_SUBPATH}/{{name:str}}",
                sync_to_thread=False,
                include_in_schema=False,
                name="openapi-ui-asset",
            )(serve_asset)
        )


__all__ = ["ASSET_TYPES", "BundledSwaggerUI"]
