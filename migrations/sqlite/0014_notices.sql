-- What they were told (COMPLIANCE items 15, 16, edge 13 and 21; issue 16 item 6).
--
-- Notices: each version's texts, registered once (PUT /v1/notices/{notice_version}) and never changed
-- (triggers refuse UPDATE and DELETE): texts NFC-normalised, with the hex SHA-256 of each text's UTF-8
-- bytes. They hold no personal data, so erasure leaves them.
CREATE TABLE notices (
    version        TEXT PRIMARY KEY,
    texts          TEXT NOT NULL,           -- JSON object: language tag -> text (NFC)
    sha256         TEXT NOT NULL,           -- JSON object: language tag -> hex SHA-256 of the text
    registered_at  TEXT NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER notices_registered_once_update
BEFORE UPDATE ON notices
BEGIN
    SELECT RAISE(ABORT, 'notices are registered once');
END;

CREATE TRIGGER notices_registered_once_delete
BEFORE DELETE ON notices
BEGIN
    SELECT RAISE(ABORT, 'notices are registered once');
END;

-- Events gain the key notice_sha256 (the hash of the notice text in the customer's language, or null).
-- An event's hash covers exactly the keys it was written with, so each row records its shape:
--   1: the keys of migration 0001 (every event written before this migration; no notice_sha256 key),
--   2: those and notice_sha256 (every event written from now on, with a value or null).
-- Old rows keep their bytes and their hashes; the export gives each event with the keys of its shape,
-- so the chain recomputes from the JSONL export alone (domain/ledger.py). A process of the previous
-- version still writes shape 1 (the default), which is what its hashes cover.
ALTER TABLE consent_events ADD COLUMN notice_sha256 TEXT;
ALTER TABLE consent_events ADD COLUMN shape INTEGER NOT NULL DEFAULT 1
    CHECK (shape IN (1, 2) AND (shape = 2 OR notice_sha256 IS NULL));

-- The append-only rule, now over the new columns too (erasure may still set customer_id to NULL).
DROP TRIGGER consent_events_append_only_update;
CREATE TRIGGER consent_events_append_only_update
BEFORE UPDATE ON consent_events
WHEN NOT (
    NEW.customer_id IS NULL
    AND NEW.seq = OLD.seq AND NEW.id = OLD.id AND NEW.at = OLD.at
    AND NEW.customer_ref IS OLD.customer_ref AND NEW.action = OLD.action AND NEW.subject = OLD.subject
    AND NEW.value = OLD.value AND NEW.source = OLD.source AND NEW.actor = OLD.actor
    AND NEW.notice_version IS OLD.notice_version AND NEW.evidence = OLD.evidence
    AND NEW.prev_hash = OLD.prev_hash AND NEW.hash = OLD.hash
    AND NEW.notice_sha256 IS OLD.notice_sha256 AND NEW.shape = OLD.shape
)
BEGIN
    SELECT RAISE(ABORT, 'consent events are append-only');
END;
