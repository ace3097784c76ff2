-- Partners and their articles. Times are Unix nanoseconds (UTC).

CREATE TABLE partners (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    token_hash    TEXT    NOT NULL UNIQUE,
    token_prefix  TEXT    NOT NULL,
    all_sections  INTEGER NOT NULL,
    sections      TEXT    NOT NULL,          -- JSON array of section slugs
    create_time   INTEGER NOT NULL,
    revoke_time   INTEGER
) STRICT;

CREATE TABLE articles (
    partner_id     INTEGER NOT NULL REFERENCES partners (id),
    article_id     TEXT    NOT NULL,
    guid           TEXT    NOT NULL UNIQUE,
    section        TEXT    NOT NULL,
    state          INTEGER NOT NULL,         -- 1 published, 2 retracted
    title          TEXT    NOT NULL,
    subtitle       TEXT    NOT NULL,
    kicker         TEXT    NOT NULL,
    authors        TEXT    NOT NULL,         -- JSON array of names
    summary        TEXT    NOT NULL,
    content_html   TEXT    NOT NULL,
    content_text   TEXT,
    tags           TEXT    NOT NULL,         -- JSON array of tags
    canonical_url  TEXT,
    publish_time   INTEGER NOT NULL,
    update_time    INTEGER,                  -- as the partner sent it
    updated        INTEGER NOT NULL,         -- effective time of the last real edit
    expire_time    INTEGER,
    create_time    INTEGER NOT NULL,
    change_time    INTEGER NOT NULL,         -- last change of anything a feed shows
    retract_time   INTEGER,
    retract_reason TEXT    NOT NULL,
    etag           TEXT    NOT NULL,
    PRIMARY KEY (partner_id, article_id)
) STRICT;

-- Feeds: newest visible articles of one section, or of all.
CREATE INDEX articles_section_feed ON articles (section, state, publish_time);
CREATE INDEX articles_all_feed ON articles (state, publish_time);
-- Last-Modified of a feed, and expiry transitions.
CREATE INDEX articles_section_change ON articles (section, change_time);
CREATE INDEX articles_change ON articles (change_time);
CREATE INDEX articles_section_expire ON articles (section, expire_time) WHERE expire_time IS NOT NULL;
CREATE INDEX articles_expire ON articles (expire_time) WHERE expire_time IS NOT NULL;
-- A partner's own listing.
CREATE INDEX articles_partner_list ON articles (partner_id, publish_time, article_id);
