-- Retention (issue 14): what the background pruner walks, so that each of its small deletes costs the
-- rows it deletes, never a scan of a table that grows with history.
-- Each customer's reservations in time order: the gate seeks the ones inside its caps' windows.
CREATE INDEX reservations_by_time ON reservations (customer_id, at_us);
-- A campaign's reservations in time order: an ended campaign's go once older than the longest cap
-- window plus the grace, an open campaign's with the decision log.
CREATE INDEX reservations_by_campaign ON reservations (campaign_id, at_us);
-- The decision log in time order: rows older than the retention go, oldest first.
CREATE INDEX decisions_by_at ON decisions (at);
-- How far the pruner has deleted the decision log: `policy replay` rebuilds reservations from that log,
-- so it knows which decisions it can no longer replay with every reservation they saw.
CREATE TABLE retention_marks (
    what    text COLLATE "C" PRIMARY KEY,  -- 'decisions'
    before  text COLLATE "C" NOT NULL     -- rows with `at` before this (format_at) may have been deleted
);
