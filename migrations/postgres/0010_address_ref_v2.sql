-- Address refs v2 (issue 9, item 10): addresses have a pseudonym key of their own (domain/pseudonyms.py).
-- The SQLite file records which stored refs are still v1 for the start-up step (services/refs_upgrade.py)
-- to convert. A PostgreSQL database is new from this schema on and never held a v1 ref: the marker
-- tables exist (the start-up step reads them on every engine) and say "nothing to convert".

-- The v1 refs still held by suppressions or inbound_review (a row leaves once its ref is converted): none.
CREATE TABLE address_refs_v1 (
    address_ref  text COLLATE "C" PRIMARY KEY
);

-- Whether contacts still hold v1 refs: 1 until the start-up step has re-keyed them all (0: none here,
-- what SQLite's EXISTS (SELECT 1 FROM contacts) gives on a new database).
CREATE TABLE address_refs_upgrade (
    id           bigint PRIMARY KEY CHECK (id = 1),
    contacts_v1  bigint NOT NULL CHECK (contacts_v1 IN (0, 1))
);
INSERT INTO address_refs_upgrade (id, contacts_v1) VALUES (1, 0);
