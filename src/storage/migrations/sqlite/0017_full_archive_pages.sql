-- Only full pages are archive pages from this version on (RFC 5005: an archive document's
-- entries do not change): the page that was still filling is no longer served, and the
-- newest full page loses its `next-archive` link to it, so its bytes change. That page is
-- dated by the upgrade, as by a move at the scope's newest article (the newest page takes
-- any move; the pages before it keep their dates, and later moves date pages from their
-- own place on). A new store has no page yet.
UPDATE feed_sizes
SET shift_time = MAX(COALESCE(shift_time, 0),
                     CAST((julianday('now') - 2440587.5) * 86400000000000.0 AS INTEGER)),
    shift_from = MIN(COALESCE(shift_from, newest.at), newest.at)
FROM (SELECT 'all' AS kind, '' AS name, MAX(create_time) AS at FROM articles
      UNION ALL
      SELECT 'section', section, MAX(create_time) FROM articles GROUP BY section
      UNION ALL
      SELECT 'author', n.name, MAX(a.create_time)
      FROM article_authors AS n JOIN articles AS a USING (partner_id, article_id)
      GROUP BY n.name
      UNION ALL
      SELECT 'tag', n.name, MAX(a.create_time)
      FROM article_tags AS n JOIN articles AS a USING (partner_id, article_id)
      GROUP BY n.name) AS newest
WHERE feed_sizes.kind = newest.kind AND feed_sizes.name = newest.name
  AND feed_sizes.articles > 0 AND newest.at IS NOT NULL;
