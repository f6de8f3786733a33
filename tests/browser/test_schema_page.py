"""Issue 10: the OpenAPI UI at /schema renders in Chromium with nothing fetched from another host.

Swagger UI's script, style sheet and favicon come from prefcenter itself (prefcenter/api/docs.py).
Every request to another host is aborted, so the test means the same with or without internet: a page
that still needed a CDN would stay blank, and the test fails on the aborted request as well.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from prefcenter.api.docs import ASSETS_SUBPATH
from tests.browser.conftest import SHOTS, Server

# Operations Swagger UI must show, as (tag, operationId): its deep-link ids are operations-<tag>-<id>.
OPERATIONS = [("customers", "getConsentReceipt"), ("topics", "listTopics")]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def test_schema_page_renders_with_no_request_to_another_host(server: Server, page: Any) -> None:
    own = _origin(server.base)
    requests: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
    page.on("pageerror", lambda e: errors.append(str(e)))

    def offline(route: Any) -> None:
        if _origin(route.request.url) == own:
            route.continue_()
        else:
            route.abort("internetdisconnected")

    page.route("**/*", offline)

    response = page.goto(f"{server.base}/schema")
    assert response is not None and response.status == 200
    for tag, operation_id in OPERATIONS:
        page.locator(f"#operations-{tag}-{operation_id}.opblock").wait_for(state="visible")
    assert page.locator(".opblock").count() > 10
    page.get_by_role("button", name="Authorize").wait_for(state="visible")  # the bearer security scheme
    heading = page.locator(".information-container h2.title")
    assert heading.inner_text().startswith("prefcenter")
    assert page.title() == "prefcenter"
    page.wait_for_load_state("networkidle")  # the favicon is fetched late
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "schema.png"))

    web = [url for url in requests if urlsplit(url).scheme in ("http", "https", "ws", "wss")]
    assert web, requests
    elsewhere = [url for url in web if _origin(url) != own]
    assert elsewhere == [], f"requests to another host: {elsewhere}"
    assert failed == []
    assert errors == []
    paths = {urlsplit(url).path for url in web}
    assets = f"/schema{ASSETS_SUBPATH}"
    assert {"/schema", f"{assets}/swagger-ui-bundle.js", f"{assets}/swagger-ui.css"} <= paths


def test_an_operation_opens_and_shows_its_roles(server: Server, page: Any) -> None:
    """The UI is usable, not only drawn: an operation expands and shows the roles _annotate_roles wrote."""
    page.goto(f"{server.base}/schema")
    block = page.locator("#operations-customers-getConsentReceipt")
    block.locator(".opblock-summary").click()
    block.get_by_text("Roles:").wait_for(state="visible")
    assert "admin, auditor" in block.inner_text()
