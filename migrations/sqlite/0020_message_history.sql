-- One trace per message (issue 13): the durable history of a message's life after it was queued.
--
-- The dispatcher appends these rows in the transactions that already commit the attempt (``handoff``,
-- before the transport is called) and the outcome (the server's answer and what it did to the message),
-- so a history row exists exactly when its outbox change was committed. ``queued`` and ``deferred`` at
-- send time are not stored here: the trace derives them from the decision log rows of kind ``send``.
-- event: handoff (detail: attempt, channel), accepted (code), temporary_failure / permanent_failure
-- (code, the REDACTED reply text), sent, failed, withdrawn / suppressed (re-gate deny or a bounce),
-- deferred (re-gate defer: not_before). detail is a JSON object or NULL; it never holds an address.
-- The rows go with the customer (erasure) and with the campaign, like the outbox.
CREATE TABLE message_history (
    id           INTEGER PRIMARY KEY,
    campaign_id  TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    customer_id  TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    at           TEXT NOT NULL,
    event        TEXT NOT NULL CHECK (event IN
                     ('handoff', 'accepted', 'temporary_failure', 'permanent_failure', 'sent', 'failed',
                      'withdrawn', 'suppressed', 'deferred')),
    detail       TEXT                       -- JSON object
);
CREATE INDEX message_history_by_message ON message_history (customer_id, campaign_id, id);
CREATE INDEX message_history_by_campaign ON message_history (campaign_id);
