-- Partner management and the audit log. Times are Unix nanoseconds (UTC).

-- The right to publish under embargo and to see embargoed articles. Partners created
-- before it existed could do both, and keep that right.
ALTER TABLE partners ADD COLUMN embargoed INTEGER NOT NULL DEFAULT 1;
-- When the token was last replaced (`partner rotate`).
ALTER TABLE partners ADD COLUMN rotate_time INTEGER;

-- Every mutation: publish, retract and partner management, written by the writer in the
-- same transaction as the change it records.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    partner     TEXT    NOT NULL,            -- partners.name (names are never reused)
    operation   TEXT    NOT NULL,            -- publish, retract, partner.add, …
    article_id  TEXT,
    peer        TEXT,                        -- remote address; NULL for the CLI
    outcome     TEXT    NOT NULL,            -- ok, unchanged, not_found, …
    detail      TEXT    NOT NULL
) STRICT;

-- `feedpub audit`, newest first, optionally of one partner.
CREATE INDEX audit_log_time ON audit_log (time);
CREATE INDEX audit_log_partner_time ON audit_log (partner, time);
