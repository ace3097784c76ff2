-- A delivery claim is a lease: the claimant (the `feedpub.origin` of its connections)
-- renews it while it delivers and marks it done when every subscriber's delivery ended;
-- a claim neither done nor renewed in time (its replica died mid-delivery) is taken over
-- by another replica, which delivers the document again. Claims made before leases
-- existed count as done.
ALTER TABLE websub_deliveries
    ADD COLUMN lease_until BIGINT  NOT NULL DEFAULT 0,
    ADD COLUMN done        BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN claimant    TEXT    COLLATE "C";

CREATE INDEX websub_deliveries_open ON websub_deliveries (lease_until) WHERE NOT done;
