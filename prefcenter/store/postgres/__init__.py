"""The server store: one PostgreSQL database (a schema of it) through an asyncpg pool, shared by every
process of a deployment.

- Every ``write()`` transaction first takes a transaction-level advisory lock, so writes run one at a
  time across the deployment; the gate runs beside them, serialised per customer by row locks taken in
  id order, and is run again after a lost deadlock.
- Reads use the pool and see committed data only; the dry-run gate reads one snapshot.
- Dispatchers lease outbox rows with ``FOR UPDATE SKIP LOCKED``: any number of them may run.
- After an erasure the store runs a plain ``VACUUM``; the erased bytes may remain in free space, WAL and
  backups until the operator's ``VACUUM FULL`` and WAL recycling (see the README).

The modules: ``store`` (:class:`PostgresStore`: the pool, ``write()``, the gate transaction, migrations,
:class:`~prefcenter.store.postgres.store.PgMaintenance`), ``reads`` (the reads), ``write``
(:class:`~prefcenter.store.postgres.write.PgWriteTx`, the writing transaction), ``gate`` (the gate's
locks, loads and writes), ``rows`` (rows to Structs, shared lookups), ``notifications`` and ``schema``
(PostgreSQL's part of :mod:`prefcenter.store.migrations`).
"""

from prefcenter.store.postgres.schema import default_migrations_dir
from prefcenter.store.postgres.store import PostgresStore

__all__ = ["PostgresStore", "default_migrations_dir"]
