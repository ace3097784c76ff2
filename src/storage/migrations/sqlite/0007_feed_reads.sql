-- Regenerating a feed reads what it shows, not the scope's whole history.
--
-- Author and tag feeds read only the rows they show. Each name row now carries what decides
-- whether and where its article shows in a feed (state, the feed times, the GUID that breaks
-- ties of publish_time), written by the writer in the same transaction as the article, so
-- the feed of a name that thousands of articles carry walks an index for its newest rows
-- and reads whole articles, bodies included, for just those.

CREATE TABLE article_authors_new (
    name          TEXT    NOT NULL,          -- exactly as in articles.authors
    partner_id    INTEGER NOT NULL,
    article_id    TEXT    NOT NULL,
    guid          TEXT    NOT NULL,          -- the rest as in the article's row
    state         INTEGER NOT NULL,
    publish_time  INTEGER NOT NULL,
    expire_time   INTEGER,
    embargo_time  INTEGER,
    change_time   INTEGER NOT NULL,
    retract_time  INTEGER,
    PRIMARY KEY (name, partner_id, article_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE article_tags_new (
    name          TEXT    NOT NULL,          -- exactly as in articles.tags
    partner_id    INTEGER NOT NULL,
    article_id    TEXT    NOT NULL,
    guid          TEXT    NOT NULL,
    state         INTEGER NOT NULL,
    publish_time  INTEGER NOT NULL,
    expire_time   INTEGER,
    embargo_time  INTEGER,
    change_time   INTEGER NOT NULL,
    retract_time  INTEGER,
    PRIMARY KEY (name, partner_id, article_id)
) STRICT, WITHOUT ROWID;

INSERT INTO article_authors_new
    SELECT n.name, a.partner_id, a.article_id, a.guid, a.state, a.publish_time, a.expire_time,
           a.embargo_time, a.change_time, a.retract_time
    FROM article_authors AS n JOIN articles AS a USING (partner_id, article_id);

INSERT INTO article_tags_new
    SELECT n.name, a.partner_id, a.article_id, a.guid, a.state, a.publish_time, a.expire_time,
           a.embargo_time, a.change_time, a.retract_time
    FROM article_tags AS n JOIN articles AS a USING (partner_id, article_id);

DROP TABLE article_authors;
DROP TABLE article_tags;
ALTER TABLE article_authors_new RENAME TO article_authors;
ALTER TABLE article_tags_new RENAME TO article_tags;

-- Rewriting an article's names, and the names of articles at a feed transition.
CREATE INDEX article_authors_article ON article_authors (partner_id, article_id);
CREATE INDEX article_tags_article ON article_tags (partner_id, article_id);
-- The feed itself, in its exact order (newest publish_time first, then GUID), and its newest
-- publish time.
CREATE INDEX article_authors_feed ON article_authors (name, state, publish_time DESC, guid);
CREATE INDEX article_tags_feed ON article_tags (name, state, publish_time DESC, guid);
-- Last-Modified, and tombstones.
CREATE INDEX article_authors_change ON article_authors (name, change_time);
CREATE INDEX article_tags_change ON article_tags (name, change_time);
CREATE INDEX article_authors_expire ON article_authors (name, expire_time)
    WHERE expire_time IS NOT NULL;
CREATE INDEX article_tags_expire ON article_tags (name, expire_time)
    WHERE expire_time IS NOT NULL;
CREATE INDEX article_authors_embargo ON article_authors (name, embargo_time)
    WHERE embargo_time IS NOT NULL;
CREATE INDEX article_tags_embargo ON article_tags (name, embargo_time)
    WHERE embargo_time IS NOT NULL;
CREATE INDEX article_authors_retract ON article_authors (name, retract_time) WHERE state = 2;
CREATE INDEX article_tags_retract ON article_tags (name, retract_time) WHERE state = 2;

-- How many articles each feed's archive (RFC 5005) holds, in any state, kept by triggers in
-- the transaction of every write, so that a regeneration looks its number of archive pages
-- up instead of counting the scope's whole history.
CREATE TABLE feed_sizes (
    kind      TEXT    NOT NULL,              -- all, section, author, tag
    name      TEXT    NOT NULL,              -- '' for all, else the slug, author or tag
    articles  INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) STRICT, WITHOUT ROWID;

INSERT INTO feed_sizes SELECT 'all', '', COUNT(*) FROM articles;
INSERT INTO feed_sizes SELECT 'section', section, COUNT(*) FROM articles GROUP BY section;
INSERT INTO feed_sizes SELECT 'author', name, COUNT(*) FROM article_authors GROUP BY name;
INSERT INTO feed_sizes SELECT 'tag', name, COUNT(*) FROM article_tags GROUP BY name;

CREATE TRIGGER articles_counted AFTER INSERT ON articles BEGIN
    INSERT INTO feed_sizes VALUES ('all', '', 1), ('section', NEW.section, 1)
        ON CONFLICT (kind, name) DO UPDATE SET articles = articles + 1;
END;
CREATE TRIGGER articles_uncounted AFTER DELETE ON articles BEGIN
    UPDATE feed_sizes SET articles = articles - 1
        WHERE kind = 'all' AND name = '' OR kind = 'section' AND name = OLD.section;
END;
CREATE TRIGGER articles_moved AFTER UPDATE OF section ON articles
    WHEN OLD.section <> NEW.section BEGIN
    UPDATE feed_sizes SET articles = articles - 1
        WHERE kind = 'section' AND name = OLD.section;
    INSERT INTO feed_sizes VALUES ('section', NEW.section, 1)
        ON CONFLICT (kind, name) DO UPDATE SET articles = articles + 1;
END;
CREATE TRIGGER article_authors_counted AFTER INSERT ON article_authors BEGIN
    INSERT INTO feed_sizes VALUES ('author', NEW.name, 1)
        ON CONFLICT (kind, name) DO UPDATE SET articles = articles + 1;
END;
CREATE TRIGGER article_authors_uncounted AFTER DELETE ON article_authors BEGIN
    UPDATE feed_sizes SET articles = articles - 1 WHERE kind = 'author' AND name = OLD.name;
END;
CREATE TRIGGER article_tags_counted AFTER INSERT ON article_tags BEGIN
    INSERT INTO feed_sizes VALUES ('tag', NEW.name, 1)
        ON CONFLICT (kind, name) DO UPDATE SET articles = articles + 1;
END;
CREATE TRIGGER article_tags_uncounted AFTER DELETE ON article_tags BEGIN
    UPDATE feed_sizes SET articles = articles - 1 WHERE kind = 'tag' AND name = OLD.name;
END;
