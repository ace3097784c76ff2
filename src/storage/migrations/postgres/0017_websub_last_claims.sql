-- The last document of each topic whose WebSub delivery a replica claimed, kept after the
-- claim itself is forgotten: a replica killed after writing a feed's new files and before
-- claiming their delivery, with no other replica running to build and claim them, leaves
-- this older than what the feed shows, and the next replica to start delivers what it
-- shows (its files match what that replica builds, so it hears no change).
CREATE TABLE websub_last_claims (
    topic       TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- feed path, e.g. politics/atom.xml
    document    TEXT COLLATE "C" NOT NULL               -- as websub_deliveries.etag
);
