-- The auditor's answers (issue 13): every decision-log row says what asked for it (kind: an approval,
-- a send, or the dispatcher's re-gate right before a hand-off) and which rule instance decided
-- (explain: JSON, API.md "Auditor's answers"; NULL when it is the reason itself, {"rule": reason}).
ALTER TABLE decisions ADD COLUMN kind TEXT NOT NULL DEFAULT 'approval'
    CHECK (kind IN ('approval', 'send', 'regate'));
ALTER TABLE decisions ADD COLUMN explain TEXT;
