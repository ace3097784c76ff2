-- Whether an embargo ran on the article where it was seen before the event took it out
-- (left_section): then only readers with the embargo right, and its own partner, saw it
-- there, and only they are told it left.
ALTER TABLE article_events ADD COLUMN left_embargoed BOOLEAN NOT NULL DEFAULT FALSE;
