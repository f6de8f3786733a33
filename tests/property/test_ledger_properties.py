"""Hypothesis: any single altered, removed or swapped event in a random ledger is detected at the right seq.

COMPLIANCE C16 ("a hash chain verifies, deleting a middle event is detected"); API.md /verify.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from prefcenter.domain.ledger import GENESIS, Attribution, Change, chain_events, event_dict, verify_events
from prefcenter.domain.pseudonyms import Pseudonymizer

P = Pseudonymizer("property-secret-key-123")

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True), inner, max_size=3)
    ),
    max_leaves=6,
)
changes = st.builds(
    Change,
    st.sampled_from(["grant", "withdraw", "update"]),
    st.sampled_from(
        ["channel:email", "channel:sms", "topic:promotions", "quiet_hours", "pause", "max_per_week"]
    ),
    json_values,
)


@st.composite
def ledgers(draw: Any) -> list[dict[str, Any]]:
    """A random ledger written in several batches by several customers."""
    events: list[dict[str, Any]] = []
    counter = itertools.count()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(draw(st.integers(1, 6))):
        cid = draw(st.sampled_from(["c1", "c2", "ola@example.pl", None]))
        batch = draw(st.lists(changes, min_size=1, max_size=5))
        head = (events[-1]["seq"], events[-1]["hash"]) if events else (0, GENESIS)
        at += timedelta(seconds=draw(st.integers(0, 10_000)))
        new = chain_events(
            batch,
            customer_id=cid,
            customer_ref=P.customer_ref(cid) if cid else None,
            attribution=Attribution(
                draw(st.sampled_from(["api", "crm", "preference_page", "sms_keyword"])),
                "actor",
                draw(st.one_of(st.none(), st.text(max_size=5))),
                draw(st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), json_scalars, max_size=2)),
            ),
            head_seq=head[0],
            head_hash=head[1],
            at=at,
            new_id=lambda: f"e{next(counter)}",
        )
        events.extend(event_dict(e) for e in new)
    return events


def verify(events: list[dict[str, Any]], head: tuple[int, str]) -> Any:
    return verify_events(events, stored_head=head, customer_ref=P.customer_ref)


@settings(max_examples=120, deadline=None)
@given(ledgers())
def test_an_untouched_ledger_verifies(events: list[dict[str, Any]]) -> None:
    assert verify(events, (events[-1]["seq"], events[-1]["hash"])).ok


ALTERABLE = [
    "id",
    "at",
    "customer_ref",
    "action",
    "subject",
    "value",
    "source",
    "actor",
    "notice_version",
    "evidence",
    "prev_hash",
    "hash",
    "seq",
]


@settings(max_examples=200, deadline=None)
@given(ledgers(), st.data())
def test_any_altered_event_is_detected_at_its_seq(events: list[dict[str, Any]], data: st.DataObject) -> None:
    head = (events[-1]["seq"], events[-1]["hash"])
    i = data.draw(st.integers(0, len(events) - 1))
    field = data.draw(st.sampled_from(ALTERABLE))
    tampered = [dict(e) for e in events]
    original = tampered[i][field]
    replacement = data.draw(st.one_of(json_values, st.text(min_size=1, max_size=8), st.integers(-5, 10**6)))
    assume(not (replacement == original and type(replacement) is type(original)))
    tampered[i][field] = replacement
    result = verify(tampered, head)
    assert not result.ok
    assert result.first_bad_seq == i + 1, (field, result)


@settings(max_examples=120, deadline=None)
@given(ledgers(), st.data())
def test_any_removed_event_is_detected_at_its_seq(events: list[dict[str, Any]], data: st.DataObject) -> None:
    head = (events[-1]["seq"], events[-1]["hash"])
    i = data.draw(st.integers(0, len(events) - 1))
    result = verify(events[:i] + events[i + 1 :], head)
    assert not result.ok and result.first_bad_seq == i + 1


@settings(max_examples=120, deadline=None)
@given(ledgers(), st.data())
def test_any_swapped_pair_is_detected_at_the_earlier_seq(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    if len(events) < 2:
        return
    head = (events[-1]["seq"], events[-1]["hash"])
    i = data.draw(st.integers(0, len(events) - 2))
    j = data.draw(st.integers(i + 1, len(events) - 1))
    # stored order swapped (an export reordered) ...
    reordered = list(events)
    reordered[i], reordered[j] = reordered[j], reordered[i]
    result = verify(reordered, head)
    assert not result.ok and result.first_bad_seq == i + 1
    # ... and contents swapped behind unchanged seq numbers (rows' keys exchanged in the database)
    relabelled = [dict(e) for e in events]
    a, b = dict(events[i]), dict(events[j])
    a["seq"], b["seq"] = events[j]["seq"], events[i]["seq"]
    relabelled[i], relabelled[j] = b, a
    result = verify(relabelled, head)
    assert not result.ok and result.first_bad_seq == i + 1
