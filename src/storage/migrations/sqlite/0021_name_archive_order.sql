-- Author and tag feeds show what the current documents of a section show: beside their
-- newest articles, those of their open archive page (copy filed late would otherwise be in
-- no document until its page filled, RFC 5005 §4) and the latest corrections of older
-- ones. Name rows carry their article's create time, the archive order, for that; the
-- writer copies it with the other columns, an import fills it from the articles.
ALTER TABLE article_authors ADD COLUMN create_time INTEGER;
ALTER TABLE article_tags ADD COLUMN create_time INTEGER;
UPDATE article_authors SET create_time = (
    SELECT a.create_time FROM articles AS a
    WHERE a.partner_id = article_authors.partner_id AND a.article_id = article_authors.article_id);
UPDATE article_tags SET create_time = (
    SELECT a.create_time FROM articles AS a
    WHERE a.partner_id = article_tags.partner_id AND a.article_id = article_tags.article_id);

-- The open page, last stored first.
CREATE INDEX article_authors_archive ON article_authors (name, create_time, guid);
CREATE INDEX article_tags_archive ON article_tags (name, create_time, guid);
-- Corrections, as the sections' (0020): with what the test of being in view reads.
CREATE INDEX article_authors_corrected
    ON article_authors (name, shown_change_time, create_time, state, publish_time, expire_time,
                        embargo_time)
    WHERE shown_change_time > create_time;
CREATE INDEX article_tags_corrected
    ON article_tags (name, shown_change_time, create_time, state, publish_time, expire_time,
                     embargo_time)
    WHERE shown_change_time > create_time;
-- The newest, as the sections' (0011): the feed's index carries what the test of being in
-- view and the keys read, so that no name row is looked up for them (the statement reads
-- the newest several times over).
DROP INDEX article_authors_feed;
DROP INDEX article_tags_feed;
CREATE INDEX article_authors_feed
    ON article_authors (name, state, publish_time DESC, guid, expire_time, embargo_time,
                        change_time);
CREATE INDEX article_tags_feed
    ON article_tags (name, state, publish_time DESC, guid, expire_time, embargo_time,
                     change_time);
