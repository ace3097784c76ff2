-- A feed's regeneration first asks which articles the feed shows and when each last
-- changed, and reads whole rows only for those it has not decoded in that version (see
-- storage::article_cache). Section and `all` feeds answer that from their index alone: it
-- now holds the feed's exact order (newest publish_time first, then GUID) and every column
-- the feed's filter and the answer need, so no body's overflow pages are walked to find out.
-- Author and tag feeds already walk their name rows, which carry the same columns.
DROP INDEX articles_section_feed;
DROP INDEX articles_all_feed;
CREATE INDEX articles_section_feed
    ON articles (section, state, publish_time DESC, guid, expire_time, embargo_time, change_time);
CREATE INDEX articles_all_feed
    ON articles (state, publish_time DESC, guid, expire_time, embargo_time, change_time);
