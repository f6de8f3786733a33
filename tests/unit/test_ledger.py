"""The hash chain (API.md "Consent ledger"; COMPLIANCE C16)."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime
from typing import Any

from prefcenter.domain.ledger import (
    GENESIS,
    Attribution,
    Change,
    canonical,
    chain_events,
    event_dict,
    preference_changes,
    verify_events,
)
from prefcenter.domain.model import QuietHours
from prefcenter.domain.pseudonyms import Pseudonymizer

P = Pseudonymizer("unit-test-secret-key-123")


def make_chain(n: int, start_seq: int = 0, prev: str = GENESIS) -> list[dict[str, Any]]:
    counter = itertools.count()
    events = chain_events(
        [Change("grant", f"topic:t{i}") for i in range(n)],
        customer_id="c1",
        customer_ref=P.customer_ref("c1"),
        attribution=Attribution("api", "tester", "v1", {"k": "ż"}),
        head_seq=start_seq,
        head_hash=prev,
        at=datetime(2026, 11, 22, 9, 0, 0, 123456, tzinfo=UTC),
        new_id=lambda: f"id-{next(counter)}",
    )
    return [event_dict(e) for e in events]


def test_hash_is_sha256_of_prev_hash_and_canonical_json_as_api_md_defines() -> None:
    e = make_chain(1)[0]
    body = {k: v for k, v in e.items() if k not in ("hash", "customer_id")}
    expected_canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical(e) == expected_canonical
    assert e["hash"] == hashlib.sha256(GENESIS.encode() + expected_canonical).hexdigest()
    assert e["prev_hash"] == GENESIS and e["seq"] == 1
    assert e["at"] == "2026-11-22T09:00:00.123456Z"
    assert "ż" in expected_canonical.decode()  # ensure_ascii=False


def test_chain_links_and_verifies() -> None:
    events = make_chain(5)
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(events))
    result = verify_events(events, stored_head=(5, events[-1]["hash"]), customer_ref=P.customer_ref)
    assert result.ok and result.events == 5 and result.head == events[-1]["hash"]


def test_customer_id_is_outside_the_hash_but_checked_against_the_ref() -> None:
    events = make_chain(3)
    erased = [{**e, "customer_id": None} for e in events]
    assert verify_events(erased, customer_ref=P.customer_ref).ok
    swapped = [dict(e) for e in events]
    swapped[1]["customer_id"] = "someone-else"
    result = verify_events(swapped, customer_ref=P.customer_ref)
    assert not result.ok and result.first_bad_seq == 2 and "customer_ref" in (result.problem or "")


def test_truncation_is_caught_by_the_stored_head() -> None:
    events = make_chain(5)
    result = verify_events(events[:3], stored_head=(5, events[-1]["hash"]))
    assert not result.ok and result.first_bad_seq == 4


def test_auditor_head_must_lie_on_the_chain() -> None:
    events = make_chain(5)
    assert verify_events(events, head=events[2]["hash"]).ok
    result = verify_events(events, head="f" * 64)
    assert not result.ok and "head" in (result.problem or "")


def test_empty_ledger_verifies() -> None:
    assert verify_events([], stored_head=(0, GENESIS)).as_dict() == {"ok": True, "events": 0, "head": GENESIS}


def test_preference_changes_follow_api_md() -> None:
    qh = QuietHours("21:00", "08:00")
    assert preference_changes(None, [], None, None, None, None, [], None, None, None) == []
    changes = preference_changes("email", ["a", "b"], None, 3, None, "sms", ["b", "c"], qh, 3, None)
    assert [(c.action, c.subject, c.value) for c in changes] == [
        ("withdraw", "channel:email", None),
        ("grant", "channel:sms", None),
        ("withdraw", "topic:a", None),
        ("grant", "topic:c", None),
        ("update", "quiet_hours", {"start": "21:00", "end": "08:00"}),
    ]
