-- Customer links die with the person they were minted for (API.md "Customer pages"; issue 9, item 8).
-- Every link's signed claims carry the customer's link generation, a random value set when the customer
-- is created and never changed; a link opens the customer only when the two match. Erasure deletes the
-- row, so a new customer with the same customer_id (and therefore the same ref) gets a new generation
-- and the erased person's links stop working.
-- Customers created before this migration keep '': links already in sent emails carry no generation,
-- which means '', so they keep working for the same person until they expire.
ALTER TABLE customers ADD COLUMN link_gen TEXT NOT NULL DEFAULT '';
