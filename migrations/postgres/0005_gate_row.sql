-- The gate reads one row per recipient: the channels a customer has contacts for, which of those
-- contacts are suppressed, and the customer's topics are kept on the customers row by triggers that
-- recompute them from the source tables (contacts, customer_topics, suppressions) on every change.
--
-- The strings are SQLite's: its group_concat follows the primary keys it searches, contacts
-- (customer_id, channel) and customer_topics (customer_id, topic_id), so each list is in channel or
-- topic_id order, in bytes ("C"), joined with ','; no rows gives NULL, so '' (and topic_list ',,').
-- PostgreSQL runs AFTER ROW triggers at the end of the statement instead of after each row: each
-- recomputes from the tables as they then are, so a statement over many rows ends with the same values.
-- No backfill (SQLite's file fills existing rows): a PostgreSQL database is created with this file.
-- Each function keeps the search_path it was created with (SET ... FROM CURRENT: the store's schema),
-- so a session with another search_path (psql naming the tables with their schema) updates the right
-- customers table, and no table of another schema can stand in for one of these.

ALTER TABLE customers ADD COLUMN contact_channels text COLLATE "C" NOT NULL DEFAULT '';     -- "email,sms"
ALTER TABLE customers ADD COLUMN suppressed_channels text COLLATE "C" NOT NULL DEFAULT '';  -- "sms"
ALTER TABLE customers ADD COLUMN topic_list text COLLATE "C" NOT NULL DEFAULT ',';          -- ",news,offers,"

CREATE FUNCTION gate_row_contact_added() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        contact_channels = coalesce((SELECT string_agg(channel, ',' ORDER BY channel) FROM contacts
            WHERE customer_id = NEW.customer_id), ''),
        suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref
            WHERE k.customer_id = NEW.customer_id), '')
    WHERE id = NEW.customer_id;
    RETURN NULL;
END;
$$;

CREATE FUNCTION gate_row_contact_removed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        contact_channels = coalesce((SELECT string_agg(channel, ',' ORDER BY channel) FROM contacts
            WHERE customer_id = OLD.customer_id), ''),
        suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref
            WHERE k.customer_id = OLD.customer_id), '')
    WHERE id = OLD.customer_id;
    RETURN NULL;
END;
$$;

CREATE FUNCTION gate_row_topic_added() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        topic_list = ',' || coalesce((SELECT string_agg(topic_id, ',' ORDER BY topic_id) FROM customer_topics
            WHERE customer_id = NEW.customer_id), '') || ','
    WHERE id = NEW.customer_id;
    RETURN NULL;
END;
$$;

CREATE FUNCTION gate_row_topic_removed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        topic_list = ',' || coalesce((SELECT string_agg(topic_id, ',' ORDER BY topic_id) FROM customer_topics
            WHERE customer_id = OLD.customer_id), '') || ','
    WHERE id = OLD.customer_id;
    RETURN NULL;
END;
$$;

CREATE FUNCTION gate_row_suppression_added() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (SELECT customer_id FROM contacts WHERE channel = NEW.channel AND address_ref = NEW.address_ref);
    RETURN NULL;
END;
$$;

CREATE FUNCTION gate_row_suppression_removed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customers SET
        suppressed_channels = coalesce((SELECT string_agg(k.channel, ',' ORDER BY k.channel) FROM contacts k
            JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref
            WHERE k.customer_id = customers.id), '')
    WHERE id IN (SELECT customer_id FROM contacts WHERE channel = OLD.channel AND address_ref = OLD.address_ref);
    RETURN NULL;
END;
$$;

CREATE TRIGGER gate_row_contact_added AFTER INSERT ON contacts
FOR EACH ROW EXECUTE FUNCTION gate_row_contact_added();

CREATE TRIGGER gate_row_contact_removed AFTER DELETE ON contacts
FOR EACH ROW EXECUTE FUNCTION gate_row_contact_removed();

CREATE TRIGGER gate_row_topic_added AFTER INSERT ON customer_topics
FOR EACH ROW EXECUTE FUNCTION gate_row_topic_added();

CREATE TRIGGER gate_row_topic_removed AFTER DELETE ON customer_topics
FOR EACH ROW EXECUTE FUNCTION gate_row_topic_removed();

CREATE TRIGGER gate_row_suppression_added AFTER INSERT ON suppressions
FOR EACH ROW EXECUTE FUNCTION gate_row_suppression_added();

CREATE TRIGGER gate_row_suppression_removed AFTER DELETE ON suppressions
FOR EACH ROW EXECUTE FUNCTION gate_row_suppression_removed();
