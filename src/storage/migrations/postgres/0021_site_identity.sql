-- What the feeds' Atom ids begin with: the site URL of the first server to build feeds
-- from this database, kept when the site moves (RFC 4287: an id never changes, even when
-- its document is relocated). One row.
CREATE TABLE site_identity (
    one          BIGINT NOT NULL PRIMARY KEY CHECK (one = 1),
    atom_id_base TEXT   NOT NULL
);
