"""The benchmark scripts still run: each at its --smoke size, checking only the shape of its JSON.

Benchmarks print figures; these are not timed tests (DESIGN.md: a smoke run on tiny sizes in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(script: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, f"tests/benchmarks/{script}", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    start = out.stdout.index("{")
    report: dict[str, object] = json.loads(out.stdout[start:])
    return report


def test_engine_benchmark_runs() -> None:
    report = run("bench_engine.py")
    assert any("per_s" in key for key in report), report


def test_ledger_benchmark_runs() -> None:
    report = run("bench_ledger.py")
    assert report["events"] == 2000
    assert {"export_jsonl", "export_csv", "verify"} <= report.keys()


@pytest.mark.skipif(
    shutil.which("wrk") is None and not os.environ.get("CI"),
    reason="wrk is not installed (.ci/run installs it; in CI its absence fails this test)",
)
def test_approvals_benchmark_runs() -> None:
    report = run("bench_approvals.py")
    assert "b_approvals_10k" in report and "c_single_id_approvals" in report and "c_bare_litestar" in report
    assert report["c_single_id_approvals"]["non_2xx"] == 0  # type: ignore[index]


def test_dispatch_benchmark_runs() -> None:
    report = run("bench_dispatch.py")
    for run_ in ("ceiling", "limited"):
        figures = report[run_]
        assert isinstance(figures, dict)
        assert figures["delivered"] == figures["recipients"] and figures["duplicates"] == 0, figures
        assert figures["outbox"] == {"sent": figures["recipients"]}
