"""The benchmark scripts still run: each at its --smoke size, checking only the shape of its JSON.

Benchmarks print figures; these are not timed tests (DESIGN.md: a smoke run on tiny sizes in CI). The
PostgreSQL smokes (``@pytest.mark.postgres``) run the same scripts with ``--engine postgres`` in a schema
of their own (created and dropped by the script) on the suite's PostgreSQL (tests/engines.py); they skip
when it cannot be reached, except under CI=true, where that fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, f"tests/benchmarks/{script}", "--smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    start = out.stdout.index("{")
    report: dict[str, object] = json.loads(out.stdout[start:])
    return report


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL the suite uses (tests/engines.py); unreachable, the test skips, except under
    CI=true, where it fails."""
    from tests import engines

    url = engines.postgres_url()
    problem = engines.reachable(url)
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {url} cannot be reached (CI=true): {problem}")
        pytest.skip(f"PostgreSQL at {url} cannot be reached: {problem}")
    return url


needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None and not os.environ.get("CI"),
    reason="wrk is not installed (.ci/run installs it; in CI its absence fails this test)",
)


def test_engine_benchmark_runs() -> None:
    report = run("bench_engine.py")
    assert any("per_s" in key for key in report), report


def test_ledger_benchmark_runs() -> None:
    report = run("bench_ledger.py")
    assert report["events"] == 2000
    assert {"export_jsonl", "export_csv", "verify"} <= report.keys()


def test_replay_benchmark_runs() -> None:
    report: dict[str, Any] = run("bench_replay.py")
    assert report["decisions"] == 1200 and report["shipped"]["decisions"] == 1200
    assert report["shipped"]["changed"] == 0  # the shipped policy re-decides what it logged
    assert report["candidate_sms_09_20"]["changed"] > 0 and report["shipped"]["decisions_per_s"] > 0


def test_explain_benchmark_runs() -> None:
    report: dict[str, Any] = run("bench_explain.py")
    assert report["batch"] == 500 and len(report["rounds"]) == 2
    for figures in report["rounds"]:  # every defer (rules 7-9) is logged with its explanation
        assert figures["log_rows_with_explain"] >= figures["summary"]["defer"] > 0, figures
    assert report["gate_explain_on_decisions_per_s"]["median"] > 0
    assert report["answer_bytes_explain_on"]["median"] > report["answer_bytes_explain_off"]["median"]


def test_import_benchmark_runs() -> None:
    report = run("bench_import.py")
    assert report["customers"] == 2000
    keys = {"cli_customers_per_s", "cli_peak_rss_mb", "http_customers_per_s", "http_server_peak_rss_mb"}
    assert keys <= report.keys()


def test_webhooks_benchmark_runs() -> None:
    report: dict[str, Any] = run("bench_webhooks.py")
    backlog, live = report["backlog"], report["live"]
    assert backlog["events"] > 0 and backlog["left_pending"] == 0 and backlog["events_per_s"] > 0
    for phase in (backlog, live):
        figures = phase["receiver"]
        assert figures["bad_signatures"] == 0 and figures["distinct"] == backlog["events"], figures


def test_lists_benchmark_runs() -> None:
    report: dict[str, Any] = run("bench_lists.py")
    assert report["customers"] == 2000
    figures = report["sqlite"]
    assert figures["all_first_page_items"] == 100 and figures["topic_rare_first_page_items"] == 20
    assert all("SCAN" not in step for plan in figures["plans"].values() for step in plan), figures["plans"]


@pytest.mark.postgres
def test_lists_benchmark_runs_on_postgres(postgres_url: str) -> None:
    report: dict[str, Any] = run("bench_lists.py", "--engine", "postgres", "--postgres-url", postgres_url)
    figures = report["postgres"]
    assert figures["all_middle_page_items"] == 100 and figures["channel_none_first_page_items"] == 100


def check_consent_state(figures: dict[str, Any]) -> None:
    assert figures["service"]["n"] == 200 and figures["http_asgi"]["n"] == 100, figures
    assert figures["service"]["p99_ms"] > 0 and figures["proof_events_per_answer"] > 0
    plan = " ".join(figures["plan"])
    assert "consent_events_by_customer" in plan and "consent_events_by_at" not in plan, plan


def test_consent_state_benchmark_runs() -> None:
    report: dict[str, Any] = run("bench_consent_state.py")
    assert report["events"] == 3000
    check_consent_state(report["sqlite"])
    assert not any(step.startswith("SCAN") for step in report["sqlite"]["plan"]), report["sqlite"]["plan"]


@pytest.mark.postgres
def test_consent_state_benchmark_runs_on_postgres(postgres_url: str) -> None:
    report: dict[str, Any] = run(
        "bench_consent_state.py", "--engine", "postgres", "--postgres-url", postgres_url
    )
    check_consent_state(report["postgres"])


def check_approvals(report: dict[str, object], labels: list[str]) -> None:
    configs = report["configs"]
    assert isinstance(configs, dict) and sorted(configs) == sorted(labels), configs
    batch = report["batch"]
    assert isinstance(batch, int)
    for label in labels:
        figures = configs[label]
        k = figures["processes"]
        b = figures["b_approvals_10k"]
        assert b["real_decisions_per_s"]["median"] > 0 and b["dry_run_decisions_per_s"]["median"] > 0
        for call in b["runs"]:
            decided = sum(call["summary"].get(v, 0) for v in ("allow", "deny", "defer"))
            assert decided == k * batch, call  # every id of every concurrent call decided
        assert figures["c_single_id_approvals"]["non_2xx"] == 0, figures
        assert str(k) in report["c_bare_litestar"] and label in report["c_ratio"]  # type: ignore[operator]
        assert label in report["c_p99_ratio"]  # type: ignore[operator]


@needs_wrk
def test_approvals_benchmark_runs() -> None:
    """Also --repeat 2: a wrk run on prefcenter then one on the bare endpoint per round, each ratio
    within its round, the printed ratios the medians of the rounds'."""
    report: dict[str, Any] = run("bench_approvals.py", "--repeat", "2")
    check_approvals(report, ["sqlite_1"])
    rounds = report["configs"]["sqlite_1"]["c_rounds"]
    assert len(rounds) == 2
    for one in rounds:
        approvals, bare = one["approvals"], one["bare"]
        assert approvals["non_2xx"] == bare["non_2xx"] == 0, one
        assert one["ratio"] == round(approvals["requests_per_s"] / bare["requests_per_s"], 3), one
        assert one["p99_ratio"] == round(approvals["p99_ms"] / bare["p99_ms"], 3), one
    assert rounds[0]["approvals"].items() <= report["configs"]["sqlite_1"]["c_single_id_approvals"].items()
    assert report["c_bare_litestar"]["1"] == rounds[0]["bare"]
    assert report["c_ratio"]["sqlite_1"] == round((rounds[0]["ratio"] + rounds[1]["ratio"]) / 2, 2)
    assert report["c_p99_ratio"]["sqlite_1"] == round(
        (rounds[0]["p99_ratio"] + rounds[1]["p99_ratio"]) / 2, 2
    )


@pytest.mark.postgres
@needs_wrk
def test_approvals_benchmark_runs_on_postgres(postgres_url: str) -> None:
    report = run("bench_approvals.py", "--engine", "postgres", "--postgres-url", postgres_url)
    check_approvals(report, ["postgres_1", "postgres_3"])
    sessions = report["configs"]["postgres_3"]["b_approvals_10k"]["cpu"]  # type: ignore[index]
    assert len(sessions["api_processes_cpu_s"]) == 3 and "postgres_sessions" in sessions


def check_dispatch(runs: object, labels: list[str]) -> None:
    assert isinstance(runs, dict) and sorted(runs) == sorted(labels), runs
    for label in labels:
        figures = runs[label]
        assert figures["delivered"] == figures["recipients"] and figures["duplicates"] == 0, figures
        assert figures["outbox"] == {"sent": figures["recipients"]}
        assert len(figures["dispatcher_cpu_s"]) == figures["dispatchers"]
    limited = next(runs[label] for label in labels if label.startswith("limited"))
    assert limited["no_second_over_rate_plus_burst"], limited


def check_bare_transport(report: dict[str, Any], labels: list[str]) -> None:
    """The bare aiosmtplib ceiling: every message arrived over as many connections as the dispatcher's
    (as the sink saw them), messages of the dispatcher's size, and a ratio for each ceiling run."""
    bare = report["bare_transport"]
    first = next(iter(report[k] for k in ("sqlite", "postgres") if k in report))["ceiling_1"]
    assert bare["delivered"] == bare["recipients"] and bare["client"]["failed"] == 0, bare
    assert bare["connections"] == bare["connections_seen_by_sink"] == first["smtp_connections"] > 0, bare
    assert abs(bare["message_bytes"] - first["message_bytes"]) <= 64, (bare, first)
    assert sorted(report["ratio_dispatcher_to_bare"]) == sorted(labels)
    assert all(r > 0 for r in report["ratio_dispatcher_to_bare"].values()), report


def test_dispatch_benchmark_runs() -> None:
    """Also --repeat 2: a ceiling run and a bare one per round, each ratio within its round, the median
    of those as the ratio (the figures per run the first round's)."""
    report: dict[str, Any] = run("bench_dispatch.py", "--repeat", "2")
    check_dispatch(report["sqlite"], ["ceiling_1", "limited_1"])
    check_bare_transport(report, ["sqlite_ceiling_1"])
    rounds = report["rounds"]
    assert len(rounds) == 2, rounds
    assert rounds[0]["bare_messages_per_s"] == report["bare_transport"]["messages_per_s"]
    assert rounds[0]["messages_per_s"]["sqlite_ceiling_1"] == report["sqlite"]["ceiling_1"]["messages_per_s"]
    ratios = []
    for r in rounds:
        ratio = r["messages_per_s"]["sqlite_ceiling_1"] / r["bare_messages_per_s"]
        assert r["ratio_dispatcher_to_bare"]["sqlite_ceiling_1"] == pytest.approx(ratio, abs=0.001), r
        ratios.append(r["ratio_dispatcher_to_bare"]["sqlite_ceiling_1"])
    assert report["ratio_dispatcher_to_bare"]["sqlite_ceiling_1"] == pytest.approx(sum(ratios) / 2, abs=0.001)


@pytest.mark.postgres
def test_dispatch_benchmark_runs_on_postgres(postgres_url: str) -> None:
    report = run("bench_dispatch.py", "--engine", "postgres", "--postgres-url", postgres_url)
    check_dispatch(report["postgres"], ["ceiling_1", "ceiling_2", "limited_2"])
    check_bare_transport(report, ["postgres_ceiling_1", "postgres_ceiling_2"])


def check_history(figures: dict[str, Any], days: int, unpruned: dict[str, Any] | None = None) -> None:
    """bench_history.py's shape: ``days`` days of 200 customers, every id decided each day, the sizes
    and counts. With ``unpruned`` (the same run with --no-prune): the same verdicts every day, though
    the pruned run deleted reservations past the horizon (the shipped policy's longest cap window, FR's
    30-day voice cap, + 7 days' grace) — pruning as of each day changes no decision."""
    assert figures["days"] == days and figures["ids_per_call"] == 200 and len(figures["per_day"]) == days
    for day in figures["per_day"]:
        assert sum(day["summary"].values()) == 200 and day["decisions_per_s"] > 0, day
    assert figures["ratio_last_to_first"] > 0 and figures["db_bytes_end"] > 0
    rows = figures["rows_end"]
    assert rows["decisions"] == 200 * days and rows["reservations"] > 0, rows
    assert figures["prune"]["status"] == "ran", figures["prune"]  # the pruner exists (issue 14)
    if unpruned is not None:
        assert unpruned["prune"]["status"].startswith("off")
        assert [d["summary"] for d in figures["per_day"]] == [d["summary"] for d in unpruned["per_day"]]
        assert figures["prune"]["totals"]["reservations"] > 0, figures["prune"]
        kept = unpruned["rows_end"]["reservations"] - figures["prune"]["totals"]["reservations"]
        assert rows["reservations"] == kept, (rows, unpruned["rows_end"])


def test_history_benchmark_runs() -> None:
    pruned: dict[str, Any] = run("bench_history.py", "--days", "40")
    unpruned: dict[str, Any] = run("bench_history.py", "--days", "40", "--no-prune")
    check_history(pruned["sqlite"], 40, unpruned["sqlite"])


@pytest.mark.postgres
def test_history_benchmark_runs_on_postgres(postgres_url: str) -> None:
    report: dict[str, Any] = run(
        "bench_history.py",
        "--engine",
        "postgres",
        "--repeat",
        "2",
        "--vacuum-daily",
        "--postgres-url",
        postgres_url,
    )
    check_history(report["postgres"], 3)
    for day in report["postgres"]["per_day"]:
        assert day["vacuum_seconds"] >= 0 and day["api_cpu_seconds"] >= 0, day
        assert day["backend_cpu_seconds"] >= 0 and day["relation_kb"]["reservations"] >= 0, day
        assert day["cpu_seconds"] == pytest.approx(
            day["api_cpu_seconds"] + day["backend_cpu_seconds"], abs=0.002
        )
    # --repeat 2: two whole histories, each ratio of both and their median
    repeats = report["postgres"]["repeats"]
    assert repeats["runs"] == 2, repeats
    each = repeats["ratio_last_to_first"]["each"]
    assert len(each) == 2 and each[0] == report["postgres"]["ratio_last_to_first"], repeats
    assert repeats["ratio_last_to_first"]["median"] == pytest.approx(sum(each) / 2, abs=0.001), repeats
