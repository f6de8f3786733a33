-- Inbound SMS that matched no keyword (COMPLIANCE item 23 and edge 15: "other text answers none and is
-- kept for a person to review" — e.g. STOP in another language). The number is kept only as its keyed
-- hash; erasing a customer deletes the texts that came from their numbers.
CREATE TABLE inbound_review (
    id           INTEGER PRIMARY KEY,
    channel      TEXT NOT NULL,
    address_ref  TEXT NOT NULL,
    text         TEXT NOT NULL,
    received_at  TEXT NOT NULL
);
CREATE INDEX inbound_review_by_address ON inbound_review (address_ref);
