-- As SQLite's 0021: name rows carry their article's create time (the archive order), so
-- that author and tag feeds show their open archive page and the latest corrections of
-- older articles, as the sections do.
ALTER TABLE article_authors ADD COLUMN create_time BIGINT;
ALTER TABLE article_tags ADD COLUMN create_time BIGINT;
UPDATE article_authors AS n SET create_time = a.create_time
    FROM articles AS a WHERE a.partner_id = n.partner_id AND a.article_id = n.article_id;
UPDATE article_tags AS n SET create_time = a.create_time
    FROM articles AS a WHERE a.partner_id = n.partner_id AND a.article_id = n.article_id;

CREATE INDEX article_authors_archive ON article_authors (name, create_time, guid);
CREATE INDEX article_tags_archive ON article_tags (name, create_time, guid);
CREATE INDEX article_authors_corrected ON article_authors (name, shown_change_time)
    INCLUDE (create_time, state, publish_time, expire_time, embargo_time)
    WHERE shown_change_time > create_time;
CREATE INDEX article_tags_corrected ON article_tags (name, shown_change_time)
    INCLUDE (create_time, state, publish_time, expire_time, embargo_time)
    WHERE shown_change_time > create_time;
-- The newest, as the sections' (0005): read from the feed's index alone.
DROP INDEX article_authors_feed;
DROP INDEX article_tags_feed;
CREATE INDEX article_authors_feed ON article_authors (name, state, publish_time DESC, guid)
    INCLUDE (partner_id, article_id, expire_time, embargo_time, change_time);
CREATE INDEX article_tags_feed ON article_tags (name, state, publish_time DESC, guid)
    INCLUDE (partner_id, article_id, expire_time, embargo_time, change_time);
