"""How both engines read one customer's part of the decision log (issue 14).

The decision log is indexed campaign first: ``decisions_by_campaign (campaign_id, customer_id)``
(migration 0023). A gate call logs one row per customer of ONE campaign, so its inserts land in that
campaign's part of the index, next to each other: the pages a call writes do not grow with the log.
The index it replaced, ``(customer_id, campaign_id)``, put each row beside the same customer's older
ones, so a 10,000-id call wrote into nearly every leaf page of an index that grows for as long as the
log is kept (four years by default): 3,400 WAL pages a call after 30 daily calls, against 650 on the
first day.

A customer's rows are then found campaign by campaign: the campaigns that have rows in the log, each
the next one after the last on the index (:data:`LOGGED_CAMPAIGNS`, a loose index scan: one seek per
campaign, however many rows each holds), and for each one seek to the customer's rows. That is one
to two seeks per logged campaign, microseconds each, for the reads that ask about one customer (the
decision log page, an erasure, a replay chunk); a (customer, campaign) read is one seek.
"""

from __future__ import annotations

from typing import Literal

Engine = Literal["sqlite", "postgres"]


def campaigns_of(name: str, table: str) -> str:
    """The recursive common table expression ``name (c)``: every campaign id that has rows in
    ``table``, in order, then one NULL; one seek per campaign on an index that starts with
    ``campaign_id`` (a loose index scan, the same text on both engines)."""
    return (
        f"{name} (c) AS (SELECT min(campaign_id) FROM {table} UNION ALL "
        f"SELECT (SELECT min(campaign_id) FROM {table} WHERE campaign_id > {name}.c) "
        f"FROM {name} WHERE {name}.c IS NOT NULL)"
    )


#: ``logged (c)``: every campaign id that has rows in the decision log, in order, then one NULL.
LOGGED_CAMPAIGNS = campaigns_of("logged", "decisions")


def with_logged(*more: str) -> str:
    """The ``WITH RECURSIVE`` clause that defines ``logged`` (the same text on both engines), and
    ``more`` common table expressions."""
    return "WITH RECURSIVE " + ", ".join((LOGGED_CAMPAIGNS, *more)) + " "


def in_logged(engine: Engine, column: str = "campaign_id") -> str:
    """The condition that has the engine seek ``decisions_by_campaign`` once per logged campaign (SQLite
    probes the index for each value of an ``IN`` list; PostgreSQL's index scan takes an array)."""
    if engine == "sqlite":
        return f"{column} IN (SELECT c FROM logged)"
    return f"{column} = ANY(ARRAY(SELECT c FROM logged))"


def customer_rows_sql(engine: Engine, columns: str, where: str, tail: str = "") -> str:
    """``SELECT columns`` of one customer's decisions: ``where`` holds the customer's condition (and any
    other), ``tail`` the ORDER BY / LIMIT."""
    return f"{with_logged()}SELECT {columns} FROM decisions WHERE {in_logged(engine)} AND {where} {tail}"


def erase_sql(engine: Engine, customer_param: str) -> str:
    """Delete every decision of one customer."""
    where = f"{in_logged(engine)} AND customer_id = {customer_param}"
    return f"{with_logged()}DELETE FROM decisions WHERE {where}"
