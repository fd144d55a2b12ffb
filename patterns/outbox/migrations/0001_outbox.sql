-- The transactional outbox.
--
-- `outbox_aggregate` hands out the per-aggregate sequence. A writer bumps its aggregate's row
-- inside the business transaction; the row lock serialises writers of ONE aggregate only and is
-- held until commit, so sequence order equals commit order and a rollback leaves no gap.
CREATE TABLE outbox_aggregate (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_sequence  bigint NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- One row per event not yet acknowledged by Kafka. Rows are deleted in the same transaction
-- that claimed them once the broker has acknowledged them, so the table only ever holds the
-- backlog (plus parked rows), never history.
CREATE TABLE outbox (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL,
    event_type     text        NOT NULL,
    payload        jsonb       NOT NULL,
    -- Extra record headers as a JSON object of strings; `traceparent` carries W3C trace context.
    headers        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- clock_timestamp(), not now(): now() is the transaction START, which would inflate the
    -- measured commit-to-ack latency by the length of the business transaction.
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Set when Kafka rejected the row permanently (e.g. too large). A parked row is the head of
    -- its aggregate and stops that aggregate (only) until an operator retries or discards it.
    parked_at      timestamptz,
    park_reason    text,
    -- Also the index the relay's "is this the head of its aggregate?" probe uses.
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

-- Rows churn constantly (insert, then delete within milliseconds): vacuum the table eagerly so
-- dead tuples are reclaimed long before they bloat it, and re-analyse it as often.
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.0,
    autovacuum_analyze_threshold = 1000
);

-- Wake relays on commit. A statement-level trigger fires once per INSERT statement, and
-- Postgres folds identical notifications of one transaction into one, delivered only at COMMIT
-- (never for a rollback): the relay hears about exactly the transactions it can see.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- The small business domain the pattern is demonstrated on.
CREATE TABLE orders (
    id          uuid        PRIMARY KEY,
    customer    text        NOT NULL,
    total_cents bigint      NOT NULL CHECK (total_cents >= 0),
    status      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
