-- The current documents of `all` and the sections also show the articles corrected or
-- moved into the feed since the oldest of their newest was published (see
-- `section_keys`): a write after the article's first, whose shown change time is later
-- than its create time. These partial indexes hold those articles alone, so finding them
-- walks no entry of an article written once (a backfill of a million of them included).
-- The create time is in them too: SQLite tests the condition again, and would otherwise
-- read it from the row, past the body.
CREATE INDEX articles_section_corrected ON articles (section, shown_change_time, create_time)
    WHERE shown_change_time > create_time;
CREATE INDEX articles_corrected ON articles (shown_change_time, create_time)
    WHERE shown_change_time > create_time;
