"""Benchmark: what explained decisions cost the gate, in-process (no HTTP, no store). Prints JSON.

    python tests/benchmarks/bench_explain.py [--customers 50000] [--batch 10000] [--rounds 5] [--smoke]

The pure part of a real gate transaction (``GateBatcher._decide``: the engine over loaded inputs, the
reservations, the decision-log rows with their explanations) and the answer's JSON encoding, on the
population bench_approvals.py seeds (the same mix of zones, channels, quiet hours, own caps and
earlier reservations, drawn with its random seed), over ``--rounds`` rounds of ``--batch`` ids three
hours apart, each round's allows reserved for the next (so later rounds defer on the caps as they do
there). For each round: decisions/s with ``explain`` off (what every real call pays: the log's
explanations of paused / quiet_hours / frequency_cap decisions) and on (every decision of the answer
explained), the engine alone for scale, and the encoded answer's size. Each timing is the best of
``--repeat`` runs in CPU seconds of this process (other work on the machine inflates wall time, not
this); median and range over the rounds.
The end-to-end figures (HTTP, the store's writes) are bench_approvals.py's.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from prefcenter.domain.model import CampaignView, CustomerState  # noqa: E402
from prefcenter.domain.phones import place_of  # noqa: E402
from prefcenter.domain.policy import load_policy  # noqa: E402
from prefcenter.domain.timewindows import to_us  # noqa: E402
from prefcenter.services.approvals import (  # noqa: E402
    ApprovalAnswer,
    GateBatcher,
    _Ask,
    decide_recipients,
    summarise,
)
from prefcenter.store.base import GateInputs, Reservation  # noqa: E402
from tests.benchmarks.bench_approvals import ZONES  # noqa: E402

POLICY = load_policy((ROOT / "policies" / "default.toml").read_bytes(), "policies/default.toml")
AT0 = datetime(2026, 11, 22, 12, tzinfo=UTC)


def population(n: int) -> tuple[dict[str, CustomerState], dict[str, dict[str, Reservation]]]:
    """bench_approvals.make_rows' customers as the store loads them (same draws, same order)."""
    rng = random.Random(1)
    states: dict[str, CustomerState] = {}
    held: dict[str, dict[str, Reservation]] = {}
    at0 = to_us(AT0)
    for i in range(n):
        cid = f"c{i:06d}"
        channel = rng.choices(["email", "sms", "push", None], [60, 20, 10, 10])[0]
        quiet = rng.random() < 0.4
        zone = rng.choice(ZONES)
        max_per_week = rng.choice([None, None, 2, 5])
        addresses = {"email"}
        places = {}
        if rng.random() < 0.6:
            addresses.add("sms")
            places["sms"] = place_of(f"+48600{i:06d}")
        subscribed = rng.random() < 0.8
        if rng.random() < 0.2:
            at = at0 - rng.randrange(1, 6 * 86_400) * 10**6
            held[cid] = {"camp7": Reservation(at, "email", True)}
        states[cid] = CustomerState(
            customer_id=cid,
            timezone=zone,
            country="PL",
            channel=channel,
            addresses=frozenset(addresses),
            subscribed=subscribed,
            quiet_hours=("22:00", "07:00") if quiet else None,
            max_per_week=max_per_week,
            places=places,
        )
    return states, held


def spread(values: list[float]) -> dict[str, object]:
    return {"median": round(statistics.median(values)), "range": [round(min(values)), round(max(values))]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="timings per round (the best is kept)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.customers, args.batch, args.rounds, args.repeat = 2_000, 500, 2, 1
    states, held = population(args.customers)
    rt: Any = SimpleNamespace(policy=POLICY, now=lambda: AT0)
    batcher = GateBatcher(rt)
    rng = random.Random(3)
    ids_all = sorted(states)
    encode = msgspec.json.Encoder().encode
    figures: dict[str, list[float]] = {"engine": [], "off": [], "on": []}
    sizes: dict[str, list[int]] = {"off": [], "on": []}
    rounds = []
    for i in range(args.rounds):
        ids = rng.sample(ids_all, args.batch)
        camp = f"camp{i}"
        view = CampaignView(camp, "promotions", "marketing", ("email", "sms", "push"), None)
        at = AT0 + timedelta(hours=3 * i)
        loaded = {camp: GateInputs(states=states, held=held)}

        def engine(view: CampaignView = view, ids: list[str] = ids, at: datetime = at) -> None:
            decide_recipients(rt, view, ids, at, GateInputs(states=states, held=held))

        def gate(
            explain: bool,
            camp: str = camp,
            view: CampaignView = view,
            ids: list[str] = ids,
            at: datetime = at,
            loaded: dict[str, GateInputs] = loaded,
        ) -> Any:
            ask = _Ask(camp, ids, at, None, None, explain)  # no future: _decide is called directly
            # _decide copies `held` before it changes it: every timing starts from the same inputs
            (results, writes), _ = batcher._decide([ask], {camp: view}, loaded, POLICY.version)
            return results[0][1], writes

        def timed(run: Any) -> tuple[float, Any]:
            best, value = float("inf"), None
            for _ in range(args.repeat):
                started = time.process_time()
                value = run()
                best = min(best, time.process_time() - started)
            return best, value

        took, _ = timed(engine)
        figures["engine"].append(args.batch / took)
        summary: dict[str, int] = {}
        for mode in ("off", "on"):
            took, (decisions, writes) = timed(lambda mode=mode: gate(mode == "on"))
            figures[mode].append(args.batch / took)
            answer = ApprovalAnswer(camp, POLICY.version, at.isoformat(), decisions, summarise(decisions))
            sizes[mode].append(len(encode(answer)))
            if mode == "off":
                s = summarise(decisions)
                summary = {"allow": s.allow, "defer": s.defer, "deny": s.deny}
                explained = sum(1 for row in writes.decisions if row[9] is not None)
                for cid, c, reservation in writes.reserve:  # the next round sees these allows
                    held.setdefault(cid, {})[c] = reservation
        rounds.append({"round": i, "summary": summary, "log_rows_with_explain": explained})
    report = {
        "customers": args.customers,
        "batch": args.batch,
        "rounds": rounds,
        "engine_decisions_per_s": spread(figures["engine"]),
        "gate_explain_off_decisions_per_s": spread(figures["off"]),
        "gate_explain_on_decisions_per_s": spread(figures["on"]),
        "answer_bytes_explain_off": spread([float(x) for x in sizes["off"]]),
        "answer_bytes_explain_on": spread([float(x) for x in sizes["on"]]),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
