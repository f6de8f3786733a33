"""Issue 10 over plain HTTP: /schema references only its own assets, and each answers 200 with its type.

No request here carries an API key: the UI, its assets and the OpenAPI JSON are public, as before.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from prefcenter.api.docs import ASSET_CACHE_CONTROL, ASSET_TYPES, ASSETS_SUBPATH, BUNDLE_DIR
from tests.conftest import Api

EXPECTED_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}


class _Refs(HTMLParser):
    """Every URL the page would load: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src", "iframe": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def refs(html: str) -> list[str]:
    parser = _Refs()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("path", ["/schema", "/schema/", "/schema/swagger"])
async def test_ui_references_only_its_own_assets_and_each_answers(api: Api, path: str) -> None:
    page = await api.client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>prefcenter</title>" in page.text
    urls = refs(page.text)
    assert len(urls) >= 4, urls  # style sheet, two scripts, favicon
    page_url = f"http://testserver{path}"
    for url in urls:
        parts = urlsplit(url)
        assert not url.startswith("//") and parts.scheme in ("", "http"), url
        assert parts.netloc in ("", "testserver"), url
        absolute = urlsplit(urljoin(page_url, url))
        assert absolute.path.startswith(f"/schema{ASSETS_SUBPATH}/"), url
        asset = await api.client.get(absolute.path)
        assert asset.status_code == 200, url
        suffix = absolute.path[absolute.path.rfind(".") :]
        assert asset.headers["content-type"] == EXPECTED_TYPES[suffix], url
        assert asset.headers["cache-control"] == ASSET_CACHE_CONTROL
        assert asset.headers["x-content-type-options"] == "nosniff"
        name = absolute.path.rsplit("/", 1)[1]
        assert asset.content == (BUNDLE_DIR / name).read_bytes()
    head = page.text.split("spec:")[0]  # the markup before the embedded OpenAPI document
    assert "https://" not in head and "cdn." not in head


async def test_every_allowed_asset_answers_and_nothing_else_does(api: Api) -> None:
    base = f"/schema{ASSETS_SUBPATH}"
    for name in ASSET_TYPES:
        r = await api.client.get(f"{base}/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"] == EXPECTED_TYPES[name[name.rfind(".") :]]
    for path in (
        f"{base}/index.html",  # in the package folder, but not one of the page's assets
        f"{base}/__init__.py",
        f"{base}/..%2F__init__.py",
        "/schema/assets/0.0.0/swagger-ui.css",  # another version's URL
    ):
        assert (await api.client.get(path)).status_code == 404, path


async def test_the_other_schema_paths_still_answer(api: Api) -> None:
    doc = await api.client.get("/schema/openapi.json")
    assert doc.status_code == 200 and doc.json()["info"]["title"] == "prefcenter"
    redirect = await api.client.get("/schema/oauth2-redirect.html")
    assert redirect.status_code == 200 and redirect.headers["content-type"].startswith("text/html")
    assert (await api.client.get("/schema/nothing-here")).status_code == 404
    # The asset route is documentation plumbing, not part of the API it documents.
    assert not any(p.startswith("/schema") for p in doc.json()["paths"])
