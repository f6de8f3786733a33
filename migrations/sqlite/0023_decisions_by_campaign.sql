-- The decision log indexed campaign first (issue 14). A gate call logs one row per customer of one
-- campaign: under (campaign_id, customer_id) its rows go side by side into that campaign's part of
-- the index, so what a call writes stays the same however long the log grows. Under the index this
-- replaces, (customer_id, campaign_id), each row went beside its customer's older rows: a call wrote
-- into nearly every leaf page, more of them every day. One customer's rows are read one seek per
-- logged campaign (store/decision_log.py).
CREATE INDEX decisions_by_campaign ON decisions (campaign_id, customer_id);
DROP INDEX decisions_by_customer;
