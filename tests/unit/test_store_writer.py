"""The writer survives a cancelled caller: a transaction nobody owns is rolled back, not inherited."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from prefcenter.store.base import GateWrites
from prefcenter.store.sqlite import SqliteStore

pytestmark = pytest.mark.sqlite_only  # SqliteStore's writer thread


async def test_a_transaction_left_open_is_rolled_back_by_the_next_writer(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "w.db")
    await store.open()
    try:
        await store.migrate()
        # What a task cancelled while its BEGIN was queued leaves behind: an open transaction with a
        # write in it, and the write lock already released.
        await store.writer.execute("BEGIN IMMEDIATE")
        await store.writer.execute("INSERT INTO topics VALUES ('orphan', 'marketing', '{}', '{}', 'x', 'x', 0)")
        async with store.write() as tx:
            await tx.conn.execute("INSERT INTO topics VALUES ('kept', 'marketing', '{}', '{}', 'x', 'x', 0)")
        topics = await store.list_topics()
        assert sorted(topics) == ["kept"]
    finally:
        await store.close()


async def test_cancelling_writers_at_random_points_never_wedges_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    await store.open()
    try:
        await store.migrate()

        async def writer(n: int) -> None:
            if n % 2 == 1:  # the gate's transaction: one function on the writer's thread
                await store.gate({"no-such-campaign": ["c1"]}, lambda views, inputs: (None, GateWrites()))
                return
            async with store.write() as tx:
                await tx.conn.execute(
                    "INSERT INTO topics VALUES (?, 'marketing', '{}', '{}', 'x', 'x', 0)", (f"t{n:04d}",)
                )

        for n in range(200):
            task = asyncio.create_task(writer(n))
            for _ in range(n % 7):  # cancel after a varying number of loop turns
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await writer(9999)  # both kinds still work
        await writer(9998)
        assert "t9998" in await store.list_topics()
    finally:
        await store.close()
