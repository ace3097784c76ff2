-- The date of the version each derived document's version replaced: when both share a
-- second, a client holding the one replaced must not be answered 304 by date, by any
-- process serving the new one, after a restart too.
ALTER TABLE document_dates ADD COLUMN replaced INTEGER;  -- Unix nanoseconds; NULL: none
