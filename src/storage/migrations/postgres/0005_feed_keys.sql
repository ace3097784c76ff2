-- A feed's regeneration first asks which articles the feed shows and when each last
-- changed, and reads whole rows only for those its cache lacks in that version (see
-- storage::article_cache). Section and `all` feeds answer that from their index alone
-- (an index-only scan): it holds the feed's exact order (newest publish_time first, then
-- GUID) and includes every column the feed's filter and the answer need. Author and tag
-- feeds already walk their name rows, which carry the same columns.
DROP INDEX articles_section_feed;
DROP INDEX articles_all_feed;
CREATE INDEX articles_section_feed ON articles (section, state, publish_time DESC, guid)
    INCLUDE (partner_id, article_id, expire_time, embargo_time, change_time);
CREATE INDEX articles_all_feed ON articles (state, publish_time DESC, guid)
    INCLUDE (partner_id, article_id, expire_time, embargo_time, change_time);
