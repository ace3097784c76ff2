-- The partner API: every version of an article, the event log partners follow, request
-- ids that make mutations safe to retry, and the embargoes still to lift. The writer fills
-- them in the same transaction as the change. Times are Unix nanoseconds (UTC).

-- The version of the content in `articles`, from 1.
ALTER TABLE articles ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

-- Past versions: the content an article had before a publish changed it. The current
-- version is the row in `articles`.
CREATE TABLE article_versions (
    partner_id     INTEGER NOT NULL,
    article_id     TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    section        TEXT    NOT NULL,
    title          TEXT    NOT NULL,
    subtitle       TEXT    NOT NULL,
    kicker         TEXT    NOT NULL,
    authors        TEXT    NOT NULL,
    summary        TEXT    NOT NULL,
    content_html   TEXT    NOT NULL,
    content_text   TEXT,
    tags           TEXT    NOT NULL,
    canonical_url  TEXT,
    publish_time   INTEGER NOT NULL,
    update_time    INTEGER,
    updated        INTEGER NOT NULL,
    expire_time    INTEGER,
    embargo_time   INTEGER,
    media          TEXT    NOT NULL,
    language       TEXT,
    etag           TEXT    NOT NULL,
    PRIMARY KEY (partner_id, article_id, version)
) STRICT;

-- Every publish, update, retraction and embargo lift, in commit order. AUTOINCREMENT: a
-- sequence number is never reused, so a follower's cursor stays meaningful.
CREATE TABLE article_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    partner_id  INTEGER NOT NULL,
    article_id  TEXT    NOT NULL,
    version     INTEGER NOT NULL,            -- the content the event shows
    kind        INTEGER NOT NULL,            -- 1 published, 2 updated, 3 retracted, 4 embargo lifted
    section     TEXT    NOT NULL,
    embargoed   INTEGER NOT NULL,            -- 1 while the article's embargo ran
    event_time  INTEGER NOT NULL
) STRICT;

-- Request ids of mutations (AIP-155) and the result they got, to answer a retry with it.
CREATE TABLE request_ids (
    partner_id      INTEGER NOT NULL,
    request_id      TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,        -- SHA-256 of the request
    article_id      TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    state           INTEGER NOT NULL,        -- as in articles
    retract_time    INTEGER,
    retract_reason  TEXT    NOT NULL,
    create_time     INTEGER NOT NULL,
    PRIMARY KEY (partner_id, request_id)
) STRICT, WITHOUT ROWID;

-- Forgetting old request ids.
CREATE INDEX request_ids_create ON request_ids (create_time);

-- Embargoes still running, whose end is an event.
CREATE TABLE embargo_lifts (
    partner_id    INTEGER NOT NULL,
    article_id    TEXT    NOT NULL,
    embargo_time  INTEGER NOT NULL,
    PRIMARY KEY (partner_id, article_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX embargo_lifts_time ON embargo_lifts (embargo_time);

INSERT INTO embargo_lifts (partner_id, article_id, embargo_time)
    SELECT partner_id, article_id, embargo_time FROM articles
    WHERE state = 1 AND embargo_time > CAST(unixepoch('subsec') * 1000000000 AS INTEGER);
