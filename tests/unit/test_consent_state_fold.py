"""The pure fold of one customer's ledger events into API.md's consent ``state`` and its proof
(prefcenter/domain/consent_state.py), on hand-written events."""

from __future__ import annotations

from typing import Any

from prefcenter.domain.consent_state import fold


def ev(
    seq: int, action: str, subject: str, value: Any = None, source: str = "api", at: str = ""
) -> dict[str, Any]:
    return {
        "seq": seq,
        "hash": f"h{seq}",
        "subject": subject,
        "action": action,
        "value": value,
        "source": source,
        "at": at or f"2026-11-22T09:00:{seq:02d}.000000Z",
    }


def proofs(events: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(p["seq"], p["subject"]) for p in fold(events).events()]


def test_before_any_event_nothing_is_in_force() -> None:
    assert fold([]).state() == {
        "channel": None,
        "topics": [],
        "quiet_hours": None,
        "max_per_week": None,
        "paused_until": None,
    }
    assert fold([]).events() == []


def test_a_withdrawal_of_a_channel_not_in_force_keeps_the_channel() -> None:
    events = [ev(1, "grant", "channel:sms"), ev(2, "withdraw", "channel:email"), ev(3, "grant", "topic:b")]
    folded = fold([*events, ev(4, "grant", "topic:a")])
    assert folded.state()["channel"] == "sms" and folded.state()["topics"] == ["a", "b"]
    assert proofs(events) == [(1, "channel:sms"), (2, "channel:email"), (3, "topic:b")]


def test_a_confirmation_keeps_the_topic_and_is_its_latest_event() -> None:
    events = [
        ev(1, "grant", "topic:news"),
        ev(2, "update", "topic:news", {"confirmed": True}, "preference_page"),
    ]
    assert fold(events).state()["topics"] == ["news"]
    assert proofs(events) == [(2, "topic:news")]
    assert fold([ev(1, "update", "topic:news", {"confirmed": True})]).state()["topics"] == []


def test_suppressions_are_kept_apart_from_the_state() -> None:
    events = [ev(1, "grant", "channel:sms"), ev(2, "update", "suppression:sms", {"suppressed": True})]
    folded = fold(events)
    assert proofs(events) == [(1, "channel:sms")]
    assert [p.seq for p in folded.other.values()] == [2]


def test_settings_take_their_update_values() -> None:
    events = [
        ev(1, "update", "quiet_hours", {"start": "21:00", "end": "08:00"}),
        ev(2, "update", "max_per_week", 4),
        ev(3, "update", "pause", "2026-12-01T00:00:00Z"),
        ev(4, "update", "max_per_week", True),  # not an integer cap: none
    ]
    state = fold(events).state()
    assert state["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert state["paused_until"] == "2026-12-01T00:00:00Z" and state["max_per_week"] is None
    assert fold(events[:2]).state()["max_per_week"] == 4


def test_an_erasure_ends_everything_set_before_it_even_without_its_resets() -> None:
    erased_at = "2026-11-22T10:00:00.000000Z"
    events = [
        ev(1, "grant", "channel:email"),
        ev(2, "grant", "topic:a"),
        ev(3, "update", "max_per_week", 2),
        # an erasure that recorded only the topic's withdrawal (a ledger from before every reset was)
        ev(4, "withdraw", "topic:a", source="erasure", at=erased_at),
    ]
    folded = fold(events)
    assert folded.state() == fold([]).state()
    assert proofs(events) == [(4, "topic:a")]
    # the same id again: a new person from nothing
    again = [*events, ev(5, "grant", "channel:sms", at="2026-11-22T11:00:00.000000Z")]
    assert fold(again).state()["channel"] == "sms" and fold(again).state()["max_per_week"] is None
    assert proofs(again) == [(4, "topic:a"), (5, "channel:sms")]
    # two erasures' events (two instants) each reset; events of one erasure do not reset each other
    two = [
        *again,
        ev(6, "withdraw", "channel:sms", source="erasure", at="2026-11-22T12:00:00.000000Z"),
        ev(7, "update", "pause", None, source="erasure", at="2026-11-22T12:00:00.000000Z"),
    ]
    assert proofs(two) == [(6, "channel:sms"), (7, "pause")]
