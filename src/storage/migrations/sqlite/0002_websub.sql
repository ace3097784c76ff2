-- WebSub subscriptions of the built-in hub. Times are Unix nanoseconds (UTC).

CREATE TABLE websub_subscriptions (
    topic        TEXT    NOT NULL,           -- feed path, e.g. politics/atom.xml
    callback     TEXT    NOT NULL,           -- absolute http(s) URL
    secret       BLOB,                       -- hub.secret, signs deliveries; NULL: unsigned
    create_time  INTEGER NOT NULL,           -- first verified
    verify_time  INTEGER NOT NULL,           -- last verified (lease start)
    expire_time  INTEGER NOT NULL,           -- lease end: no deliveries from then on
    PRIMARY KEY (topic, callback)
) STRICT;

-- Removing expired leases.
CREATE INDEX websub_subscriptions_expire ON websub_subscriptions (expire_time);
