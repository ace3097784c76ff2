-- As SQLite's 0020: the corrections' indexes carry what the test of being in view reads.
DROP INDEX articles_section_corrected;
DROP INDEX articles_corrected;
CREATE INDEX articles_section_corrected ON articles (section, shown_change_time)
    INCLUDE (state, publish_time, expire_time, embargo_time)
    WHERE shown_change_time > create_time;
CREATE INDEX articles_corrected ON articles (shown_change_time)
    INCLUDE (state, publish_time, expire_time, embargo_time)
    WHERE shown_change_time > create_time;
