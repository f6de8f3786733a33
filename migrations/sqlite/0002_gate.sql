-- The gate: campaigns, send reservations, the decision log, and the suppression list it consults.

CREATE TABLE campaigns (
    id          TEXT PRIMARY KEY,
    topic       TEXT NOT NULL REFERENCES topics (id),
    channels    TEXT NOT NULL,             -- JSON array, in the campaign's order
    send_by     TEXT,                      -- RFC 3339 UTC, or NULL
    content     TEXT NOT NULL,             -- JSON object: channel -> content
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX campaigns_by_topic ON campaigns (topic);

-- One reservation per (customer, campaign): the instant an allow counted against the caps.
CREATE TABLE reservations (
    customer_id  TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    campaign_id  TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    at_us        INTEGER NOT NULL,          -- microseconds since the epoch, UTC
    channel      TEXT NOT NULL,
    marketing    INTEGER NOT NULL CHECK (marketing IN (0, 1)),
    PRIMARY KEY (customer_id, campaign_id)
) WITHOUT ROWID;

-- Every real decision, with the policy version that made it (until the customer is erased).
CREATE TABLE decisions (
    id              INTEGER PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    campaign_id     TEXT NOT NULL,
    at              TEXT NOT NULL,
    verdict         TEXT NOT NULL,
    reason          TEXT NOT NULL,
    channel         TEXT,
    not_before      TEXT,
    policy_version  TEXT NOT NULL
);
CREATE INDEX decisions_by_customer ON decisions (customer_id, campaign_id);

-- Suppressed addresses, only as keyed hashes (so erasure neither leaves the address nor lifts them).
CREATE TABLE suppressions (
    channel      TEXT NOT NULL,
    address_ref  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    since        TEXT NOT NULL,
    PRIMARY KEY (channel, address_ref)
) WITHOUT ROWID;
