-- The last document of each topic whose WebSub deliveries were claimed, kept after they
-- end: a process killed after writing a feed's new files and before claiming their
-- delivery leaves this older than what the feed shows, and the next process delivers
-- what the feed shows (the new files match what it builds, so it sees no change).
CREATE TABLE websub_last_claims (
    topic       TEXT    NOT NULL PRIMARY KEY,   -- feed path, e.g. politics/atom.xml
    document    TEXT    NOT NULL                -- as in websub_deliveries
) STRICT;
