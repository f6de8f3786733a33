"""Issue 9 item 5: a full disk answers writes with 503 problem+json and Retry-After, /readyz says not
ready while writes fail (and ready again once they work), and the WAL stays bounded."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefcenter.config import load_settings
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services.policies import load_policy_file
from prefcenter.services.runtime import Runtime
from prefcenter.store.sqlite import SqliteStore
from prefcenter.store.sqlite import store as sqlite_store
from tests.api.test_gate_concurrency import setup_keys
from tests.conftest import POLICY_FILE, PROFILE, SECRET, Api, prefs_body
from tests.live import serve

pytestmark = pytest.mark.sqlite_only  # a small SQLite file on a full filesystem, PRAGMA, the WAL


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a real file system that really fills up (needs root, as CI and this machine have)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
        pytest.skip("cannot mount a tmpfs here (not root); CI runs this")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of the file system but a few KiB."""
    filler = directory / "filler"
    free = shutil.disk_usage(directory).free
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, free - 8192))
    return filler


async def test_disk_full_on_a_real_server(small_filesystem: Path) -> None:
    db = small_filesystem / "prefcenter.db"
    settings = load_settings({}, database_url=f"sqlite:///{db}", secret_key=SECRET, key_cache_seconds=0)
    rt = Runtime(
        settings=settings,
        store=SqliteStore(db, autocheckpoint=False),
        pseudonyms=Pseudonymizer(SECRET),
        policy=load_policy_file(POLICY_FILE),
    )
    headers = await setup_keys(rt)
    with serve(rt) as base:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            assert (await client.put("/v1/customers/c0", json=PROFILE)).status_code == 201
            assert (await client.get("/readyz")).status_code == 200
            filler = fill(small_filesystem)
            statuses = []
            for i in range(1, 200):
                r = await client.put(f"/v1/customers/c{i}", json=PROFILE)
                statuses.append(r.status_code)
                if r.status_code != 201:
                    break
                r = await client.put(
                    f"/v1/customers/c{i}/preferences",
                    json=prefs_body(
                        provenance={
                            "source": "crm",
                            "actor": "a",
                            "notice_version": "v1",
                            "evidence": {"note": uuid.uuid4().hex * 60},
                        }
                    ),
                )
                if r.status_code != 200:
                    break
            assert r.status_code == 503, (statuses, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert int(r.headers["retry-after"]) > 0
            assert r.json()["status"] == 503
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["writes"].startswith("failing")
            # Reads still work, and the ledger is whole.
            assert (await client.get("/v1/customers/c0")).status_code == 200
            assert (await client.get("/v1/consent-events/verify")).json()["ok"] is True
            filler.unlink()
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            r = await client.put("/v1/customers/after", json=PROFILE)
            assert r.status_code == 201
            assert (await client.get("/v1/consent-events/verify")).json()["ok"] is True


async def test_database_full_answers_503_then_recovers(api: Api) -> None:
    """The same through SQLite's own limit (max_page_count), on any machine."""
    h = api.as_("marketing")
    assert (await api.client.put("/v1/customers/c0", json=PROFILE, headers=h)).status_code == 201
    store = api.rt.store
    assert isinstance(store, SqliteStore)
    async with store.reader.execute("PRAGMA page_count") as cur:
        row = await cur.fetchone()
    assert row is not None
    await store.writer.execute(f"PRAGMA max_page_count = {row[0]}")
    r = None
    for i in range(1, 300):
        r = await api.client.put(f"/v1/customers/c{i}", json=PROFILE, headers=h)
        if r.status_code != 201:
            break
    assert r is not None and r.status_code == 503, r.text
    assert "retry-after" in r.headers
    assert (await api.client.get("/readyz")).status_code == 503
    await store.writer.execute("PRAGMA max_page_count = 1073741823")
    assert (await api.client.get("/readyz")).status_code == 200
    assert (await api.client.put("/v1/customers/again", json=PROFILE, headers=h)).status_code == 201


async def test_the_wal_is_truncated_when_idle(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store = SqliteStore(db, autocheckpoint=False)
    await store.open()
    await store.migrate()
    try:
        for _ in range(300):
            async with store.write() as tx:
                await tx.conn.execute("INSERT INTO store_probe (filler) VALUES (zeroblob(4096))")
        wal = Path(f"{db}-wal")
        assert wal.stat().st_size > 1_000_000
        await store.checkpoint()  # busy, not idle: PASSIVE, the file keeps its size
        assert wal.stat().st_size > 1_000_000
        store.truncate_after_idle_seconds = 0
        await store.checkpoint()
        assert wal.stat().st_size == 0
    finally:
        await store.close()


@pytest.mark.parametrize(("restart_above", "reader"), [(512 * 1024, True), (512 * 1024, False), (None, True)])
async def test_a_busy_wal_is_restarted_above_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restart_above: int | None, reader: bool
) -> None:
    """Back-to-back writes with a short reader open across each checkpoint (as the gate's reader and
    the API's are under load): a PASSIVE checkpoint copies every frame, but the next write, with the
    reader still on the WAL, cannot start it over, so the file only grows (seen: 180 MB after 30 daily
    10,000-id calls). Above ``WAL_RESTART_ABOVE`` (of frames: the file keeps its size) the background
    checkpoint ends in a RESTART under the write lock: on the loop's thread without waiting when no
    reader is on the WAL, else on the checkpointer's thread, waiting for the reader (its busy timeout:
    100 ms), so the next write starts the WAL from its beginning. ``None``: the limit out of reach, the
    old behaviour, which the bound below would catch."""
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_ABOVE", restart_above or 1 << 62)
    db = tmp_path / "p.db"
    store = SqliteStore(db, autocheckpoint=False)
    store.truncate_after_idle_seconds = 3600  # never idle here: no TRUNCATE
    await store.open()
    await store.migrate()
    assert store._checkpointer is not None
    waited: list[object] = []  # the RESTARTs that went to the checkpointer's thread
    run = store._checkpointer.run

    def spy(fn: Any, *args: Any) -> Any:
        if "RESTART" in args:
            waited.append(args)
        return run(fn, *args)

    monkeypatch.setattr(store._checkpointer, "run", spy)
    wal = Path(f"{db}-wal")
    try:
        for _ in range(20):
            for _ in range(50):
                async with store.write() as tx:
                    await tx.conn.execute("INSERT INTO store_probe (filler) VALUES (zeroblob(4096))")
            done: threading.Timer | None = None
            if reader:
                held = sqlite3.connect(db, check_same_thread=False)
                held.execute("BEGIN")
                held.execute("SELECT count(*) FROM store_probe").fetchone()  # a read mark on the WAL
                # the reader ends 30 ms on (within the RESTART's wait); with no RESTART to wait for it,
                # it ends after the write, as a reader does that began just before the checkpoint
                done = threading.Timer(0.03 if restart_above else 3600, lambda r=held: (r.commit(), r.close()))
                done.start()
            await store.checkpoint()
            async with store.write() as tx:  # the first write after the checkpoint
                await tx.conn.execute("DELETE FROM store_probe")
            if done is not None:
                if restart_above is None:
                    done.cancel()
                    held.commit()
                    held.close()
                await asyncio.to_thread(done.join)
        size = wal.stat().st_size
        if restart_above is None:
            assert size > 8 * 1024 * 1024, size  # 20 rounds of ~100 frames of 4 KB, never reused
            assert waited == []
        else:
            assert size <= 3 * 1024 * 1024, size  # the limit and about one round
            assert len(waited) == (20 if reader else 0)
    finally:
        await store.close()


async def test_empty_write_transactions_leave_the_store_idle(tmp_path: Path) -> None:
    """The dispatcher opens a claim transaction every round, usually writing nothing: such rounds
    must not count as writes, or the idle TRUNCATE never runs under ``serve``."""
    db = tmp_path / "p.db"
    store = SqliteStore(db, autocheckpoint=False)
    store.truncate_after_idle_seconds = 0.5
    await store.open()
    await store.migrate()
    try:
        for _ in range(300):
            async with store.write() as tx:
                await tx.conn.execute("INSERT INTO store_probe (filler) VALUES (zeroblob(4096))")
        wal = Path(f"{db}-wal")
        assert wal.stat().st_size > 1_000_000
        for _ in range(8):  # 0.8 s of empty rounds, as an idle dispatcher makes them
            async with store.write() as tx:
                await tx.claim_due("email", 0, 1, 10)
            await asyncio.sleep(0.1)
        await store.checkpoint()
        assert wal.stat().st_size == 0
    finally:
        await store.close()
