-- What they were told (COMPLIANCE items 15, 16, edge 13 and 21; issue 16 item 6).
--
-- Notices: each version's texts, registered once (PUT /v1/notices/{notice_version}) and never changed
-- (triggers refuse UPDATE, DELETE and TRUNCATE): texts NFC-normalised, with the hex SHA-256 of each
-- text's UTF-8 bytes. They hold no personal data, so erasure leaves them.
CREATE TABLE notices (
    version        text COLLATE "C" PRIMARY KEY,
    texts          text COLLATE "C" NOT NULL,     -- JSON object: language tag -> text (NFC)
    sha256         text COLLATE "C" NOT NULL,     -- JSON object: language tag -> hex SHA-256 of the text
    registered_at  text COLLATE "C" NOT NULL
);

CREATE FUNCTION notices_registered_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'notices are registered once' USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER notices_registered_once_update
BEFORE UPDATE ON notices
FOR EACH ROW EXECUTE FUNCTION notices_registered_once();

CREATE TRIGGER notices_registered_once_delete
BEFORE DELETE ON notices
FOR EACH ROW EXECUTE FUNCTION notices_registered_once();

CREATE TRIGGER notices_registered_once_truncate
BEFORE TRUNCATE ON notices
FOR EACH STATEMENT EXECUTE FUNCTION notices_registered_once();

-- Events gain the key notice_sha256 (the hash of the notice text in the customer's language, or null).
-- An event's hash covers exactly the keys it was written with, so each row records its shape:
--   1: the keys of migration 0001 (no notice_sha256 key), 2: those and notice_sha256 (with a value or
--   null). The writer always gives the shape; the default 1 is SQLite's (the events written before its
--   migration 0014), kept so that the two schemas agree and such events can be carried over as they are.
ALTER TABLE consent_events ADD COLUMN notice_sha256 text COLLATE "C";
ALTER TABLE consent_events ADD COLUMN shape bigint NOT NULL DEFAULT 1;
-- SQLite's column CHECK names another column: here a table constraint.
ALTER TABLE consent_events ADD CONSTRAINT consent_events_shape_check
    CHECK (shape IN (1, 2) AND (shape = 2 OR notice_sha256 IS NULL));

-- The append-only rule, now over the new columns too (erasure may still set customer_id to NULL).
CREATE OR REPLACE FUNCTION consent_events_append_only_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.customer_id IS NULL
        AND NEW.seq = OLD.seq AND NEW.id = OLD.id AND NEW.at = OLD.at
        AND NEW.customer_ref IS NOT DISTINCT FROM OLD.customer_ref
        AND NEW.action = OLD.action AND NEW.subject = OLD.subject
        AND NEW.value = OLD.value AND NEW.source = OLD.source AND NEW.actor = OLD.actor
        AND NEW.notice_version IS NOT DISTINCT FROM OLD.notice_version AND NEW.evidence = OLD.evidence
        AND NEW.prev_hash = OLD.prev_hash AND NEW.hash = OLD.hash
        AND NEW.notice_sha256 IS NOT DISTINCT FROM OLD.notice_sha256 AND NEW.shape = OLD.shape
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'consent events are append-only' USING ERRCODE = 'restrict_violation',
        DETAIL = format('seq %s: only the erasure''s SET customer_id = NULL may change a ledger row', OLD.seq);
END;
$$;
