-- Call rates shared by every replica: one row per partner holding its theoretical arrival
-- time (GCRA, the algorithm of the in-memory limiter a store of its own uses), updated by
-- one atomic statement per call. UNLOGGED: taking a call writes no WAL, so it waits for no
-- fsync; after a crash of the database the table is empty and every partner starts again
-- with a full burst, which is what a restart of a single process does too.
CREATE UNLOGGED TABLE call_rates (
    partner_id  BIGINT  PRIMARY KEY,
    tat         BIGINT  NOT NULL,   -- nanoseconds since the epoch
    admitted    BOOLEAN NOT NULL    -- whether the last call taken was admitted
);

-- Which process logged an event: every connection of a replica names it (the
-- `feedpub.origin` setting), so that a replica following the event log skips its own
-- writes, whose feeds it already marked stale. NULL for events imported or logged by a
-- command.
ALTER TABLE article_events
    ADD COLUMN origin TEXT COLLATE "C"
    DEFAULT NULLIF(current_setting('feedpub.origin', true), '');
