-- Preference-change webhooks (issue 12 item 3; API.md "Webhooks"). A subscription (webhooks) is a URL, the
-- signing secret (Standard Webhooks, "whsec_<base64>": kept as given, since signing needs it; never
-- returned nor logged) and the event sources it wants (NULL: all; else ',api,import,' with a comma either
-- side of each, so the trigger matches with one position()).
CREATE TABLE webhooks (
    id          text COLLATE "C" PRIMARY KEY,
    url         text COLLATE "C" NOT NULL,
    secret      text COLLATE "C" NOT NULL,
    sources     text COLLATE "C",
    created_at  text COLLATE "C" NOT NULL,
    updated_at  text COLLATE "C" NOT NULL
);

-- The durable outbox of deliveries, written IN THE TRANSACTION of the event by the trigger below: every
-- write path (page saves, one-click, STOP, bounces, complaints, API, import, erasure) appends through
-- consent_events, so none can forget it. A row holds no customer id (customer_ref is the pseudonym, or ''
-- for an event without one: per-customer order is kept by it); the payload is built when it leaves, from
-- the stored event (after an erasure that holds the pseudonym only). status: pending (due at
-- not_before_us; leased until lease_until_us while in flight), delivered, failed (a 4xx other than 408 and
-- 429, or given up after PREFCENTER_WEBHOOK_GIVE_UP_SECONDS). Rows go with their subscription.
CREATE TABLE webhook_deliveries (
    webhook_id      text COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_seq       bigint NOT NULL,
    customer_ref    text COLLATE "C" NOT NULL,
    status          text COLLATE "C" NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        bigint NOT NULL DEFAULT 0,
    not_before_us   bigint NOT NULL DEFAULT 0,   -- microseconds since the epoch, UTC
    lease_until_us  bigint,
    last_status     bigint,                      -- the receiver's last HTTP status (NULL: none, e.g. refused)
    last_error      text COLLATE "C",
    delivered_at    text COLLATE "C",
    updated_at      text COLLATE "C",
    PRIMARY KEY (webhook_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (event_seq) WHERE status = 'pending';
-- A customer's head: no earlier pending row of the same subscription and customer.
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, customer_ref, event_seq)
    WHERE status = 'pending';
-- The failed ones, counted for /metrics.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (webhook_id) WHERE status = 'failed';

CREATE FUNCTION webhook_deliveries_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_seq, customer_ref, status, attempts, not_before_us)
    SELECT id, NEW.seq, coalesce(NEW.customer_ref, ''), 'pending', 0, 0 FROM webhooks
    WHERE sources IS NULL OR position(',' || NEW.source || ',' in sources) > 0;
    RETURN NULL;
END;
$$;

CREATE TRIGGER webhook_deliveries_fan_out
AFTER INSERT ON consent_events
FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_fan_out();
