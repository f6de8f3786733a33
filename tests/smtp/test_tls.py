"""PREFCENTER_SMTP_TLS starttls and tls, with credentials, against a real aiosmtpd server on 127.0.0.1
whose certificate comes from a test CA (trustme) that the client is told to trust via SSL_CERT_FILE.
A wrong password is a permanent failure that suppresses nobody (API.md: authentication 5xx)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from prefcenter.services.dispatch import Dispatcher
from tests.api.test_approvals import campaign, customer
from tests.conftest import Api
from tests.live import free_port
from tests.smtp.helpers import counts, dispatcher, outbox, send
from tests.smtp.sink import Handler

USER, PASSWORD = "prefcenter", "s3cret-relay-password"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself


@contextmanager
def tls_server(mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Handler, int]]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    cafile = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    monkeypatch.setenv("SSL_CERT_FILE", str(cafile))  # the client trusts the test CA, nothing else changes
    handler, port = Handler(), free_port()
    options: dict[str, Any] = {"authenticator": authenticator, "auth_required": True}
    if mode == "starttls":
        options |= {"tls_context": server_ctx, "require_starttls": True}
    else:  # implicit TLS: aiosmtpd only knows STARTTLS as "TLS is on", so AUTH must be allowed without it
        options |= {"ssl_context": server_ctx, "auth_require_tls": False}
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def tls_dispatcher(api: Api, port: int, mode: str, password: str) -> Dispatcher:
    return dispatcher(
        api, port, settings={"smtp_tls": mode, "smtp_username": USER, "smtp_password": password}
    )


# aiosmtpd warns about AUTH without STARTTLS; here the whole connection is TLS (implicit) anyway.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_tls_with_credentials_delivers(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    with tls_server(mode, tmp_path, monkeypatch) as (handler, port):
        await campaign(api)
        await customer(api, "c1")
        await send(api, ["c1"])
        d = tls_dispatcher(api, port, mode, PASSWORD)
        await d.run_until_idle()
        await d.close()
    assert len(handler.messages) == 1 and handler.messages[0]["To"] == "ola@example.pl"
    assert (await counts(api))["sent"] == 1


async def test_wrong_password_fails_without_suppressing(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tls_server("starttls", tmp_path, monkeypatch) as (handler, port):
        await campaign(api)
        await customer(api, "c1")
        await send(api, ["c1"])
        d = tls_dispatcher(api, port, "starttls", "wrong")
        await d.run_until_idle()
        await d.close()
    assert handler.messages == []
    (row,) = outbox(api)
    assert row[3] == "failed" and row[5].startswith("535")
    r = await api.client.get("/v1/suppressions", headers=api.as_("auditor"))
    assert r.json()["suppressions"] == []
