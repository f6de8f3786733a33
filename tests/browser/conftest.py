"""Browser tests: the real app served by uvicorn on loopback (a real SQLite file), driven by Playwright
with Debian's Chromium; axe-core from ``tests/browser/node_modules`` (``npm ci`` in this folder).

Without Chromium or axe-core these tests FAIL when ``CI`` is set (so CI can never pass by skipping them)
and are skipped, with the reason, on a developer machine.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefcenter.config import load_settings
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services import keys
from prefcenter.services.runtime import Runtime
from prefcenter.store.sqlite import SqliteStore
from tests.conftest import CRM_EVIDENCE, PROFILE, SECRET
from tests.live import free_port, serve

HERE = Path(__file__).parent
REPO = HERE.parent.parent
CHROMIUM = Path(os.environ.get("PREFCENTER_CHROMIUM", "/usr/bin/chromium"))
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path("/tmp/prefcenter-shots")
# For page.evaluate: the left edges of the characters of an element's first text node, in logical
# order; spaces left out.
CHAR_LEFTS = """(el) => {
  const node = el.firstChild, range = document.createRange(), out = [];
  for (let i = 0; i < node.length; i++) {
    if (node.data[i] === ' ') continue;
    range.setStart(node, i); range.setEnd(node, i + 1);
    out.push(range.getBoundingClientRect().left);
  }
  return out;
}"""
TOPICS = {
    "promotions": {"category": "marketing", "names": {"en": "Offers", "fa": "پیشنهادهای ویژه", "pl": "Oferty"},
                   "descriptions": {"en": "Discounts and sales, at most weekly.",
                                    "fa": "تخفیف‌ها و حراج‌ها، حداکثر هفته‌ای یک بار."}},
    "product-news": {"category": "marketing", "names": {"en": "Product news", "fa": "خبرهای محصولات"}},
    "order-updates": {"category": "transactional", "names": {"en": "Order updates", "fa": "وضعیت سفارش‌ها"}},
}  # fmt: skip


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Server:
    base: str
    headers: dict[str, str]
    rt: Runtime

    def customer(self, cid: str, locale: str = "en", **prefs: Any) -> tuple[str, str]:
        """Create a customer (with preferences, if given); returns (manage_url, unsubscribe_url)."""
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=10) as client:
            r = client.put(f"/v1/customers/{cid}", json={**PROFILE, "locale": locale})
            assert r.status_code in (200, 201), r.text
            if prefs:
                body = {
                    "channel": None,
                    "topics": [],
                    "quiet_hours": None,
                    "max_per_week": None,
                    "paused_until": None,
                    "provenance": {
                        "source": "crm",
                        "actor": "browser-test",
                        "notice_version": "t-1",
                        "evidence": CRM_EVIDENCE,
                    },
                    **prefs,
                }
                r = client.put(f"/v1/customers/{cid}/preferences", json=body)
                assert r.status_code == 200, r.text
            r = client.post(f"/v1/customers/{cid}/links", json={})
            assert r.status_code == 201, r.text
            return r.json()["manage_url"], r.json()["unsubscribe_url"]

    def preferences(self, cid: str) -> dict[str, Any]:
        r = httpx.get(f"{self.base}/v1/customers/{cid}/preferences", headers=self.headers, timeout=10)
        assert r.status_code == 200
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("browser") / "prefcenter.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = load_settings(
        {},
        database_url=f"sqlite:///{db}",
        secret_key=SECRET,
        public_url=base,
        policy_dir=str(REPO / "policies"),
        key_cache_seconds=0,
        # the sender's identity on every page (a Latin name inside the Persian pages, isolated)
        controller_name="Example Shop Ltd.",
        postal_address="1 Example Street, 00-950 Warszawa, Poland",
        privacy_url="https://shop.example/privacy",
    )

    async def seed_key() -> str:
        rt = Runtime(settings=settings, store=SqliteStore(db), pseudonyms=Pseudonymizer(SECRET))
        await rt.store.open()
        try:
            await rt.store.migrate()
            _, key = await keys.create_key(rt, "admin", "browser-tests")
            return key
        finally:
            await rt.store.close()

    key = asyncio.run(seed_key())
    rt = Runtime(settings=settings, store=SqliteStore(db), pseudonyms=Pseudonymizer(SECRET))
    with serve(rt, port):
        headers = {"Authorization": f"Bearer {key}"}
        for topic_id, topic in TOPICS.items():
            r = httpx.put(f"{base}/v1/topics/{topic_id}", json=topic, headers=headers, timeout=10)
            assert r.status_code in (200, 201), r.text
        yield Server(base=base, headers=headers, rt=rt)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require(CHROMIUM.exists(), f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    _require(AXE.exists(), f"axe-core not installed at {AXE}: run `npm ci` in tests/browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a test dependency
        _require(False, "the playwright Python package is not installed")
        raise
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()
