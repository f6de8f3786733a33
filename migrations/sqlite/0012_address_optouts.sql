-- Opt-outs belong to the address too (issue 16, COMPLIANCE item 27, edge 13), and the gate row gains what
-- the called party's time needs.
--
-- 1. Marketing-only suppressions. A suppression is either `all` (bounce, complaint, STOP, admin: nothing
--    goes to the address) or `marketing` (an address-level unsubscribe, the voice side of a texted STOP:
--    marketing is denied, transactional messages still go). (channel, address_ref) stays one row: a hard
--    suppression arriving on a marketing-only one upgrades it in place (UPDATE), a marketing-only one
--    never downgrades a hard one (services/suppressions.py). The gate row keeps the two apart:
--    `suppressed_channels` counts only `all`, `marketing_suppressed_channels` only `marketing`.
-- 2. Email refs with the domain as IDNA (domain/pseudonyms.py): the ref of a contact whose stored
--    address has a non-ASCII domain changes. SQL cannot compute refs (they need the secret key): this
--    migration marks whether such contacts exist, and the start-up step (services/refs_upgrade.py)
--    re-keys them and moves the suppressions held under their old refs, as for migration 0010.
-- 3. Phone places: `customers.phone_places` holds, for the sms/voice/whatsapp contacts, where each number
--    is registered (zones, country, subdivision; store/sqlite/gate.py encodes it), written with the
--    contacts; NULL until computed. SQL cannot compute it (phonenumbers' data): the start-up step fills
--    every row when `phone_places_data.version` is not the installed phonenumbers' version.

ALTER TABLE suppressions ADD COLUMN scope TEXT NOT NULL DEFAULT 'all' CHECK (scope IN ('all', 'marketing'));
ALTER TABLE customers ADD COLUMN marketing_suppressed_channels TEXT NOT NULL DEFAULT '';  -- "email"
ALTER TABLE customers ADD COLUMN phone_places TEXT;

-- The gate-row triggers of migration 0005 counted every suppression as a hard one: recreated with the
-- scope, plus one for a suppression changed in place and one for a contact re-keyed in place.
DROP TRIGGER gate_row_contact_added;
DROP TRIGGER gate_row_contact_removed;
DROP TRIGGER gate_row_suppression_added;
DROP TRIGGER gate_row_suppression_removed;

CREATE TRIGGER gate_row_contact_added AFTER INSERT ON contacts BEGIN
    UPDATE customers SET
        contact_channels = coalesce((SELECT group_concat(channel) FROM contacts WHERE customer_id = NEW.customer_id), ''),
        suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = NEW.customer_id), ''),
        marketing_suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = NEW.customer_id), '')
    WHERE id = NEW.customer_id;
END;

CREATE TRIGGER gate_row_contact_removed AFTER DELETE ON contacts BEGIN
    UPDATE customers SET
        contact_channels = coalesce((SELECT group_concat(channel) FROM contacts WHERE customer_id = OLD.customer_id), ''),
        suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = OLD.customer_id), ''),
        marketing_suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = OLD.customer_id), '')
    WHERE id = OLD.customer_id;
END;

CREATE TRIGGER gate_row_contact_changed AFTER UPDATE OF channel, address_ref ON contacts BEGIN
    UPDATE customers SET
        contact_channels = coalesce((SELECT group_concat(channel) FROM contacts WHERE customer_id = customers.id), ''),
        suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = customers.id), ''),
        marketing_suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (OLD.customer_id, NEW.customer_id);
END;

CREATE TRIGGER gate_row_suppression_added AFTER INSERT ON suppressions BEGIN
    UPDATE customers SET
        suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = customers.id), ''),
        marketing_suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (SELECT customer_id FROM contacts WHERE channel = NEW.channel AND address_ref = NEW.address_ref);
END;

CREATE TRIGGER gate_row_suppression_removed AFTER DELETE ON suppressions BEGIN
    UPDATE customers SET
        suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = customers.id), ''),
        marketing_suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (SELECT customer_id FROM contacts WHERE channel = OLD.channel AND address_ref = OLD.address_ref);
END;

CREATE TRIGGER gate_row_suppression_changed AFTER UPDATE ON suppressions BEGIN
    UPDATE customers SET
        suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = customers.id), ''),
        marketing_suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (
        SELECT customer_id FROM contacts WHERE channel = NEW.channel AND address_ref = NEW.address_ref
        UNION
        SELECT customer_id FROM contacts WHERE channel = OLD.channel AND address_ref = OLD.address_ref
    );
END;

-- No backfill of the gate row is needed: every suppression that exists is `all` (the column's default),
-- so suppressed_channels is already right and marketing_suppressed_channels is '' (its default) for all.

-- Whether email contacts with a non-ASCII character (so perhaps a non-ASCII domain, whose ref changes)
-- exist: 1 until the start-up step has re-keyed them.
CREATE TABLE address_refs_idna (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    pending  INTEGER NOT NULL CHECK (pending IN (0, 1))
);
INSERT INTO address_refs_idna (id, pending)
    VALUES (1, EXISTS (SELECT 1 FROM contacts WHERE channel = 'email' AND address GLOB '*[^ -~]*'));

-- The phonenumbers version the stored phone_places were computed with ('': none yet).
CREATE TABLE phone_places_data (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  TEXT NOT NULL
);
INSERT INTO phone_places_data (id, version) VALUES (1, '');
