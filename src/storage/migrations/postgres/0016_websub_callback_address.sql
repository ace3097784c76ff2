-- Where each subscription's callback was reached when it was last verified (an IPv4
-- address, or an IPv6 /64): the hub caps the subscriptions held per address. NULL for a
-- subscription verified before this column: not counted until it is renewed.
ALTER TABLE websub_subscriptions ADD COLUMN callback_address TEXT COLLATE "C";

CREATE INDEX websub_subscriptions_address ON websub_subscriptions (callback_address, expire_time);
