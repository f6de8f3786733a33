"""Benchmark: ``prefcenter policy replay`` over N logged decisions (default 1,000,000). Prints JSON.

    python tests/benchmarks/bench_replay.py [--customers 100000] [--rounds 10] [--round-hours 72]
        [--chunk 50000] [--db FILE] [--smoke]

Seeds a real SQLite file straight in bulk: 10 marketing campaigns, C customers (default 100,000) in 12
zones on email and SMS (their numbers' places stored as the store stores them), each with a realistic
ledger (channel and topic grants, and for some quiet hours, an own weekly cap, a pause, a later change
of channel; 1 in 100 an address suppression), and ROUNDS approval rounds (default 10, so C x 10
decisions), each round one campaign asked for every customer in calls of 10,000 ids at one instant,
rounds 72 hours apart (about two campaigns a week: the SMS windows, pauses and own caps bite; with
``--round-hours 18`` the daily cap defers most asks, the engine's slow path). The logged decisions are what
the shipped policy answered, reservations included (the engine, as the gate runs it; a quarter of the
last round re-asks the first campaign: retries). Then it times :func:`prefcenter.services.replay.replay`
(the store's chunked reads and the re-decisions, one core) with the shipped policy (expected: nothing
changes) and with a candidate that narrows SMS to 09:00-20:00, and reports decisions/s (wall), the
CPU seconds (reading the store, rebuilding the inputs, the engine), the changes and the peak RSS.
``--db FILE`` seeds FILE once and replays it again on later runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefcenter.config import load_settings
from prefcenter.domain.engine import decide_batch
from prefcenter.domain.ledger import format_at, format_instant
from prefcenter.domain.model import CampaignView, CustomerState
from prefcenter.domain.policy import load_policy
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.domain.timewindows import to_us
from prefcenter.logging import configure_logging
from prefcenter.services.replay import replay
from prefcenter.services.runtime import Runtime
from prefcenter.store.codec import places_from_text, places_text
from prefcenter.store.sqlite import SqliteStore
from prefcenter.store.sqlite.rows import INSERT_EVENT_SQL

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.seeding
from tests.seeding import migrate_sqlite, peak_rss_mb

SECRET = "benchmark-secret-key-0123"
ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "default.toml"
BATCH = 10_000
START = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # a Monday

# (zone, country, a number registered there or None for email-only places)
PLACES = [
    ("Europe/Warsaw", "PL", "+48600100200"),
    ("Europe/Bucharest", "RO", "+40721000111"),
    ("Europe/Athens", "GR", "+306912345678"),
    ("Europe/Berlin", "DE", "+4915123456789"),
    ("Europe/London", "GB", "+447700900123"),
    ("America/New_York", "US", "+12125550123"),
    ("America/Chicago", "US", "+13125550123"),
    ("America/Los_Angeles", "US", "+14155550123"),
    ("Asia/Tokyo", "JP", "+819012345678"),
    ("Australia/Sydney", "AU", "+61412345678"),
    ("America/Sao_Paulo", "BR", "+5511912345678"),
    ("Asia/Kolkata", "IN", "+919812345678"),
]


def candidate_text() -> str:
    text = POLICY.read_text()
    text = text.replace('sms = "08:00-21:00"', 'sms = "09:00-20:00"', 1)
    return text.replace('windows = { sms = "08:00-20:00", voice', 'windows = { sms = "09:00-20:00", voice', 1)


class _Event:
    def __init__(self) -> None:
        self.seq = 0
        self.rows: list[tuple[Any, ...]] = []

    def add(self, cid: str, ref: str, at: datetime, action: str, subject: str, value: Any) -> None:
        self.seq += 1
        self.rows.append(
            (
                self.seq,
                f"e{self.seq}",
                format_at(at),
                cid,
                ref,
                action,
                subject,
                json.dumps(value, separators=(",", ":")),
                "api",
                "bench",
                "2026-01",
                None,
                "{}",
                "0" * 64,
                f"{self.seq:064x}",
                2,
            )
        )


def seed(path: Path, customers: int, rounds: int, gap: timedelta) -> dict[str, Any]:
    """The customers, their ledger and the decision log (what the shipped policy answered)."""
    started = time.perf_counter()
    policy = load_policy(POLICY.read_bytes(), str(POLICY))
    p = Pseudonymizer(SECRET)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    stamp = format_at(START - timedelta(days=30))
    conn.execute(
        "INSERT INTO topics (id, category, names, descriptions, created_at, updated_at) "
        "VALUES ('promotions', 'marketing', '{\"en\":\"Offers\"}', '{}', ?, ?)",
        (stamp, stamp),
    )
    campaigns = [f"camp-{k}" for k in range(10)]
    conn.executemany(
        "INSERT INTO campaigns (id, topic, channels, send_by, content, created_at, updated_at) "
        "VALUES (?, 'promotions', '[\"email\",\"sms\"]', NULL, '{}', ?, ?)",
        [(c, stamp, stamp) for c in campaigns],
    )
    views = {c: CampaignView(c, "promotions", "marketing", ("email", "sms")) for c in campaigns}
    places = {number: places_text([("sms", number)]) for _, _, number in PLACES}
    states: list[CustomerState] = []
    rows, contacts, suppressions = [], [], []
    events = _Event()
    created = START - timedelta(days=20)
    for i in range(customers):
        cid = f"cust-{i:07d}"
        ref = p.customer_ref(cid)
        zone, country, number = PLACES[i % len(PLACES)]
        sms = i % 3 == 0
        channel = "sms" if sms else "email"
        t = created + timedelta(seconds=i % 86_400)
        quiet = ("22:00", "07:00") if i % 5 == 0 else None
        cap = 2 if i % 7 == 0 else None
        paused = START + gap * 3 if i % 11 == 0 else None
        events.add(cid, ref, t, "grant", f"channel:{channel}", True)
        events.add(cid, ref, t, "grant", "topic:promotions", True)
        if quiet:
            events.add(cid, ref, t, "update", "quiet_hours", {"start": quiet[0], "end": quiet[1]})
        if cap:
            events.add(cid, ref, t, "update", "max_per_week", cap)
        if paused:
            events.add(cid, ref, t + timedelta(days=1), "update", "pause", format_instant(paused))
        if i % 13 == 0:  # changed their mind once: email, then back
            other = "email" if sms else "sms"
            events.add(cid, ref, t + timedelta(days=2), "grant", f"channel:{other}", True)
            events.add(cid, ref, t + timedelta(days=3), "grant", f"channel:{channel}", True)
        email_ref = p.address_ref("email", f"{cid}@example.com") if hasattr(p, "address_ref") else f"a-{cid}"
        phone_ref = f"p-{cid}"
        contacts.append((cid, "email", f"{cid}@example.com", email_ref))
        if sms:
            contacts.append((cid, "sms", number, phone_ref))
        suppressed: frozenset[Any] = frozenset()
        if i % 100 == 1:  # a bounce before the first round
            suppressions.append(("email", email_ref, "bounce", format_at(t + timedelta(days=4))))
            events.add(
                cid,
                ref,
                t + timedelta(days=4),
                "update",
                "suppression:email",
                {"suppressed": True, "address_ref": email_ref, "reason": "bounce"},
            )
            suppressed = frozenset({"email"})
        addresses = frozenset({"email", "sms"} if sms else {"email"})
        rows.append(
            (
                cid,
                ref,
                zone,
                "en",
                country,
                channel,
                quiet[0] if quiet else None,
                quiet[1] if quiet else None,
                cap,
                format_instant(paused) if paused else None,
                format_at(t),
                format_at(t),
                ",".join(sorted(addresses)),
                ",".join(sorted(suppressed)),
                ",promotions,",
                "g",
                "",
                places[number] if sms else "",
            )
        )
        states.append(
            CustomerState(
                cid,
                zone,
                country,
                channel,  # type: ignore[arg-type]
                addresses,  # type: ignore[arg-type]
                suppressed,
                True,
                quiet,
                cap,
                paused,
                places=places_from_text(places[number]) if sms else {},
            )
        )
    columns = (
        "id, ref, timezone, locale, country, channel, quiet_start, quiet_end, max_per_week, paused_until, "
        "created_at, updated_at, contact_channels, suppressed_channels, topic_list, link_gen, "
        "marketing_suppressed_channels, phone_places"
    )
    conn.executemany(f"INSERT INTO customers ({columns}) VALUES ({', '.join('?' * 18)})", rows)
    conn.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?)", contacts)
    conn.executemany(
        "INSERT INTO suppressions (channel, address_ref, reason, since) VALUES (?, ?, ?, ?)", suppressions
    )
    conn.executemany(INSERT_EVENT_SQL, events.rows)
    conn.execute("UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (events.seq, f"{events.seq:064x}"))
    conn.commit()

    # the decision log: each round one campaign for everyone, 10,000 ids a call, as the gate decides
    version = "sha256:" + "0" * 64
    held: list[dict[str, tuple[datetime, str]]] = [{} for _ in range(customers)]
    logged = 0
    for r in range(rounds):
        base = START + gap * r
        for b in range(0, customers, BATCH):
            at = base + timedelta(seconds=30 * (b // BATCH))
            at_text = format_instant(at)
            by_camp: dict[str, list[int]] = {}
            for i in range(b, min(b + BATCH, customers)):
                camp = campaigns[0] if r == rounds - 1 and r > 0 and i % 4 == 0 else campaigns[r % 10]
                by_camp.setdefault(camp, []).append(i)
            out = []
            for camp, idx in by_camp.items():
                items = []
                retries = set()
                for i in idx:
                    mine = held[i]
                    if camp in mine:
                        retries.add(states[i].customer_id)
                    items.append(
                        (states[i].customer_id, states[i], [s for c, s in mine.items() if c != camp])
                    )
                decisions = decide_batch(items, views[camp], at, policy, retries=retries)
                for i, d in zip(idx, decisions, strict=True):
                    mine = held[i]
                    if d.verdict == "allow" and camp not in mine:
                        mine[camp] = (at, d.channel or "")
                    elif d.verdict == "deny":
                        mine.pop(camp, None)
                    nb = format_instant(d.not_before) if d.not_before else None
                    out.append(
                        (
                            d.customer_id,
                            camp,
                            at_text,
                            d.verdict,
                            d.reason,
                            d.channel,
                            nb,
                            version,
                            "approval",
                        )
                    )
            conn.executemany(
                "INSERT INTO decisions (customer_id, campaign_id, at, verdict, reason, channel, not_before, "
                "policy_version, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                out,
            )
            logged += len(out)
    conn.commit()
    reasons = dict(conn.execute("SELECT reason, count(*) FROM decisions GROUP BY reason").fetchall())
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {
        "seed_s": round(time.perf_counter() - started, 1),
        "events": events.seq,
        "decisions": logged,
        "logged_reasons": reasons,
        "first_at_us": to_us(START),
    }


async def time_replay(path: Path, policy_bytes: bytes, label: str, chunk: int) -> dict[str, Any]:
    settings = load_settings({}, database_url=f"sqlite:///{path}", secret_key=SECRET)
    rt = Runtime(settings=settings, store=SqliteStore(path), pseudonyms=Pseudonymizer(SECRET))
    await rt.store.open()
    try:
        policy = load_policy(policy_bytes, label)
        cpu0, started = time.process_time(), time.perf_counter()
        result = await replay(rt, policy, chunk=chunk)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    finally:
        await rt.store.close()
    return {
        "decisions": result.decisions,
        "changed": result.changed,
        "by_change": result.by_change,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "decisions_per_s": round(result.decisions / wall) if wall else None,
        "split_s": result.timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--round-hours",
        type=float,
        default=72,
        help="hours between rounds (72: about two campaigns a week; 18: the daily cap and the SMS "
        "windows bite on most rounds, the engine's slow path)",
    )
    parser.add_argument("--chunk", type=int, default=50_000, help="decisions per store chunk")
    parser.add_argument("--smoke", action="store_true", help="tiny: 300 customers, 4 rounds")
    parser.add_argument("--db", type=Path, default=None, help="seed this file once and reuse it")
    args = parser.parse_args()
    configure_logging(production=False, level="warning")  # on stderr, and not each migration applied
    if args.smoke:
        args.customers, args.rounds, args.chunk = 300, 4, 200
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "replay.db"
        if args.db is not None and path.exists():
            asyncio.run(migrate_sqlite(path))  # seeded by an older checkout: its later migrations
            conn = sqlite3.connect(path)
            seeded = {
                "decisions": conn.execute("SELECT count(*) FROM decisions").fetchone()[0],
                "reused": True,
            }
            conn.close()
        else:
            asyncio.run(migrate_sqlite(path))
            seeded = seed(path, args.customers, args.rounds, timedelta(hours=args.round_hours))
        rss_seeded = peak_rss_mb()
        shipped = asyncio.run(time_replay(path, POLICY.read_bytes(), str(POLICY), args.chunk))
        candidate = asyncio.run(time_replay(path, candidate_text().encode(), "candidate.toml", args.chunk))
    report = {
        "customers": args.customers,
        "rounds": args.rounds,
        "round_hours": args.round_hours,
        "chunk": args.chunk,
        **seeded,
        "shipped": shipped,
        "candidate_sms_09_20": candidate,
        "peak_rss_mb_after_seed": round(rss_seeded, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(json.dumps(report, indent=2))
    if shipped["changed"] != 0 or shipped["decisions"] != seeded["decisions"]:
        print("the shipped policy's replay should change nothing", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
