-- Each article's retractions, to tell in the event log which copy was taken down: every
-- event of an article up to a retraction of it, though it was published again since.
CREATE INDEX article_event_retractions ON article_events (partner_id, article_id, seq)
    WHERE kind = 3;
