-- When an article already stored joins or leaves a feed (a section move, an author or tag
-- added or taken off), every archive page from its place on shifts by one. The latest such
-- move (shift_time) and the earliest place one touched (shift_from, its article's
-- create_time), both in Unix nanoseconds, date those pages; NULL while none has.
ALTER TABLE feed_sizes ADD COLUMN shift_time BIGINT;
ALTER TABLE feed_sizes ADD COLUMN shift_from BIGINT;
