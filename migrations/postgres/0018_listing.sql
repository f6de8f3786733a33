-- Keyset pagination of the lists (API.md "Lists"): GET /v1/customers?channel= walks (channel, id) in
-- id order; GET /v1/customers/{id}/messages walks one customer's outbox rows in campaign order. (The
-- topic filter walks customer_topics_by_topic (topic_id, customer_id), which exists since 0001.)
CREATE INDEX customers_by_channel ON customers (channel, id);
CREATE INDEX outbox_by_customer_campaign ON outbox (customer_id, campaign_id);
-- outbox (customer_id, campaign_id) serves every lookup by customer that 0006's index served.
DROP INDEX outbox_by_customer;
