-- A feed's date (and so its bytes and ETag) moved with every write of its articles, also of
-- one under embargo or before its publish time: an aggregator polling the feed could tell
-- that copy it must not see was being written, and when. Each article now keeps the change
-- time of its last write that changed what feeds show (one with the article in view before
-- or after it), NULL while none has, and a feed is dated by those.
--
-- Rows stored before keep their change time: the feeds they date keep their dates.
ALTER TABLE articles ADD COLUMN shown_change_time INTEGER;
ALTER TABLE article_authors ADD COLUMN shown_change_time INTEGER;
ALTER TABLE article_tags ADD COLUMN shown_change_time INTEGER;
UPDATE articles SET shown_change_time = change_time;
UPDATE article_authors SET shown_change_time = change_time;
UPDATE article_tags SET shown_change_time = change_time;

-- The same for moves: one of copy out of view (a new section, byline or tag) shifts the
-- feeds' archive pages (shift_time dates them), but changes nothing their current
-- documents show: shown_shift_time, the latest move of an article in view before or after
-- it, dates those, as does the latest write that changed how many archive pages the feed
-- has (its prev-archive link). Rows stored before keep their shift time there too.
ALTER TABLE feed_sizes ADD COLUMN shown_shift_time INTEGER;
UPDATE feed_sizes SET shown_shift_time = shift_time;

-- The indexes on change_time served only a feed's date; these take their place.
DROP INDEX articles_section_change;
DROP INDEX articles_change;
DROP INDEX article_authors_change;
DROP INDEX article_tags_change;
CREATE INDEX articles_section_shown ON articles (section, shown_change_time);
CREATE INDEX articles_shown ON articles (shown_change_time);
CREATE INDEX article_authors_shown ON article_authors (name, shown_change_time);
CREATE INDEX article_tags_shown ON article_tags (name, shown_change_time);
