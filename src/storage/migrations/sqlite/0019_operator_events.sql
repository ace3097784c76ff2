-- Events logged by an operator's command beside a running server (`feedpub partner retract`,
-- a takedown of a partner's article): the server did not write them, so it learns of them
-- here, polled, and rebuilds the feeds they touch. PostgreSQL's replicas follow every other
-- process's events already (their `origin`).
CREATE TABLE operator_events (
    seq INTEGER PRIMARY KEY                  -- article_events.seq
) STRICT;
