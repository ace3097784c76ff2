-- The language of an article's copy (BCP 47), when it differs from the site's.
ALTER TABLE articles ADD COLUMN language TEXT;
