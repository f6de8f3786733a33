-- Double opt-in (issue 13, item 5). A topic may require that a customer confirm it by email before any
-- marketing on it reaches them: topics.double_opt_in (0/1). When a customer gains such a topic its
-- customer_topics row is written with pending = 1 (granted, awaiting confirmation) and a confirmation
-- mail is queued in the same transaction (notifications kind 'email_double_opt_in', naming the topic);
-- confirming sets pending to 0. A topic that becomes double_opt_in later leaves its existing rows as
-- they are (pending 0: nobody is un-confirmed); one that stops being double_opt_in leaves waiting rows
-- waiting (they confirm with their link or by being granted again). The gate reads the pending topics
-- from the customers row, kept by the topic triggers (recreated here to keep both strings).

ALTER TABLE topics ADD COLUMN double_opt_in INTEGER NOT NULL DEFAULT 0 CHECK (double_opt_in IN (0, 1));
ALTER TABLE customer_topics ADD COLUMN pending INTEGER NOT NULL DEFAULT 0 CHECK (pending IN (0, 1));
ALTER TABLE customers ADD COLUMN pending_topics TEXT NOT NULL DEFAULT ',';  -- ",news," awaiting confirmation

DROP TRIGGER gate_row_topic_added;
DROP TRIGGER gate_row_topic_removed;

CREATE TRIGGER gate_row_topic_added AFTER INSERT ON customer_topics BEGIN
    UPDATE customers SET
        topic_list = ',' || coalesce((SELECT group_concat(topic_id, ',') FROM customer_topics WHERE customer_id = NEW.customer_id), '') || ',',
        pending_topics = ',' || coalesce((SELECT group_concat(topic_id, ',') FROM customer_topics WHERE customer_id = NEW.customer_id AND pending = 1), '') || ','
    WHERE id = NEW.customer_id;
END;

CREATE TRIGGER gate_row_topic_removed AFTER DELETE ON customer_topics BEGIN
    UPDATE customers SET
        topic_list = ',' || coalesce((SELECT group_concat(topic_id, ',') FROM customer_topics WHERE customer_id = OLD.customer_id), '') || ',',
        pending_topics = ',' || coalesce((SELECT group_concat(topic_id, ',') FROM customer_topics WHERE customer_id = OLD.customer_id AND pending = 1), '') || ','
    WHERE id = OLD.customer_id;
END;

-- notifications (migration 0015) gains the kind 'email_double_opt_in' and the topic it is about ('' for
-- the SMS opt-in): SQLite changes a CHECK by rebuilding the table (nothing references it).
CREATE TABLE notifications_new (
    id              INTEGER PRIMARY KEY,
    customer_id     TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('sms_opt_in', 'email_double_opt_in')),
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed', 'suppressed', 'cancelled')),
    not_before_us   INTEGER NOT NULL,
    lease_until_us  INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    sent_at         TEXT,
    topic           TEXT NOT NULL DEFAULT ''
);
INSERT INTO notifications_new (id, customer_id, kind, status, not_before_us, lease_until_us, attempts,
    last_error, created_at, updated_at, sent_at)
SELECT id, customer_id, kind, status, not_before_us, lease_until_us, attempts, last_error, created_at,
    updated_at, sent_at FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
-- At most one waiting per customer, kind and topic: granting again before it left adds none.
CREATE UNIQUE INDEX notifications_waiting ON notifications (customer_id, kind, topic) WHERE status = 'queued';
CREATE INDEX notifications_due ON notifications (not_before_us) WHERE status = 'queued';
CREATE INDEX notifications_by_customer ON notifications (customer_id);
