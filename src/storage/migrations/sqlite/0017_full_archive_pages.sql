-- Only full pages are archive pages from this version on (RFC 5005: an archive document's
-- entries do not change): the page that was still filling is no longer served, and the
-- newest full page loses its `next-archive` link to it, so its bytes change. That page is
-- dated by the upgrade, as by a move past every page: the newest page takes any move, the
-- pages before it keep their dates (unless an earlier move's place already covers them),
-- and later moves date pages from their own place on. A new store has no page yet.
UPDATE feed_sizes
SET shift_time = MAX(COALESCE(shift_time, 0),
                     CAST((julianday('now') - 2440587.5) * 86400000000000.0 AS INTEGER)),
    shift_from = COALESCE(shift_from, 9223372036854775807)
WHERE articles > 0;
