"""A customer's consent state at an instant, rebuilt from the ledger alone (API.md "Auditor's answers").

:class:`StateFold` takes one customer's events (one ``customer_ref``) in ``seq`` order and keeps what
they set: the ONE channel, the topics, quiet hours, the own weekly cap and the pause, and for each
subject the latest event about it (the proof: API.md's ``events``, ``{"seq", "hash", "subject"}``, the
latest per subject). Before any event the state is no channel and no topics.

Subjects (API.md "Consent ledger"): ``channel:X`` (grant sets the channel, its withdraw clears it when it
is the channel in force), ``topic:T`` (grant adds, withdraw removes; an ``update``, the double opt-in's
confirmation ``{"confirmed": true}``, leaves the topics as they are and becomes the subject's latest
event), ``quiet_hours``, ``max_per_week`` and ``pause`` (``update``: the value is the new setting).
Other subjects (``suppression:...`` and any added later) do not change these five fields;
:attr:`StateFold.other` keeps the latest event of each.

Erasure: an event whose source is ``erasure`` ends the person. Everything set before it is dropped (a
ledger written before erasure recorded every reset still answers "nothing": the person no longer
exists), and the erasure's own events are the proof. A customer re-created with the same id has the same
``customer_ref`` and starts again from nothing, with the events written for the new person.

Pure: no I/O; the service feeds it rows from the store, the CLI lines from an export.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

PREFERENCE_SUBJECTS = ("quiet_hours", "max_per_week", "pause")


class Proof(msgspec.Struct, frozen=True):
    """The event that set one part of the state."""

    seq: int
    hash: str
    subject: str


class StateFold:
    """One customer's state, folded event by event (see the module docstring)."""

    __slots__ = (
        "channel",
        "last",
        "max_per_week",
        "other",
        "paused_until",
        "proofs",
        "quiet_hours",
        "topics",
    )

    def __init__(self) -> None:
        self.channel: str | None = None
        self.topics: set[str] = set()
        self.quiet_hours: dict[str, str] | None = None
        self.max_per_week: int | None = None
        self.paused_until: str | None = None
        self.proofs: dict[str, Proof] = {}  # subject -> latest event (the five fields' subjects)
        self.other: dict[str, Proof] = {}  # subject -> latest event (suppressions, anything else)
        self.last: tuple[Any, Any] = (None, None)  # (source, at) of the event folded last

    def _reset(self) -> None:
        self.channel = None
        self.topics = set()
        self.quiet_hours = None
        self.max_per_week = None
        self.paused_until = None
        self.proofs = {}

    def apply(self, event: Mapping[str, Any]) -> None:
        """Fold one event (a dict with at least ``seq``, ``hash``, ``subject``, ``action``, ``value``,
        ``source``); events must come in ``seq`` order."""
        subject = str(event["subject"])
        action = event["action"]
        source, at = event.get("source"), event.get("at")
        if source == "erasure" and self.last != (source, at):
            self._reset()  # the first event of an erasure (its events share one instant)
        self.last = (source, at)
        proof = Proof(int(event["seq"]), str(event["hash"]), subject)
        kind, _, name = subject.partition(":")
        if kind == "channel" and name:
            if action == "grant":
                self.channel = name
            elif action == "withdraw" and self.channel == name:
                self.channel = None
        elif kind == "topic" and name:
            if action == "grant":
                self.topics.add(name)
            elif action == "withdraw":
                self.topics.discard(name)
        elif subject == "quiet_hours":
            value = event.get("value")
            self.quiet_hours = dict(value) if isinstance(value, Mapping) else None
        elif subject == "max_per_week":
            value = event.get("value")
            self.max_per_week = value if isinstance(value, int) and not isinstance(value, bool) else None
        elif subject == "pause":
            value = event.get("value")
            self.paused_until = value if isinstance(value, str) else None
        else:
            self.other[subject] = proof
            return
        self.proofs[subject] = proof

    def state(self) -> dict[str, Any]:
        """API.md's ``state``: ``{"channel", "topics", "quiet_hours", "max_per_week", "paused_until"}``
        (topics sorted)."""
        return {
            "channel": self.channel,
            "topics": sorted(self.topics),
            "quiet_hours": self.quiet_hours,
            "max_per_week": self.max_per_week,
            "paused_until": self.paused_until,
        }

    def events(self) -> list[dict[str, Any]]:
        """API.md's ``events``: the latest event per subject of the state, in ``seq`` order."""
        return [
            {"seq": p.seq, "hash": p.hash, "subject": p.subject}
            for p in sorted(self.proofs.values(), key=lambda p: p.seq)
        ]


def fold(events: Iterable[Mapping[str, Any]]) -> StateFold:
    """The state after ``events`` (one customer's, in ``seq`` order)."""
    folder = StateFold()
    for event in events:
        folder.apply(event)
    return folder
