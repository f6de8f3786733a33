-- Throttled messaging: the durable outbox the dispatcher sends from.
--
-- One row per (campaign, customer). status: queued (allowed, waiting for its turn), deferred (waiting
-- for not_before, no reservation yet unless a retry made one), sent, failed, suppressed, withdrawn.
-- A dispatcher claims a row by setting lease_until_us (and commits) before it talks to any transport;
-- an expired lease makes the row claimable again, so nothing queued is ever lost.
CREATE TABLE outbox (
    campaign_id     text COLLATE "C" NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    customer_id     text COLLATE "C" NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    channel         text COLLATE "C" NOT NULL,
    status          text COLLATE "C" NOT NULL CHECK (status IN
                        ('queued', 'deferred', 'sent', 'failed', 'suppressed', 'withdrawn')),
    not_before_us   bigint NOT NULL,           -- microseconds since the epoch, UTC
    lease_until_us  bigint,                    -- claimed by a dispatcher until then
    attempts        bigint NOT NULL DEFAULT 0, -- hand-offs to a transport (each committed before it)
    last_error      text COLLATE "C",
    created_at      text COLLATE "C" NOT NULL,
    updated_at      text COLLATE "C" NOT NULL,
    sent_at         text COLLATE "C",
    PRIMARY KEY (campaign_id, customer_id)
);
CREATE INDEX outbox_due ON outbox (not_before_us) WHERE status IN ('queued', 'deferred');
CREATE INDEX outbox_by_customer ON outbox (customer_id);
