-- Of author or tag names whose slugs collide (a short hash, which can be searched for), the
-- name stored first keeps the feed folder. "First" was the create time of the earliest
-- article carrying the name, so a partner could take another's feed over by adding a
-- colliding name to an old article of its own. Each name's row now keeps when a write
-- first gave it an article (Unix nanoseconds, that write's change time); names stored
-- before take their earliest article's create time, as they were ranked until now.
ALTER TABLE feed_sizes ADD COLUMN first_stored INTEGER;
UPDATE feed_sizes SET first_stored =
    (SELECT MIN(create_time) FROM article_authors WHERE name = feed_sizes.name)
    WHERE kind = 'author';
UPDATE feed_sizes SET first_stored =
    (SELECT MIN(create_time) FROM article_tags WHERE name = feed_sizes.name)
    WHERE kind = 'tag';
