"""`prefcenter inbound review` as a real process (COMPLIANCE item 23, edge cases 15 and 16): open texts
oldest first with their due date and overdue marked, and a person's resolution."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from prefcenter.domain.business_days import due_date
from prefcenter.domain.ledger import format_at
from prefcenter.domain.pseudonyms import Pseudonymizer
from tests.cli.test_cli import run

SECRET = "cli-test-secret-key-123"  # test_cli.run's key
NUMBER = "+12135550101"


def rows(tmp_path: Path, *args: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in run(tmp_path, "inbound", "review", *args).stdout.splitlines()]


def test_item_23_edge_16_review_lists_due_dates_and_resolves(tmp_path: Path) -> None:
    """COMPLIANCE item 23 / edge 16: kept texts print oldest first with `due` (10 US business days, a New
    York date) and `overdue`; `--resolve ID --as none|stop --by NAME` resolves one (stop: the number's SMS
    suppressed and its voice marketing too), after which it is listed only with --all."""
    run(tmp_path, "migrate")
    ref = Pseudonymizer(SECRET).address_ref("sms", NUMBER)
    now = datetime.now(UTC)
    conn = sqlite3.connect(tmp_path / "cli.db")
    with conn:
        conn.executemany(
            "INSERT INTO inbound_review (channel, address_ref, text, received_at) VALUES ('sms', ?, ?, ?)",
            [
                ("ref-new", "لغو", format_at(now)),
                (ref, "ARRÊTEZ", "2026-11-25T15:00:00.000000Z"),
                ("ref-old", "REZYGNUJĘ", "2019-12-31T15:00:00.000000Z"),
            ],
        )
    conn.close()
    listed = rows(tmp_path)
    assert [r["text"] for r in listed] == ["REZYGNUJĘ", "ARRÊTEZ", "لغو"]  # oldest first, not by id
    assert listed[0]["due"] == "2020-01-15" and listed[0]["overdue"] is True  # New Year's Day skipped
    assert listed[1]["due"] == "2026-12-10"
    assert listed[2]["due"] == due_date(now).isoformat() and listed[2]["overdue"] is False
    assert all(r["resolved_at"] is None for r in listed)

    (done,) = rows(tmp_path, "--resolve", str(listed[0]["id"]), "--as", "none", "--by", "agent-7")
    assert (done["resolution"], done["resolved_by"], done["overdue"]) == ("none", "agent-7", False)
    (stopped,) = rows(tmp_path, "--resolve", str(listed[1]["id"]), "--as", "stop", "--by", "agent-7")
    assert stopped["resolution"] == "stop" and stopped["customers"] == 0  # nobody holds it: still suppressed
    conn = sqlite3.connect(tmp_path / "cli.db")
    suppressed = conn.execute("SELECT channel, reason FROM suppressions WHERE address_ref = ? ORDER BY 1", (ref,))
    assert suppressed.fetchall() == [("sms", "sms_keyword"), ("voice", "sms_keyword")]
    conn.close()
    assert [r["text"] for r in rows(tmp_path)] == ["لغو"]
    assert [r["resolution"] for r in rows(tmp_path, "--all")] == ["none", "stop", None]

    again = run(tmp_path, "inbound", "review", "--resolve", str(listed[0]["id"]), "--as", "stop", "--by", "x", check=False)
    assert again.returncode == 1 and "resolved already" in again.stderr
    missing = run(tmp_path, "inbound", "review", "--resolve", "999", "--as", "stop", "--by", "x", check=False)
    assert missing.returncode == 1 and "999" in missing.stderr
    bad_by = run(tmp_path, "inbound", "review", "--resolve", "3", "--as", "none", "--by", "a b", check=False)
    assert bad_by.returncode == 1 and "by:" in bad_by.stderr
    alone = run(tmp_path, "inbound", "review", "--resolve", "3", check=False)
    assert alone.returncode == 2 and "--as" in alone.stderr
    bad_as = run(tmp_path, "inbound", "review", "--resolve", "3", "--as", "maybe", "--by", "x", check=False)
    assert bad_as.returncode == 2
    assert [r["text"] for r in rows(tmp_path)] == ["لغو"]  # none of those changed anything
