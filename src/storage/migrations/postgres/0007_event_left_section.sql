-- The section an event took its article out of, for readers of that section: a move to
-- another, or an embargo put on again, which readers without the embargo right must hear
-- of. NULL when the article stayed where it was seen (or was not seen before).
ALTER TABLE article_events ADD COLUMN left_section TEXT;
