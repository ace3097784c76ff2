-- The date of the version each derived document's version replaced: when both share a
-- second, a client holding the one replaced must not be answered 304 by date, by any
-- replica serving the new one, after a restart too.
ALTER TABLE document_dates ADD COLUMN replaced BIGINT;  -- Unix nanoseconds; NULL: none
