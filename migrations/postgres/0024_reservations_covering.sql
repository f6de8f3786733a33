-- Nothing on PostgreSQL: SQLite's 0024 widens reservations_by_time to cover the gate's seek, but here
-- the same index measured slower for the gate's query of a week's reservations for 10,000 ids
-- (85-101 ms against 79-93 ms for 46,667 rows, most of it asyncpg decoding the rows; an INCLUDE of the
-- other columns, for index-only scans, 96-103 ms). The file keeps the two engines' migrations in step
-- (tests/unit/test_schema_parity.py names this index as the one that differs).
SELECT 1;
