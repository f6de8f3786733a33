"""What the tests and the benchmark scripts share to set a database up and look at it: a migrated
SQLite file, a PostgreSQL schema of its own (migrated, dropped on the way out), the peak memory of the
process, and the command run on a SQLite file.

Importable from a benchmark run as a script (``python tests/benchmarks/bench_x.py``: put the
repository root on ``sys.path`` first); it imports neither pytest nor the suite's fixtures.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from prefcenter.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from prefcenter.store.postgres import PostgresStore


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def migrate_sqlite(path: Path) -> None:
    """A SQLite file at ``path`` with every shipped migration applied (the store closed again)."""
    store = SqliteStore(path)
    await store.open()
    await store.migrate()
    await store.close()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@asynccontextmanager
async def postgres_schema_store(dsn: str, *, max_size: int = 4) -> AsyncIterator[PostgresStore]:
    """A :class:`PostgresStore` on a new schema ``pc_<random>`` of ``dsn``, opened and migrated; on the
    way out the store is closed and the schema dropped (also when the body failed)."""
    import asyncpg

    from prefcenter.store.postgres import PostgresStore

    schema = "pc_" + uuid.uuid4().hex
    store = PostgresStore(dsn, schema=schema, min_size=1, max_size=max_size)
    await store.open()
    try:
        await store.migrate()
        assert store.pool is not None
        yield store
    finally:
        await store.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        finally:
            await conn.close()


def run_cli(db: Path, secret: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m prefcenter.cli ARGS`` on the SQLite file ``db`` with ``secret`` (logging at warning),
    its output captured as text; bounded by ``timeout`` seconds."""
    env = {
        **os.environ,
        "PREFCENTER_DATABASE_URL": f"sqlite:///{db}",
        "PREFCENTER_SECRET_KEY": secret,
        "PREFCENTER_LOG_LEVEL": "warning",
    }
    return subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
