-- Author and tag feeds: which articles carry which exact author name or tag. The writer
-- keeps these rows in the same transaction as the article; this migration fills them from
-- the JSON columns of the articles already stored.

CREATE TABLE article_authors (
    name        TEXT    NOT NULL,            -- exactly as in articles.authors
    partner_id  INTEGER NOT NULL,
    article_id  TEXT    NOT NULL,
    PRIMARY KEY (name, partner_id, article_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE article_tags (
    name        TEXT    NOT NULL,            -- exactly as in articles.tags
    partner_id  INTEGER NOT NULL,
    article_id  TEXT    NOT NULL,
    PRIMARY KEY (name, partner_id, article_id)
) STRICT, WITHOUT ROWID;

-- Rewriting an article's names, and the names of articles at a feed transition.
CREATE INDEX article_authors_article ON article_authors (partner_id, article_id);
CREATE INDEX article_tags_article ON article_tags (partner_id, article_id);

INSERT OR IGNORE INTO article_authors (name, partner_id, article_id)
    SELECT names.value, articles.partner_id, articles.article_id
    FROM articles, json_each(articles.authors) AS names;

INSERT OR IGNORE INTO article_tags (name, partner_id, article_id)
    SELECT names.value, articles.partner_id, articles.article_id
    FROM articles, json_each(articles.tags) AS names;

