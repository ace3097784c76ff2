-- WebSub deliveries not ended yet: one row per document of a topic with subscribers, from
-- its first attempt until every subscriber's delivery ended, then deleted. A row another
-- process left (it stopped with deliveries retrying) is taken over by the next process,
-- which delivers that document again if it still serves it. Times are Unix nanoseconds.
CREATE TABLE websub_deliveries (
    topic       TEXT    NOT NULL,   -- feed path, e.g. politics/atom.xml
    document    TEXT    NOT NULL,   -- the document's entity tag and the stored change it shows
    claim_time  INTEGER NOT NULL,   -- when its delivery started
    claimant    TEXT    NOT NULL,   -- the process delivering it (a random name per start)
    PRIMARY KEY (topic, document)
) STRICT;
