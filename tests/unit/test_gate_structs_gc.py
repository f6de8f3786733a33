"""The gate's per-recipient values stay out of the cyclic garbage collector (issue 14): a 10,000-id
call holds tens of thousands of them, and a collection pass over them was ~20 ms of such a call."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

from prefcenter.domain.model import CampaignView, CustomerState, Decision, PhonePlace
from prefcenter.store.base import Reservation


def test_the_gate_structs_are_not_tracked() -> None:
    place = PhonePlace(zones=("Europe/Warsaw",), country="PL")
    state = CustomerState(
        "c1",
        "Europe/Warsaw",
        "PL",
        "sms",
        addresses=frozenset({"sms"}),
        quiet_hours=("22:00", "07:00"),
        paused_until=datetime(2026, 1, 1, tzinfo=UTC),
        places={"sms": place},
    )
    view = CampaignView("camp", "news", "marketing", ("email", "sms"), datetime(2026, 1, 2, tzinfo=UTC))
    decision = Decision("c1", "defer", "quiet_hours", "sms", datetime(2026, 1, 1, 7, tzinfo=UTC))
    for value in (place, state, view, decision, Reservation(1, "email", True)):
        assert not gc.is_tracked(value), type(value).__name__


def test_a_customers_reservations_by_campaign_are_not_tracked() -> None:
    # the gate's ``held`` maps each customer to {campaign: Reservation}: thousands of such dicts a call
    held = {"camp1": Reservation(1, "email", True), "camp2": Reservation(2, "sms", True)}
    assert not gc.is_tracked(held)
