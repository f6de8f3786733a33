-- COMPLIANCE item 26 (CTIA): the SMS opt-in confirmation, durable. A row is written in the transaction of
-- the preference change that made a customer's channel sms with a marketing topic; the dispatcher sends
-- it through the SMS transport at the policy's sms rate. status: queued (waiting for not_before; after a
-- temporary failure, retried with backoff), sent, failed (a permanent failure, or out of attempts),
-- suppressed (the number is suppressed when it would leave: a STOP wins), cancelled (the opt-in ended, or
-- there is no number, before it left). The text is rendered when it leaves, never stored, and the row
-- holds no number: rows go with their customer (erasure deletes them, pending or not).
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    customer_id     TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('sms_opt_in')),
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed', 'suppressed', 'cancelled')),
    not_before_us   INTEGER NOT NULL,           -- microseconds since the epoch, UTC
    lease_until_us  INTEGER,                    -- claimed by the dispatcher until then
    attempts        INTEGER NOT NULL DEFAULT 0, -- hand-offs to the transport
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    sent_at         TEXT
);
-- At most one waiting confirmation per customer and kind: opting in again before it left adds none.
CREATE UNIQUE INDEX notifications_waiting ON notifications (customer_id, kind) WHERE status = 'queued';
CREATE INDEX notifications_due ON notifications (not_before_us) WHERE status = 'queued';
CREATE INDEX notifications_by_customer ON notifications (customer_id);
