-- Double opt-in (issue 13, item 5). A topic may require that a customer confirm it by email before any
-- marketing on it reaches them: topics.double_opt_in (0/1). When a customer gains such a topic its
-- customer_topics row is written with pending = 1 (granted, awaiting confirmation) and a confirmation
-- mail is queued in the same transaction (notifications kind 'email_double_opt_in', naming the topic);
-- confirming sets pending to 0. A topic that becomes double_opt_in later leaves its existing rows as
-- they are (pending 0: nobody is un-confirmed); one that stops being double_opt_in leaves waiting rows
-- waiting (they confirm with their link or by being granted again). The gate reads the pending topics
-- from the customers row, kept by the topic triggers (their functions replaced here to keep both).

ALTER TABLE topics ADD COLUMN double_opt_in bigint NOT NULL DEFAULT 0 CHECK (double_opt_in IN (0, 1));
ALTER TABLE customer_topics ADD COLUMN pending bigint NOT NULL DEFAULT 0 CHECK (pending IN (0, 1));
ALTER TABLE customers ADD COLUMN pending_topics text COLLATE "C" NOT NULL DEFAULT ',';  -- ",news," awaiting confirmation

CREATE OR REPLACE FUNCTION gate_row_topic_added() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        topic_list = ',' || coalesce((SELECT string_agg(topic_id, ',' ORDER BY topic_id) FROM customer_topics
            WHERE customer_id = NEW.customer_id), '') || ',',
        pending_topics = ',' || coalesce((SELECT string_agg(topic_id, ',' ORDER BY topic_id) FROM customer_topics
            WHERE customer_id = NEW.customer_id AND pending = 1), '') || ','
    WHERE id = NEW.customer_id;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION gate_row_topic_removed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        topic_list = ',' || coalesce((SELECT string_agg(topic_id, ',' ORDER BY topic_id) FROM customer_topics
            WHERE customer_id = OLD.customer_id), '') || ',',
        pending_topics = ',' || coalesce((SELECT string_agg(topic_id, ',' ORDER BY topic_id) FROM customer_topics
            WHERE customer_id = OLD.customer_id AND pending = 1), '') || ','
    WHERE id = OLD.customer_id;
    RETURN NULL;
END;
$$;

-- notifications (migration 0015) gains the kind 'email_double_opt_in' and the topic it is about ('' for
-- the SMS opt-in).
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('sms_opt_in', 'email_double_opt_in'));
ALTER TABLE notifications ADD COLUMN topic text COLLATE "C" NOT NULL DEFAULT '';
-- At most one waiting per customer, kind and topic: granting again before it left adds none.
DROP INDEX notifications_waiting;
CREATE UNIQUE INDEX notifications_waiting ON notifications (customer_id, kind, topic) WHERE status = 'queued';
