"""The embedded store: one SQLite file through aiosqlite, WAL, one writer at a time.

- Every writing transaction starts with ``BEGIN IMMEDIATE`` on the single writer connection, under an
  asyncio lock, so writers queue instead of failing with SQLITE_BUSY.
- Reads use a separate connection and see committed data only.
- ``secure_delete`` is on, and erasure ends with a ``wal_checkpoint(TRUNCATE)``, so erased rows do not
  linger in free pages or old WAL frames.

The modules: ``store`` (:class:`SqliteStore`: connections, PRAGMAs, ``write()``, checkpoints, the
dispatcher lock, migrations), ``reads`` (the reads), ``write`` (:class:`SqliteWriteTx`, the writing
transaction), ``gate`` (the gate's one-hop functions), ``rows`` (rows to Structs, shared lookups) and
``schema`` (SQLite's part of :mod:`prefcenter.store.migrations`).
"""

from prefcenter.store.sqlite.schema import default_migrations_dir
from prefcenter.store.sqlite.store import JOURNAL_SIZE_LIMIT, SqliteStore
from prefcenter.store.sqlite.write import SqliteWriteTx

__all__ = ["JOURNAL_SIZE_LIMIT", "SqliteStore", "SqliteWriteTx", "default_migrations_dir"]
