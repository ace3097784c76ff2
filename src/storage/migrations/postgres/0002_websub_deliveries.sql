-- WebSub deliveries claimed by one replica: every replica regenerates the same feed, with
-- the same bytes and ETag; the first to claim a topic's document delivers it to the
-- subscribers, the others skip it. Claims are forgotten after a day.

CREATE TABLE websub_deliveries (
    topic       TEXT   COLLATE "C" NOT NULL,
    etag        TEXT   COLLATE "C" NOT NULL,
    claim_time  BIGINT NOT NULL,
    PRIMARY KEY (topic, etag)
);

CREATE INDEX websub_deliveries_claim ON websub_deliveries (claim_time);
