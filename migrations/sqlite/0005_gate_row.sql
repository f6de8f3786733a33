-- The gate reads one row per recipient: the channels a customer has contacts for, which of those
-- contacts are suppressed, and the customer's topics are kept on the customers row by triggers that
-- recompute them from the source tables (contacts, customer_topics, suppressions) on every change.

ALTER TABLE customers ADD COLUMN contact_channels TEXT NOT NULL DEFAULT '';     -- "email,sms"
ALTER TABLE customers ADD COLUMN suppressed_channels TEXT NOT NULL DEFAULT '';  -- "sms"
ALTER TABLE customers ADD COLUMN topic_list TEXT NOT NULL DEFAULT ',';          -- ",offers,news,"

CREATE TRIGGER gate_row_contact_added AFTER INSERT ON contacts BEGIN
    UPDATE customers SET
        contact_channels = coalesce((SELECT group_concat(channel) FROM contacts WHERE customer_id = NEW.customer_id), ''),
        suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref
            WHERE k.customer_id = NEW.customer_id), '')
    WHERE id = NEW.customer_id;
END;

CREATE TRIGGER gate_row_contact_removed AFTER DELETE ON contacts BEGIN
    UPDATE customers SET
        contact_channels = coalesce((SELECT group_concat(channel) FROM contacts WHERE customer_id = OLD.customer_id), ''),
        suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref
            WHERE k.customer_id = OLD.customer_id), '')
    WHERE id = OLD.customer_id;
END;

CREATE TRIGGER gate_row_topic_added AFTER INSERT ON customer_topics BEGIN
    UPDATE customers SET
        topic_list = ',' || coalesce((SELECT group_concat(topic_id, ',') FROM customer_topics WHERE customer_id = NEW.customer_id), '') || ','
    WHERE id = NEW.customer_id;
END;

CREATE TRIGGER gate_row_topic_removed AFTER DELETE ON customer_topics BEGIN
    UPDATE customers SET
        topic_list = ',' || coalesce((SELECT group_concat(topic_id, ',') FROM customer_topics WHERE customer_id = OLD.customer_id), '') || ','
    WHERE id = OLD.customer_id;
END;

CREATE TRIGGER gate_row_suppression_added AFTER INSERT ON suppressions BEGIN
    UPDATE customers SET
        suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (SELECT customer_id FROM contacts WHERE channel = NEW.channel AND address_ref = NEW.address_ref);
END;

CREATE TRIGGER gate_row_suppression_removed AFTER DELETE ON suppressions BEGIN
    UPDATE customers SET
        suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (SELECT customer_id FROM contacts WHERE channel = OLD.channel AND address_ref = OLD.address_ref);
END;

-- Backfill the rows that exist.
UPDATE customers SET
    contact_channels = coalesce((SELECT group_concat(channel) FROM contacts WHERE customer_id = customers.id), ''),
    suppressed_channels = coalesce((SELECT group_concat(k.channel) FROM contacts k
        JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref
        WHERE k.customer_id = customers.id), ''),
    topic_list = ',' || coalesce((SELECT group_concat(topic_id, ',') FROM customer_topics WHERE customer_id = customers.id), '') || ',';
