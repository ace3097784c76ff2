-- The allowance of new author and tag feeds (`[limits] new_names_per_hour`) shared by every
-- replica, as `call_rates` shares the call rate: one row per partner holding its
-- theoretical arrival time (GCRA, the algorithm of the in-memory allowance a store of its
-- own uses), an article's new names taken at once by one atomic statement. UNLOGGED for
-- the same reasons: no WAL, no fsync to wait for; after a crash of the database every
-- partner starts again with its whole allowance, as after a restart of a single process.
CREATE UNLOGGED TABLE name_allowances (
    partner_id  BIGINT  PRIMARY KEY,
    tat         BIGINT  NOT NULL,   -- nanoseconds since the epoch
    admitted    BOOLEAN NOT NULL    -- whether the last names taken were admitted
);
