-- Preference-change webhooks (issue 12 item 3; API.md "Webhooks"). A subscription (webhooks) is a URL, the
-- signing secret (Standard Webhooks, "whsec_<base64>": kept as given, since signing needs it; never
-- returned nor logged) and the event sources it wants (NULL: all; else ',api,import,' with a comma either
-- side of each, so the trigger matches with one instr()).
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    sources     TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- The durable outbox of deliveries, written IN THE TRANSACTION of the event by the trigger below: every
-- write path (page saves, one-click, STOP, bounces, complaints, API, import, erasure) appends through
-- consent_events, so none can forget it. A row holds no customer id (customer_ref is the pseudonym, or ''
-- for an event without one: per-customer order is kept by it); the payload is built when it leaves, from
-- the stored event (after an erasure that holds the pseudonym only). status: pending (due at
-- not_before_us; leased until lease_until_us while in flight), delivered, failed (a 4xx other than 408 and
-- 429, or given up after PREFCENTER_WEBHOOK_GIVE_UP_SECONDS). Rows go with their subscription.
CREATE TABLE webhook_deliveries (
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_seq       INTEGER NOT NULL,
    customer_ref    TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before_us   INTEGER NOT NULL DEFAULT 0,  -- microseconds since the epoch, UTC
    lease_until_us  INTEGER,
    last_status     INTEGER,                     -- the receiver's last HTTP status (NULL: none, e.g. refused)
    last_error      TEXT,
    delivered_at    TEXT,
    updated_at      TEXT,
    PRIMARY KEY (webhook_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (event_seq) WHERE status = 'pending';
-- A customer's head: no earlier pending row of the same subscription and customer.
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, customer_ref, event_seq)
    WHERE status = 'pending';
-- The failed ones, counted for /metrics.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (webhook_id) WHERE status = 'failed';

CREATE TRIGGER webhook_deliveries_fan_out
AFTER INSERT ON consent_events
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_seq, customer_ref, status, attempts, not_before_us)
    SELECT id, NEW.seq, coalesce(NEW.customer_ref, ''), 'pending', 0, 0 FROM webhooks
    WHERE sources IS NULL OR instr(sources, ',' || NEW.source || ',') > 0;
END;
