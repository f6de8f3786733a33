-- The deployment-wide token bucket of each channel (store/postgres/buckets.py, SharedBucket): with
-- PostgreSQL several dispatchers (serve --workers N, more `prefcenter dispatch` processes) share one
-- database, so a channel's rate (policy.rates) is a ceiling only when they all take their tokens from one
-- row. One statement per attempt refills the row by the time passed on the database server's clock
-- (clock_timestamp(), so every process shares one time base) up to one second's burst, and takes a chunk
-- when enough is there. The rate and burst are the taker's (the policy's), not stored: after a policy
-- reload the next take refills at the new rate.
--
-- PostgreSQL only, by design: SQLite has no twin of this file. Its one dispatcher per database (the
-- dispatcher flock) keeps its buckets in process (messaging/ratelimit.py), and those already are the
-- deployment's ceiling.
CREATE TABLE rate_buckets (
    channel   text COLLATE "C" PRIMARY KEY,
    tokens    double precision NOT NULL,  -- as of stamp_us, at most the burst
    stamp_us  bigint NOT NULL             -- the server clock of the last take, microseconds since the epoch
);
