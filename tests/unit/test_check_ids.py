"""check_ids' one-regex fast path accepts exactly what the per-id check accepts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from prefcenter.domain.model import CUSTOMER_ID_RE, InvalidInput
from prefcenter.services.approvals import check_ids

ALPHABET = st.sampled_from([*"ab09._:@-", "\n", " ", "é", "/"])
IDS = st.lists(st.text(ALPHABET, min_size=0, max_size=6), max_size=6)


def accepted(ids: list[str]) -> bool:
    try:
        check_ids(ids)
    except InvalidInput:
        return False
    return True


def reference(ids: list[str]) -> bool:
    return all(CUSTOMER_ID_RE.match(cid) for cid in ids) and len(set(ids)) == len(ids)


@given(IDS)
def test_fast_path_agrees_with_the_per_id_check(ids: list[str]) -> None:
    assert accepted(ids) == reference(ids)


def test_ids_split_by_a_newline_are_not_mistaken_for_two() -> None:
    assert not accepted(["ok", "b\nc"])
    assert not accepted(["x" * 129])
    assert accepted(["x" * 128, "c1"])
