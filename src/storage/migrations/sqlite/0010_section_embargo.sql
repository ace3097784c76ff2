-- When a section's feed last changed includes its newest embargo end. Without an index on
-- (section, embargo_time) that lookup walked the section's every published row, reading
-- embargo_time at the end of each row, past the bodies in its overflow pages.
CREATE INDEX articles_section_embargo ON articles (section, embargo_time)
    WHERE embargo_time IS NOT NULL;
