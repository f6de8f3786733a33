"""Double opt-in (issue 13, item 5; API.md "Auditor's answers"): a topic with ``double_opt_in`` true is
in force for a customer only once they confirm it from their mailbox.

- **Grant.** When a customer gains such a topic (API, bulk import or preference page: every path goes
  through ``WriteTx.set_preferences`` / ``write_import``), the store writes the topic pending and queues
  one confirmation mail (``notifications`` kind ``email_double_opt_in``) in the same transaction
  (migration 0021). A customer without an email address gets no mail and stays unconfirmed. Losing the
  topic deletes the grant; gaining it again is a new grant (pending again, a new mail).
- **Gate.** Until then the gate answers deny ``not_confirmed`` for that topic's marketing (rule 6b,
  right after ``topic_not_subscribed``).
- **Mail.** Rendered and sent by the dispatcher's rounds
  (:func:`prefcenter.services.confirmations.send_confirmations`): transactional (no List-Unsubscribe),
  in the customer's language, with the link
  ``{public_url}/c/{token}`` (a ``confirm`` token scoped to the topic, 30 days, with the link
  generation: it dies with the person).
- **Confirm.** ``GET /c/{token}`` shows one button and changes nothing (link scanners prefetch);
  ``POST /c/{token}`` (any body, no cookie: the mailed token is the proof, as for one-click) confirms:
  one ledger event ``update topic:<T>`` with value ``{"confirmed": true}``, source ``preference_page``,
  actor ``customer``, the user agent and the keyed hash of the IP address as evidence. Confirming again
  writes nothing; a token for a topic the customer no longer has changes nothing.
- A topic made ``double_opt_in`` later un-confirms nobody (only grants made after that are pending);
  one that stops being ``double_opt_in`` leaves waiting grants waiting (their links still confirm).
"""

from __future__ import annotations

from typing import Literal

import structlog

from prefcenter.domain.ledger import Attribution, Change, format_instant
from prefcenter.domain.model import Customer
from prefcenter.domain.tokens import LinkClaims
from prefcenter.services.events import append_events
from prefcenter.services.links import opens
from prefcenter.services.notices import ShownNotice
from prefcenter.services.runtime import Runtime
from prefcenter.services.self_service import Client, LinkProblem, evidence, open_link

log = structlog.get_logger("prefcenter.double_opt_in")

ConfirmOutcome = Literal["confirmed", "already", "not_held"]


async def confirm(
    rt: Runtime, token: str, client: Client, *, notice: ShownNotice | None = None
) -> tuple[ConfirmOutcome, Customer, LinkClaims]:
    """``POST /c/{token}``: confirm the token's topic for its customer, in one transaction. Raises
    :class:`LinkProblem` for a link that opens nothing. ``already``: confirmed before (nothing written);
    ``not_held``: the customer no longer has the topic (nothing written)."""
    customer, claims = await open_link(rt, token, "confirm")
    topic = claims.topic
    assert topic is not None  # a confirm token always names its topic (domain/tokens.py)
    async with rt.store.write() as tx:
        current = await tx.get_customer(customer.customer_id)
        if current is None or not opens(claims, current):  # erased (or re-created) meanwhile
            raise LinkProblem("unknown")
        if topic not in current.preferences.topics:
            outcome: ConfirmOutcome = "not_held"
        elif not await tx.confirm_topic(current.customer_id, topic):
            outcome = "already"
        else:
            outcome = "confirmed"
            page_evidence = evidence(
                rt, client, form="confirm", link_issued_at=format_instant(claims.issued_at)
            )
            version = notice.version if notice is not None else rt.settings.page_notice_version
            await append_events(
                tx,
                rt,
                [Change("update", f"topic:{topic}", {"confirmed": True})],
                current.customer_id,
                current.customer_ref,
                Attribution("preference_page", "customer", version, page_evidence),
                language=notice.language if notice is not None else None,
            )
    log.info("double opt-in confirmation", customer_ref=customer.customer_ref, outcome=outcome)
    return outcome, current, claims
