-- Customer links die with the person they were minted for (API.md "Customer pages"; issue 9, item 8).
-- Every link's signed claims carry the customer's link generation, a random value set when the customer
-- is created and never changed; a link opens the customer only when the two match. Erasure deletes the
-- row, so a new customer with the same customer_id (and therefore the same ref) gets a new generation
-- and the erased person's links stop working. (The default '' is SQLite's, for the customers that
-- existed before its migration; every customer of a PostgreSQL database is created with a generation.)
ALTER TABLE customers ADD COLUMN link_gen text COLLATE "C" NOT NULL DEFAULT '';
