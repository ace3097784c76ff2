-- Only full pages are archive pages from this version on (RFC 5005: an archive document's
-- entries do not change): the page that was still filling is no longer served, and the
-- newest full page loses its `next-archive` link to it, so its bytes change. Every page
-- of every feed is dated by the upgrade, as by a move that touched them all, so that a
-- client revalidating by date does not keep the old bytes. A new store has no page yet.
UPDATE feed_sizes
SET shift_time = GREATEST(COALESCE(shift_time, 0),
                          (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000)::BIGINT),
    shift_from = 0
WHERE articles > 0;
