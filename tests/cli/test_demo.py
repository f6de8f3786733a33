"""``prefcenter demo`` and start-up settings, seen from outside (issue 10, items 2-4): links follow the
port ``serve`` uses unless PREFCENTER_PUBLIC_URL says otherwise, a rerun replaces the demo key instead
of piling keys up, and a misspelt variable is named at start-up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import msgspec

from prefcenter.messaging.email import build_email, render
from prefcenter.services.demo import DEMO_CAMPAIGN_ID, seed_demo
from prefcenter.services.links import mint_links
from prefcenter.services.runtime import Runtime
from tests.api.test_links import create
from tests.conftest import Api

URL = re.compile(r"https?://[^\s'\"]+")


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in ``tmp_path`` (no ./policies there) with only the PREFCENTER_* variables given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFCENTER_")}
    full = {
        **base,
        "PREFCENTER_DATABASE_URL": f"sqlite:///{tmp_path}/demo.db",
        "PREFCENTER_SECRET_KEY": "demo-test-secret-key-123",
        "PREFCENTER_LOG_LEVEL": "warning",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", *args],
        cwd=tmp_path,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


# -- item 2: links follow the port `serve` listens on --------------------------------------------------


def test_demo_links_follow_the_port(tmp_path: Path) -> None:
    out = run(tmp_path, "demo", "--customers", "3", PREFCENTER_PORT="8201").stdout
    urls = URL.findall(out)
    assert len(urls) >= 6
    assert all(u.startswith("http://127.0.0.1:8201/") for u in urls), urls
    assert ":8000" not in out
    assert re.search(r"preference page:\s+http://127\.0\.0\.1:8201/p/\S+", out)
    assert re.search(r"unsubscribe page:\s+http://127\.0\.0\.1:8201/u/\S+", out)


def test_an_explicit_public_url_wins_for_links_not_for_the_api(tmp_path: Path) -> None:
    out = run(
        tmp_path,
        "demo",
        "--customers",
        "3",
        PREFCENTER_PORT="8201",
        PREFCENTER_PUBLIC_URL="https://prefs.example",
    ).stdout
    assert re.search(r"preference page:\s+https://prefs\.example/p/\S+", out)
    assert re.search(r"unsubscribe page:\s+https://prefs\.example/u/\S+", out)
    assert "http://127.0.0.1:8201/v1/customers/demo-0001/preferences" in out  # curls go to `serve`


async def test_minted_links_and_email_headers_follow_the_port(api: Api) -> None:
    """The links API, the List-Unsubscribe header and the email footer, with PREFCENTER_PORT=8201."""
    api.rt.settings = msgspec.structs.replace(api.rt.settings, port=8201)
    await create(api)
    r = await api.client.post("/v1/customers/c1/links", json={}, headers=api.as_("marketing"))
    assert r.status_code == 201, r.text
    assert r.json()["manage_url"].startswith("http://127.0.0.1:8201/p/")
    assert r.json()["unsubscribe_url"].startswith("http://127.0.0.1:8201/u/")

    rt: Runtime = api.rt
    await seed_demo(rt, 3)
    campaign = await rt.store.get_campaign(DEMO_CAMPAIGN_ID)
    person = await rt.store.get_customer("demo-0001")
    assert campaign is not None and person is not None
    message = render(
        public_url_links=mint_links(rt, person, campaign.topic),
        campaign_id=DEMO_CAMPAIGN_ID,
        campaign=campaign,
        marketing=True,
        customer=person,
        channel="email",
        from_address=rt.settings.smtp_from,
        controller=rt.settings.controller,
    )
    parsed = message_from_bytes(build_email(message, rt.settings.smtp_from, rt.now()), policy=policy.default)
    assert parsed["List-Unsubscribe"].startswith("<http://127.0.0.1:8201/u/")
    plain_part, html_part = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain_part is not None and html_part is not None
    text, html = plain_part.get_content(), html_part.get_content()
    for body in (text, html):
        urls = URL.findall(body)
        assert urls and all(u.startswith("http://127.0.0.1:8201/") for u in urls), urls
    assert "/p/" in text.rsplit("--", 1)[1]  # the footer's preference link

    api.rt.settings = msgspec.structs.replace(api.rt.settings, public_url_setting="https://prefs.example")
    manage, unsubscribe = mint_links(rt, person, None)
    assert manage.startswith("https://prefs.example/p/") and unsubscribe.startswith(
        "https://prefs.example/u/"
    )


# -- item 3: one live demo key, whatever the number of runs ----------------------------------------------


def test_rerunning_demo_replaces_the_demo_key(tmp_path: Path) -> None:
    first = run(tmp_path, "demo", "--customers", "3").stdout
    first_key = first.strip().splitlines()[-1]
    assert first_key.startswith("pck_") and "revoked" not in first
    run(tmp_path, "keys", "create", "--role", "admin", "--name", "ops")  # someone else's key: kept
    second = run(tmp_path, "demo", "--customers", "3").stdout
    second_key = second.strip().splitlines()[-1]
    assert second_key.startswith("pck_") and second_key != first_key
    assert "revoked the previous demo-admin key #1" in second and "0 customers created" in second
    third_key = run(tmp_path, "demo", "--customers", "3").stdout.strip().splitlines()[-1]

    rows = [line.split("\t") for line in run(tmp_path, "keys", "list").stdout.splitlines()]
    demo = [r for r in rows if r[2] == "demo-admin"]
    assert [r[0] for r in demo] == ["1", "3", "4"]
    assert [r[-1] == "active" for r in demo] == [False, False, True]
    assert demo[-1][3].startswith(third_key[:10])
    assert [r[-1] for r in rows if r[2] == "ops"] == ["active"]


async def test_only_the_newest_demo_key_authenticates(rt: Runtime) -> None:
    from prefcenter.services.demo import rotate_demo_key
    from prefcenter.services.keys import KeyCache

    await rt.store.open()
    try:
        await rt.store.migrate()
        _, old, revoked = await rotate_demo_key(rt)
        assert revoked == []
        record, new, revoked = await rotate_demo_key(rt)
        assert revoked == [record.id - 1]
        cache = KeyCache(0)
        assert await cache.authenticate(rt, old) is None
        found = await cache.authenticate(rt, new)
        assert found is not None and found.role == "admin" and found.name == "demo-admin"
    finally:
        await rt.store.close()


# -- item 4: a misspelt PREFCENTER_ variable is named at start-up -----------------------------------------


def test_a_misspelt_variable_is_warned_about_once_without_its_value(tmp_path: Path) -> None:
    secret = "s3cr3t-value-never-logged"
    result = run(tmp_path, "migrate", PREFCENTER_SMTP_POST=secret, PREFCENTER_LOG_LEVEL="warning")
    expected = "PREFCENTER_SMTP_POST is not a setting; did you mean PREFCENTER_SMTP_PORT?"
    assert result.stderr.count(expected) == 1, result.stderr
    assert secret not in result.stderr + result.stdout
    assert result.stdout.startswith("applied 0001_foundation.sql")  # stdout stays the command's own


def test_known_variables_give_no_warning(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate", PREFCENTER_SMTP_PORT="2525", PREFCENTER_ENV="development")
    assert "is not a setting" not in result.stderr
