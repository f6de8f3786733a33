-- A scratch table for the readiness probe: after a write failed for want of disk, /readyz inserts a
-- page-sized row here and deletes it in one committed transaction, to see whether writes work again.
CREATE TABLE store_probe (
    id      INTEGER PRIMARY KEY,
    filler  BLOB NOT NULL
);
