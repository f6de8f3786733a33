-- The twin of SQLite's 0024, for the parity of the two schemas (tests/unit/test_schema_parity.py), not
-- for a figure: PostgreSQL's gate query of a week's reservations for 10,000 ids took as long with it as
-- without (85-101 ms against 79-93 ms for 46,667 rows, asyncpg's decoding of the rows most of it; an
-- INCLUDE of the other columns, for index-only scans, did no better).
DROP INDEX reservations_by_time;
CREATE INDEX reservations_by_time ON reservations (customer_id, at_us, marketing, channel);
