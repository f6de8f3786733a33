-- Foundation: API keys, topics, customers with contacts and preferences, and the consent ledger.

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'marketing', 'auditor')),
    key_hash    TEXT NOT NULL UNIQUE,      -- sha256 hex of the key; the key itself is never stored
    key_prefix  TEXT NOT NULL,             -- the first characters, to tell keys apart in listings
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE topics (
    id           TEXT PRIMARY KEY,
    category     TEXT NOT NULL CHECK (category IN ('marketing', 'transactional')),
    names        TEXT NOT NULL,            -- JSON object: locale -> name
    descriptions TEXT NOT NULL,            -- JSON object: locale -> description
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE customers (
    id            TEXT PRIMARY KEY,
    ref           TEXT NOT NULL UNIQUE,    -- keyed pseudonym (HMAC-SHA256 of the id)
    timezone      TEXT NOT NULL,
    locale        TEXT NOT NULL,
    country       TEXT NOT NULL,
    channel       TEXT CHECK (channel IN ('email', 'sms', 'push', 'voice', 'whatsapp')),
    quiet_start   TEXT,
    quiet_end     TEXT,
    max_per_week  INTEGER,
    paused_until  TEXT,                    -- RFC 3339 UTC
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

CREATE TABLE contacts (
    customer_id  TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    channel      TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'voice', 'whatsapp')),
    address      TEXT NOT NULL,
    address_ref  TEXT NOT NULL,            -- keyed hash, joined with suppressions
    PRIMARY KEY (customer_id, channel)
) WITHOUT ROWID;
CREATE INDEX contacts_by_address_ref ON contacts (address_ref);

CREATE TABLE customer_topics (
    customer_id  TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    topic_id     TEXT NOT NULL REFERENCES topics (id),
    PRIMARY KEY (customer_id, topic_id)
) WITHOUT ROWID;
CREATE INDEX customer_topics_by_topic ON customer_topics (topic_id, customer_id);

-- The consent ledger. Append-only: triggers refuse UPDATE and DELETE, except that erasure may set
-- customer_id to NULL (customer_id lies outside the hash).
CREATE TABLE consent_events (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL,
    at              TEXT NOT NULL,
    customer_id     TEXT,
    customer_ref    TEXT,
    action          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    value           TEXT NOT NULL,          -- JSON
    source          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    notice_version  TEXT,
    evidence        TEXT NOT NULL,          -- JSON object
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);
CREATE INDEX consent_events_by_customer ON consent_events (customer_ref, seq);
CREATE INDEX consent_events_by_at ON consent_events (at);

CREATE TRIGGER consent_events_append_only_update
BEFORE UPDATE ON consent_events
WHEN NOT (
    NEW.customer_id IS NULL
    AND NEW.seq = OLD.seq AND NEW.id = OLD.id AND NEW.at = OLD.at
    AND NEW.customer_ref IS OLD.customer_ref AND NEW.action = OLD.action AND NEW.subject = OLD.subject
    AND NEW.value = OLD.value AND NEW.source = OLD.source AND NEW.actor = OLD.actor
    AND NEW.notice_version IS OLD.notice_version AND NEW.evidence = OLD.evidence
    AND NEW.prev_hash = OLD.prev_hash AND NEW.hash = OLD.hash
)
BEGIN
    SELECT RAISE(ABORT, 'consent events are append-only');
END;

CREATE TRIGGER consent_events_append_only_delete
BEFORE DELETE ON consent_events
BEGIN
    SELECT RAISE(ABORT, 'consent events are append-only');
END;

-- The head of the chain, kept apart from the events so that removing the newest events is caught.
CREATE TABLE ledger_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
