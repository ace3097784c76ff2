-- As SQLite's 0018: the articles written again after their first write, by section and
-- change time, for the current documents' corrections.
CREATE INDEX articles_section_corrected ON articles (section, shown_change_time)
    WHERE shown_change_time > create_time;
CREATE INDEX articles_corrected ON articles (shown_change_time)
    WHERE shown_change_time > create_time;
