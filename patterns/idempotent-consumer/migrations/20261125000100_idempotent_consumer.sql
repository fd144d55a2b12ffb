-- Inbox: one row per message this consumer has applied (or deliberately skipped).
-- The primary key is the dedupe mechanism: the consumer inserts the key in the same
-- transaction as the business effect, `ON CONFLICT DO NOTHING`, and a row count of 0
-- means "already processed".
CREATE TABLE IF NOT EXISTS inbox (
    consumer_name text        NOT NULL,
    message_key   text        NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_name, message_key)
);

-- Retention walks the oldest rows first, in small batches (see `Inbox::prune`).
CREATE INDEX IF NOT EXISTS inbox_processed_at_idx ON inbox (consumer_name, processed_at);

-- Highest per-aggregate sequence applied by each consumer: detects gaps and stale events,
-- and keeps rejecting stale redeliveries even after their inbox keys were pruned.
CREATE TABLE IF NOT EXISTS aggregate_version (
    consumer_name  text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    last_sequence  bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_name, aggregate_type, aggregate_id)
);
