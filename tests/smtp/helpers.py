from __future__ import annotations

from typing import Any

import msgspec

from prefcenter.messaging.ratelimit import TokenBucket
from prefcenter.messaging.transports import Transport
from prefcenter.messaging.transports.smtp import SmtpTransport
from prefcenter.messaging.transports.webhook import WebhookTransport
from prefcenter.services.dispatch import Dispatcher
from tests.conftest import Api, query


def dispatcher(
    api: Api, port: int | None = None, settings: dict[str, Any] | None = None, **options: Any
) -> Dispatcher:
    """A dispatcher over the app's runtime: email to the SMTP server on ``port``, other channels to the
    webhook, ``settings`` overriding PREFCENTER_* values (TLS, credentials, webhook URL); full-delay
    jitter and a rate far above what tests send, unless ``options`` say otherwise."""
    changed = {**({"smtp_port": port} if port else {}), **(settings or {})}
    s = msgspec.structs.replace(api.rt.settings, **changed)
    webhook = WebhookTransport(s.webhook_url, timeout=5.0)
    transports: dict[str, Transport] = {ch: webhook for ch in ("sms", "push", "voice", "whatsapp")}
    transports["email"] = SmtpTransport(s, api.rt.now, timeout=5.0)
    options.setdefault("jitter", lambda: 1.0)
    options.setdefault("bucket_factory", lambda rate: TokenBucket(max(rate, 10_000.0)))
    return Dispatcher(api.rt, transports, **options)


async def send(api: Api, ids: list[str], cid: str = "black-friday") -> Any:
    r = await api.client.post(
        f"/v1/campaigns/{cid}/sends", json={"customer_ids": ids}, headers=api.as_("marketing")
    )
    assert r.status_code == 202, r.text
    return r.json()


async def counts(api: Api, cid: str = "black-friday") -> dict[str, Any]:
    r = await api.client.get(f"/v1/campaigns/{cid}", headers=api.as_("auditor"))
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["counts"]
    return result


def outbox(api: Api) -> list[tuple[Any, ...]]:
    return query(
        api, "SELECT campaign_id, customer_id, channel, status, attempts, last_error FROM outbox ORDER BY 1, 2"
    )
