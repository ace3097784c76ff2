-- When an article already stored joins or leaves a feed (a section move, an author or tag
-- added or taken off), every archive page from its place on shifts by one. The latest such
-- move (shift_time) and the earliest place one touched (shift_from, its article's
-- create_time), both in Unix nanoseconds, date those pages; NULL while none has.
ALTER TABLE feed_sizes ADD COLUMN shift_time INTEGER;
ALTER TABLE feed_sizes ADD COLUMN shift_from INTEGER;

-- The counting triggers of 0007, naming the columns they fill.
DROP TRIGGER articles_counted;
DROP TRIGGER articles_moved;
DROP TRIGGER article_authors_counted;
DROP TRIGGER article_tags_counted;
CREATE TRIGGER articles_counted AFTER INSERT ON articles BEGIN
    INSERT INTO feed_sizes (kind, name, articles) VALUES ('all', '', 1), ('section', NEW.section, 1)
        ON CONFLICT (kind, name) DO UPDATE SET articles = articles + 1;
END;
CREATE TRIGGER articles_moved AFTER UPDATE OF section ON articles
    WHEN OLD.section <> NEW.section BEGIN
    UPDATE feed_sizes SET articles = articles - 1
        WHERE kind = 'section' AND name = OLD.section;
    INSERT INTO feed_sizes (kind, name, articles) VALUES ('section', NEW.section, 1)
        ON CONFLICT (kind, name) DO UPDATE SET articles = articles + 1;
END;
CREATE TRIGGER article_authors_counted AFTER INSERT ON article_authors BEGIN
    INSERT INTO feed_sizes (kind, name, articles) VALUES ('author', NEW.name, 1)
        ON CONFLICT (kind, name) DO UPDATE SET articles = articles + 1;
END;
CREATE TRIGGER article_tags_counted AFTER INSERT ON article_tags BEGIN
    INSERT INTO feed_sizes (kind, name, articles) VALUES ('tag', NEW.name, 1)
        ON CONFLICT (kind, name) DO UPDATE SET articles = articles + 1;
END;
