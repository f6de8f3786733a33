"""Issue 9, item 7: logs carry the pseudonym, never the customer id, contacts, keys or secrets.

The real ``prefcenter serve`` (``prefcenter.cli.main``) runs as a process on 127.0.0.1 at DEBUG, in
development and in production mode, with every byte of its stdout and stderr kept. The test drives a
customer with an email address as its id through the API and the pages: profile and preferences, a
validation error, an approval, links, the preference and unsubscribe pages, an erasure, and two 500s
(one through the API, one through a page) raised in frames whose local variables hold the secret key,
the link keys, the caller's API key, the email address and the phone number, so the test fails if a
traceback with locals is ever printed again; the exceptions' messages name the contacts and the id, as
library errors do, so it fails too if the redaction of the formatted traceback goes. Then none of those
values may appear in the output.

Also here: every ``/v1`` response carries ``Cache-Control: no-store`` (issue 9, item 11).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services.links import CSRF_KEY_LABEL, DERIVED_KEY_LABEL
from tests.conftest import Api, prefs_body
from tests.live import free_port, stop

REPO = Path(__file__).resolve().parents[2]
CUSTOMER_ID = "ola.person@example.pl"  # API.md allows an email address as a customer id
EMAIL = "ola.private@example.org"
PHONE = "+48600111222"
SECRET = "hygiene-secret-key-0123456789abcdef"
LINK_KEYS = ("hygiene-link-key-new-0123456789", "hygiene-link-key-old-0123456789")

# Run in the server process before `prefcenter serve`: two service functions raise (once each) from a
# frame whose locals hold everything a log must never show.
DRIVER = r"""
import os, sys

import prefcenter.services.customers as customers
import prefcenter.web.pages as pages
from prefcenter.config import resolve_secret_key

fired = set()
original_get_customer = customers.get_customer
original_page_model = pages.page_model


async def leaky_get_customer(rt, customer_id):
    customer = await original_get_customer(rt, customer_id)
    if "api" not in fired:
        fired.add("api")
        secret = resolve_secret_key(rt.settings)
        link_keys = rt.settings.link_keys
        bearer = "Bearer " + os.environ["HYGIENE_BEARER"]
        email = customer.profile.contacts.email
        phone = customer.profile.contacts.sms
        # The message too: library errors often name the address (the redactor's part).
        raise RuntimeError(f"the profile store is unavailable for {email} and {phone}")
    return customer


def leaky_page_model(customer, *args, **kwargs):
    if "page" not in fired:
        fired.add("page")
        secret = os.environ.get("PREFCENTER_SECRET_KEY") or open(os.environ["HYGIENE_KEY_FILE"]).read()
        bearer = os.environ["HYGIENE_BEARER"]
        customer_id = customer.customer_id
        email = customer.profile.contacts.email
        phone = customer.profile.contacts.sms
        raise KeyError(customer_id)
    return original_page_model(customer, *args, **kwargs)


customers.get_customer = leaky_get_customer
pages.page_model = leaky_page_model

from prefcenter.cli import main

sys.argv = ["prefcenter", "serve", "--no-dispatcher"]
main()
"""


def _env(tmp_path: Path, mode: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFCENTER_")}
    env.update(
        PREFCENTER_DATABASE_URL=f"sqlite:///{tmp_path}/hygiene.db",
        PREFCENTER_LOG_LEVEL="debug",
        PREFCENTER_PORT=str(port),
        PREFCENTER_PUBLIC_URL=f"http://127.0.0.1:{port}",
        PREFCENTER_ENV=mode,
        PYTHONUNBUFFERED="1",
    )
    if mode == "production":  # production needs the secret; development generates one (beside the db)
        env.update(PREFCENTER_SECRET_KEY=SECRET, PREFCENTER_LINK_KEYS=",".join(LINK_KEYS))
        env.update(
            PREFCENTER_CONTROLLER_NAME="Shop Ltd",
            PREFCENTER_POSTAL_ADDRESS="1 High St, Town",
            PREFCENTER_PRIVACY_URL="https://shop.example/privacy",
        )
    return env


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no csrf field on the page"
    return match.group(1)


def _drive(base: str, admin: dict[str, str]) -> list[str]:
    """Every step that handles the customer's data; returns the link tokens it saw."""
    cid = CUSTOMER_ID
    with httpx.Client(base_url=base, timeout=10) as c:
        deadline = time.monotonic() + 20
        while True:
            try:
                if c.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

        profile = {
            "timezone": "Europe/Warsaw",
            "locale": "en",
            "country": "PL",
            "contacts": {"email": EMAIL, "sms": PHONE, "push": None, "voice": PHONE},
        }
        topic = {"category": "marketing", "names": {"en": "Offers"}}
        assert c.put("/v1/topics/promotions", json=topic, headers=admin).status_code in (200, 201)
        r = c.put(f"/v1/customers/{cid}", json=profile, headers=admin)
        assert r.status_code == 201, r.text
        assert r.headers["cache-control"] == "no-store"
        r = c.put(f"/v1/customers/{cid}/preferences", json=prefs_body(), headers=admin)
        assert r.status_code == 200, r.text
        # A validation error whose body holds the contacts.
        bad = {**profile, "timezone": "Mars/Olympus", "contacts": {"email": EMAIL, "sms": PHONE + "x"}}
        assert c.put(f"/v1/customers/{cid}", json=bad, headers=admin).status_code == 400
        # A 500 through the API (the patched customers.get_customer raises once).
        r = c.get(f"/v1/customers/{cid}", headers=admin)
        assert r.status_code == 500 and r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["cache-control"] == "no-store"
        assert c.get(f"/v1/customers/{cid}", headers=admin).json()["contacts"]["email"] == EMAIL

        campaign = {
            "topic": "promotions",
            "channels": ["email"],
            "content": {"email": {"subject": "Hi", "text": "Manage: {{ manage_url }}", "html": "<p>x</p>"}},
        }
        assert c.put("/v1/campaigns/offers", json=campaign, headers=admin).status_code in (200, 201)
        r = c.post("/v1/approvals", json={"campaign_id": "offers", "customer_ids": [cid]}, headers=admin)
        assert r.status_code == 200, r.text

        r = c.post(f"/v1/customers/{cid}/links", json={}, headers=admin)
        assert r.status_code == 201, r.text
        manage = httpx.URL(r.json()["manage_url"]).path
        unsubscribe = httpx.URL(r.json()["unsubscribe_url"]).path
        # A 500 through a page (the patched page_model raises once), then the page itself.
        r = c.get(manage)
        assert r.status_code == 500 and r.headers["cache-control"] == "no-store"
        r = c.get(manage)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        r = c.post(manage, data={"action": "stop_all", "csrf": _csrf(r.text)})
        assert r.status_code == 303, r.text
        assert c.get(unsubscribe).status_code == 200
        r = c.post(
            unsubscribe,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200
        assert c.delete(f"/v1/customers/{cid}", headers=admin).status_code == 204
        assert c.get(manage).status_code in (400, 404, 410)  # the link died with the person
    return [manage.rsplit("/", 1)[-1], unsubscribe.rsplit("/", 1)[-1]]


@pytest.mark.parametrize("mode", ["development", "production"])
@pytest.mark.sqlite_only  # the CLI on a sqlite:/// URL
def test_logs_hold_no_secrets_ids_or_contacts(tmp_path: Path, mode: str) -> None:
    port = free_port()
    env = _env(tmp_path, mode, port)
    out = tmp_path / "output.log"
    with out.open("wb") as sink:
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "prefcenter.cli",
                "keys",
                "create",
                "--role",
                "admin",
                "--name",
                "hygiene",
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=sink,
            timeout=30,
            check=True,
        )
        bearer = created.stdout.decode().strip().splitlines()[-1]  # printed once, on stdout, by design
        key_file = tmp_path / "hygiene.db.key"
        env.update(HYGIENE_BEARER=bearer, HYGIENE_KEY_FILE=str(key_file))
        server = subprocess.Popen(
            [sys.executable, "-c", DRIVER], env=env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            tokens = _drive(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {bearer}"})
        finally:
            stop(server, signal.SIGINT, timeout=15)
    text = out.read_text(encoding="utf-8", errors="replace")

    # The log did record what happened, traceback included (so the checks below are not vacuous).
    assert "unhandled error" in text and "page error" in text
    assert "RuntimeError: the profile store is unavailable for [redacted]" in text and "KeyError" in text
    assert "customer erased" in text and "customer_ref" in text
    assert "╭" not in text and "─ locals ─" not in text  # rich's boxes of frames and their locals

    secret = SECRET if mode == "production" else key_file.read_text().strip()
    derived = Pseudonymizer(secret)
    forbidden = {
        "the secret key": secret,
        "the derived link key": derived.customer_ref(DERIVED_KEY_LABEL),
        "the CSRF key": derived.customer_ref(CSRF_KEY_LABEL),
        "the API key": bearer,
        "the API key's random part": bearer.removeprefix("pck_"),
        "the customer id": CUSTOMER_ID,
        "the email address": EMAIL,
        "the phone number": PHONE,
        "the phone number's digits": PHONE.removeprefix("+"),
        **{f"link token {i}": token for i, token in enumerate(tokens)},
    }
    if mode == "production":
        forbidden.update({f"link key {i}": key for i, key in enumerate(LINK_KEYS)})
    for what, value in forbidden.items():
        assert value not in text, f"{what} appears in the {mode} log"
    # Ids and contacts are also never logged in the forms a library would give them.
    for value in (CUSTOMER_ID, EMAIL):
        for variant in (value.upper(), value.replace("@", "%40"), value.split("@")[0]):
            assert variant not in text, f"{variant!r} appears in the {mode} log"


async def test_v1_responses_are_not_stored(api: Api) -> None:
    """Item 11: /v1 answers carry personal data: Cache-Control: no-store on every one (errors too)."""
    from tests.conftest import PROFILE

    c, admin = api.client, api.as_("admin")
    assert (await c.put("/v1/customers/c-1", json=PROFILE, headers=admin)).status_code == 201
    await c.put("/v1/customers/c-1/preferences", json=prefs_body(), headers=admin)
    paths = [
        "/v1/customers/c-1",
        "/v1/customers/c-1/preferences",
        "/v1/customers/c-1/consent-receipt",
        "/v1/customers/c-1/decisions",
        "/v1/consent-events",
        "/v1/consent-events/verify",
        "/v1/consent-events/export?format=jsonl",
        "/v1/topics",
    ]
    for path in paths:
        r = await c.get(path, headers=admin)
        assert r.status_code == 200, (path, r.text)
        assert r.headers.get("cache-control") == "no-store", path
    refusals: list[Any] = [
        await c.get("/v1/customers/c-1"),  # 401
        await c.get("/v1/customers/nobody", headers=admin),  # 404
        await c.delete("/v1/customers/c-1", headers=api.as_("marketing")),  # 403
    ]
    assert [r.status_code for r in refusals] == [401, 404, 403]
    assert all(r.headers.get("cache-control") == "no-store" for r in refusals)
    assert "cache-control" not in (await c.get("/healthz")).headers
