-- The last version of each document built from what the store holds (the index page, the
-- OPML list) and its date: every replica, and the next after a restart, dates the same
-- bytes alike, and a version with other bytes later than the one it replaces (a changed
-- configuration or an upgrade changes them with no article written).
CREATE TABLE document_dates (
    name          TEXT   COLLATE "C" NOT NULL PRIMARY KEY,  -- e.g. index.html
    etag          TEXT   COLLATE "C" NOT NULL,              -- of the identity coding
    last_modified BIGINT NOT NULL                           -- Unix nanoseconds, whole seconds
);
