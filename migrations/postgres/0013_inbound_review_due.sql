-- Texts kept for review get resolved (COMPLIANCE item 23, edge 16: a person decides within 10 US business
-- days of receipt). The due date is not stored: it is a pure function of received_at
-- (prefcenter/domain/business_days.py), computed when read. A resolved text is kept (who decided what,
-- and when) until the erasure of a customer holding its number deletes it.
ALTER TABLE inbound_review ADD COLUMN resolved_at text COLLATE "C";
ALTER TABLE inbound_review ADD COLUMN resolution text COLLATE "C" CHECK (resolution IN ('stop', 'none'));
ALTER TABLE inbound_review ADD COLUMN resolved_by text COLLATE "C";
-- open texts, oldest first (the review list and the overdue gauge)
CREATE INDEX inbound_review_open ON inbound_review (received_at) WHERE resolved_at IS NULL;
