-- Address refs v2 (issue 9, item 10). Address pseudonyms were HMAC keyed with the secret key itself, the
-- key of customer_ref, so the customer id "email:ola@example.pl" had a customer_ref equal to the
-- address_ref of ola@example.pl. From now on addresses have a key of their own (domain/pseudonyms.py).
--
-- Every address_ref stored before this migration is a v1 ref. SQL cannot compute the new refs (they
-- need the secret key), so this migration only records what is v1, and the step that runs right after
-- the migrations at every start (services/refs_upgrade.py) does the rest: contacts get their v2 ref from
-- their plain address, and each suppression or review text whose v1 ref a contact's address has becomes
-- v2 in the same transaction. The other v1 rows (an erased customer's complaint, a STOP from an unknown
-- number) stay as they are, still listed with their stored ref, and become v2 the first time their
-- address is seen in plain text again (a customer PUT with it, an inbound event from it, an admin PUT or
-- DELETE of it). Nothing writes a v1 ref after this migration; a fresh database has none. Ledger events
-- are immutable: those written before keep their v1 refs.
--
-- The markers are tables of their own (no new columns), so the rows and their readers stay as they are.

-- The v1 refs still held by suppressions or inbound_review (a row leaves once its ref is converted).
CREATE TABLE address_refs_v1 (
    address_ref  TEXT PRIMARY KEY
) WITHOUT ROWID;
INSERT OR IGNORE INTO address_refs_v1 (address_ref)
    SELECT address_ref FROM suppressions UNION SELECT address_ref FROM inbound_review;

-- Whether contacts still hold v1 refs: 1 until the start-up step has re-keyed them all.
CREATE TABLE address_refs_upgrade (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    contacts_v1  INTEGER NOT NULL CHECK (contacts_v1 IN (0, 1))
);
INSERT INTO address_refs_upgrade (id, contacts_v1) VALUES (1, EXISTS (SELECT 1 FROM contacts));
