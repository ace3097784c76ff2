-- As SQLite's 0022: each author or tag name's row keeps when a write first gave it an
-- article, which decides which of names whose slugs collide keeps the feed folder (not the
-- create time of the earliest article carrying it, which an old article given a colliding
-- name later would win). Names stored before take their earliest article's create time.
ALTER TABLE feed_sizes ADD COLUMN first_stored BIGINT;
UPDATE feed_sizes SET first_stored =
    (SELECT MIN(create_time) FROM article_authors WHERE name = feed_sizes.name)
    WHERE kind = 'author';
UPDATE feed_sizes SET first_stored =
    (SELECT MIN(create_time) FROM article_tags WHERE name = feed_sizes.name)
    WHERE kind = 'tag';
