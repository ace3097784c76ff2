-- The corrections a feed's current documents show are those in view (published, their
-- publish time come, not expired, no embargo running), chosen before the page's worth is
-- counted: a retraction also writes an article again, and must not take a correction's
-- place. The partial indexes of 0018 carry what that test reads, so it needs no row.
DROP INDEX articles_section_corrected;
DROP INDEX articles_corrected;
CREATE INDEX articles_section_corrected
    ON articles (section, shown_change_time, create_time, state, publish_time, expire_time,
                 embargo_time)
    WHERE shown_change_time > create_time;
CREATE INDEX articles_corrected
    ON articles (shown_change_time, create_time, state, publish_time, expire_time, embargo_time)
    WHERE shown_change_time > create_time;
