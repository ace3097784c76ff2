-- The last version of each document built from what the store holds (the index page, the
-- OPML list) and its date: a restart, or another process on the store, dates the same
-- bytes alike, and a version with other bytes later than the one it replaces (a changed
-- configuration or an upgrade changes them with no article written).
CREATE TABLE document_dates (
    name          TEXT    NOT NULL PRIMARY KEY,   -- e.g. index.html
    etag          TEXT    NOT NULL,               -- of the identity coding
    last_modified INTEGER NOT NULL                -- Unix nanoseconds, whole seconds
) STRICT;
