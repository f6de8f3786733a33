-- Opt-outs belong to the address too (issue 16, COMPLIANCE item 27, edge 13), and the gate row gains what
-- the called party's time needs. (The reasons at length: migrations/sqlite/0012_address_optouts.sql.)
--
-- 1. Marketing-only suppressions: a suppression is `all` or `marketing`; the gate row keeps the two
--    apart: `suppressed_channels` counts only `all`, `marketing_suppressed_channels` only `marketing`.
-- 2. Email refs with the domain as IDNA: the marker `address_refs_idna` for the start-up step
--    (services/refs_upgrade.py); a new database has no contacts, so nothing is pending.
-- 3. Phone places: `customers.phone_places`, NULL until computed; `phone_places_data.version` is the
--    phonenumbers version they were computed with ('': none yet).

ALTER TABLE suppressions ADD COLUMN scope text COLLATE "C" NOT NULL DEFAULT 'all'
    CHECK (scope IN ('all', 'marketing'));
ALTER TABLE customers ADD COLUMN marketing_suppressed_channels text COLLATE "C" NOT NULL DEFAULT '';  -- "email"
ALTER TABLE customers ADD COLUMN phone_places text COLLATE "C";

-- The gate-row functions of migration 0005 counted every suppression as a hard one: replaced with the
-- scope (SQLite drops and recreates its triggers; here the triggers stay and their functions change),
-- plus a trigger for a suppression changed in place and one for a contact re-keyed in place.

CREATE OR REPLACE FUNCTION gate_row_contact_added() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        contact_channels = coalesce((SELECT string_agg(channel, ',' ORDER BY channel) FROM contacts
            WHERE customer_id = NEW.customer_id), ''),
        suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = NEW.customer_id), ''),
        marketing_suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = NEW.customer_id), '')
    WHERE id = NEW.customer_id;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION gate_row_contact_removed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        contact_channels = coalesce((SELECT string_agg(channel, ',' ORDER BY channel) FROM contacts
            WHERE customer_id = OLD.customer_id), ''),
        suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = OLD.customer_id), ''),
        marketing_suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = OLD.customer_id), '')
    WHERE id = OLD.customer_id;
    RETURN NULL;
END;
$$;

CREATE FUNCTION gate_row_contact_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        contact_channels = coalesce((SELECT string_agg(channel, ',' ORDER BY channel) FROM contacts
            WHERE customer_id = customers.id), ''),
        suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = customers.id), ''),
        marketing_suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (OLD.customer_id, NEW.customer_id);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION gate_row_suppression_added() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = customers.id), ''),
        marketing_suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (SELECT customer_id FROM contacts WHERE channel = NEW.channel AND address_ref = NEW.address_ref);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION gate_row_suppression_removed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = customers.id), ''),
        marketing_suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (SELECT customer_id FROM contacts WHERE channel = OLD.channel AND address_ref = OLD.address_ref);
    RETURN NULL;
END;
$$;

CREATE FUNCTION gate_row_suppression_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
            WHERE k.customer_id = customers.id), ''),
        marketing_suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (
        SELECT customer_id FROM contacts WHERE channel = NEW.channel AND address_ref = NEW.address_ref
        UNION
        SELECT customer_id FROM contacts WHERE channel = OLD.channel AND address_ref = OLD.address_ref
    );
    RETURN NULL;
END;
$$;

CREATE TRIGGER gate_row_contact_changed AFTER UPDATE OF channel, address_ref ON contacts
FOR EACH ROW EXECUTE FUNCTION gate_row_contact_changed();

CREATE TRIGGER gate_row_suppression_changed AFTER UPDATE ON suppressions
FOR EACH ROW EXECUTE FUNCTION gate_row_suppression_changed();

-- Whether email contacts with a non-ASCII character (so perhaps a non-ASCII domain, whose ref changes)
-- exist: 1 until the start-up step has re-keyed them (0: a new database has no contacts).
CREATE TABLE address_refs_idna (
    id       bigint PRIMARY KEY CHECK (id = 1),
    pending  bigint NOT NULL CHECK (pending IN (0, 1))
);
INSERT INTO address_refs_idna (id, pending) VALUES (1, 0);

-- The phonenumbers version the stored phone_places were computed with ('': none yet).
CREATE TABLE phone_places_data (
    id       bigint PRIMARY KEY CHECK (id = 1),
    version  text COLLATE "C" NOT NULL
);
INSERT INTO phone_places_data (id, version) VALUES (1, '');
