"""Engine-only throughput of the send-approval gate (``decide_batch``), on one core.

Builds N synthetic customers (about 30 IANA zones, all five channels, subscribed or not, some with
quiet hours, some paused, some with recent reservations), then times ``decide_batch`` over them in
chunks of 10,000 (the API's largest approval call) for one marketing campaign, and prints JSON.

    python tests/benchmarks/bench_engine.py              # N = 200,000, best of 5 runs
    python tests/benchmarks/bench_engine.py --n 50000 --repeat 3
    python tests/benchmarks/bench_engine.py --smoke      # tiny, for CI: checks it runs
    python tests/benchmarks/bench_engine.py --places     # phone customers get their numbers' places

Without ``--places`` the customers are the same as before phone places existed (the email hot path is
what that figure measures); with it, sms/voice/whatsapp customers also get a place (one of a few real
numbers' zones, some in another zone than the profile's, some in US-FL or France), drawn from a
separate random stream so the rest of the data is unchanged.

Only the engine is timed: building the states (the store's job) is outside the measurement. The first
(warm-up) run also loads the zones; the figure reported is the best of the timed runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefcenter.domain.engine import Send, decide_batch
from prefcenter.domain.model import PHONE_CHANNELS, CampaignView, Channel, CustomerState, PhonePlace
from prefcenter.domain.phones import place_of
from prefcenter.domain.policy import load_policy

ZONES = [
    "Europe/Warsaw", "Europe/Bucharest", "Europe/Athens", "Europe/Berlin", "Europe/London",
    "Europe/Paris", "Europe/Madrid", "Europe/Lisbon", "Europe/Kyiv", "Europe/Istanbul",
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Phoenix",
    "America/Sao_Paulo", "America/Mexico_City", "America/St_Johns", "Asia/Tehran", "Asia/Kolkata",
    "Asia/Kathmandu", "Asia/Shanghai", "Asia/Tokyo", "Asia/Dubai", "Asia/Singapore",
    "Australia/Sydney", "Australia/Adelaide", "Australia/Lord_Howe", "Pacific/Auckland", "Africa/Lagos",
]  # fmt: skip
COUNTRIES = ["PL", "RO", "GR", "DE", "GB", "FR", "ES", "PT", "UA", "TR", "US", "BR", "MX", "CA", "IR",
             "IN", "NP", "CN", "JP", "AE", "SG", "AU", "NZ", "NG"]  # fmt: skip
CHANNELS: list[Channel] = ["email", "sms", "push", "voice", "whatsapp"]
QUIET = [("22:00", "07:00"), ("21:00", "08:00"), ("23:00", "06:30"), ("12:00", "13:00")]
CHUNK = 10_000
NUMBERS = ["+12135550199", "+13055550123", "+33612345678", "+48600100200", "+61412345678", "+442071838750"]


def build(
    n: int, at: datetime, seed: int = 7, places: bool = False
) -> list[tuple[str, CustomerState | None, list[Send]]]:
    rng = random.Random(seed)
    place_rng = random.Random(seed + 1)
    known: list[PhonePlace] = [place_of(number) for number in NUMBERS]
    items: list[tuple[str, CustomerState | None, list[Send]]] = []
    for i in range(n):
        cid = f"c{i}"
        if rng.random() < 0.01:
            items.append((cid, None, []))
            continue
        roll = rng.random()
        channel: Channel | None = "email" if roll < 0.55 else rng.choice(CHANNELS) if roll < 0.95 else None
        addresses = frozenset(c for c in CHANNELS if c == channel or rng.random() < 0.3)
        if channel is not None and rng.random() < 0.02:
            addresses = addresses - {channel}
        suppressed = frozenset({channel}) if channel is not None and rng.random() < 0.01 else frozenset()
        sends: list[Send] = []
        if rng.random() < 0.2:  # some recent (and a few upcoming) reservations, on the chosen channel
            sends = [
                (at + timedelta(hours=rng.uniform(-200, 30)), channel or "email")
                for _ in range(rng.randint(1, 3))
            ]
        phone_places: dict[str, PhonePlace] = {}
        if places:
            phone_places = {c: place_rng.choice(known) for c in addresses if c in PHONE_CHANNELS}
        items.append(
            (
                cid,
                CustomerState(
                    customer_id=cid,
                    timezone=rng.choice(ZONES),
                    country=rng.choice(COUNTRIES),
                    channel=channel,
                    addresses=addresses,
                    suppressed=suppressed,
                    subscribed=rng.random() < 0.85,
                    quiet_hours=rng.choice(QUIET) if rng.random() < 0.3 else None,
                    max_per_week=rng.choice([1, 2, 5]) if rng.random() < 0.1 else None,
                    paused_until=at + timedelta(days=3) if rng.random() < 0.01 else None,
                    places=phone_places,
                ),
                sends,
            )
        )
    return items


def run(n: int, repeat: int, places: bool = False) -> dict[str, object]:
    root = Path(__file__).resolve().parents[2]
    policy_path = root / "policies" / "default.toml"
    policy = load_policy(policy_path.read_bytes(), str(policy_path))
    at = datetime(2026, 11, 22, 14, 30, tzinfo=UTC)
    campaign = CampaignView(
        campaign_id="black-friday",
        topic="promotions",
        category="marketing",
        channels=("email", "sms", "push", "whatsapp"),
        send_by=at + timedelta(days=8),
    )
    items = build(n, at, places=places)
    chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]

    decide_batch(items[: min(n, 2_000)], campaign, at, policy)  # warm-up: zone data, caches
    timings: list[float] = []
    verdicts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for r in range(repeat):
        start = time.perf_counter()
        results = [decide_batch(chunk, campaign, at, policy) for chunk in chunks]
        timings.append(time.perf_counter() - start)
        if r == 0:
            for decisions in results:
                for d in decisions:
                    verdicts[d.verdict] += 1
                    reasons[d.reason] += 1
    best = min(timings)
    return {
        "benchmark": "engine.decide_batch",
        "n": n,
        "chunk": CHUNK,
        "repeat": repeat,
        "zones": len(ZONES),
        "phone_places": places,
        "best_seconds": round(best, 6),
        "decisions_per_second": round(n / best),
        "median_decisions_per_second": round(n / sorted(timings)[len(timings) // 2]),
        "verdicts": dict(sorted(verdicts.items())),
        "reasons": dict(sorted(reasons.items())),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200_000, help="number of recipients (default 200,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best is reported (default 5)")
    parser.add_argument("--smoke", action="store_true", help="tiny run (n=500, 1 repeat) to check it works")
    parser.add_argument("--places", action="store_true", help="give phone customers their numbers' places")
    args = parser.parse_args(argv)
    n, repeat = (500, 1) if args.smoke else (args.n, args.repeat)
    if n < 1 or repeat < 1:
        parser.error("--n and --repeat must be positive")
    print(json.dumps(run(n, repeat, args.places), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
