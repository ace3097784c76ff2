-- Embargoes, media files and retraction tombstones. Times are Unix nanoseconds (UTC).

-- In no feed before this instant, whatever publish_time says.
ALTER TABLE articles ADD COLUMN embargo_time INTEGER;
-- JSON array of media files: url, mime_type, length, caption, width, height.
ALTER TABLE articles ADD COLUMN media TEXT NOT NULL DEFAULT '[]';

-- Embargo ends, as feed transitions and in Last-Modified.
CREATE INDEX articles_embargo ON articles (embargo_time) WHERE embargo_time IS NOT NULL;
-- Tombstones of recent retractions, and the ends of their windows.
CREATE INDEX articles_section_retract ON articles (section, retract_time) WHERE state = 2;
CREATE INDEX articles_retract ON articles (retract_time) WHERE state = 2;
