"""What the SMTP transport says to a real server (aiosmtpd on 127.0.0.1): one greeting per pooled
connection, then per message MAIL FROM the configured sender with ``SIZE`` equal to the bytes DATA
carries, RCPT TO the customer's address, DATA; a server that refuses EHLO is greeted with HELO (and then
no SIZE is announced)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as ServerSMTP

from prefcenter.config import load_settings
from prefcenter.messaging.email import Rendered
from prefcenter.messaging.transports.smtp import SmtpTransport
from tests.live import free_port

AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.greetings: list[str] = []
        self.mails: list[tuple[str, list[str]]] = []
        self.rcpts: list[str] = []
        self.sizes: list[int] = []

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: Any
    ) -> Any:
        self.greetings.append("EHLO")
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server: Any, session: Any, envelope: Any, hostname: str) -> str:
        self.greetings.append("HELO")
        session.host_name = hostname
        return "250 ok"

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.mails.append((address, list(options)))
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.rcpts.append(address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sizes.append(len(envelope.original_content))
        return "250 accepted"


class NoEhlo(ServerSMTP):
    async def smtp_EHLO(self, hostname: str) -> None:
        await self.push("502 5.5.1 EHLO not implemented")


def message(n: int) -> Rendered:
    return Rendered(
        campaign_id="c",
        customer_id=f"c{n}",
        channel="email",
        address=f"reader{n}@example.org",
        message_id=f"<c.{n}@shop.example>",
        marketing=True,
        text=f"Hello {n}\nSecond line\n",
        subject="Hi",
        html="<p>Hello</p>",
        unsubscribe_url="https://prefs.example/u/t",
        manage_url="https://prefs.example/p/t",
    )


class NoEhloController(Controller):
    def factory(self) -> ServerSMTP:
        return NoEhlo(self.handler, **self.SMTP_kwargs)


async def send_three(recorder: Recorder, controller: type[Controller] = Controller) -> list[str]:
    port = free_port()
    server = controller(recorder, hostname="127.0.0.1", port=port)
    server.start()
    settings = load_settings({}, smtp_port=port, smtp_from='"Shop" <news@shop.example>')
    transport = SmtpTransport(settings, lambda: AT, concurrency=1, timeout=5.0)
    try:
        return [(await transport.send(message(n))).kind for n in range(3)]
    finally:
        await transport.close()
        server.stop()


async def test_one_greeting_then_mail_with_the_exact_size_rcpt_and_data() -> None:
    recorder = Recorder()
    assert await send_three(recorder) == ["sent", "sent", "sent"]
    assert recorder.greetings == ["EHLO"]  # one pooled connection, greeted once
    assert [address for address, _ in recorder.mails] == ["news@shop.example"] * 3
    announced = [int(o.split("=", 1)[1]) for _, options in recorder.mails for o in options]
    assert announced == recorder.sizes and len(announced) == 3
    assert recorder.rcpts == [f"reader{n}@example.org" for n in range(3)]


async def test_a_server_refusing_ehlo_is_greeted_with_helo_and_sent_no_size() -> None:
    recorder = Recorder()
    kinds = await send_three(recorder, NoEhloController)
    assert kinds == ["sent", "sent", "sent"]
    assert recorder.greetings == ["HELO"]
    assert [options for _, options in recorder.mails] == [[], [], []]
    assert len(recorder.sizes) == 3
