-- What the relay's scan floor (src/floor.rs) needs from the schema.
--
-- 1. Every transaction that inserts outbox rows takes its transaction id BEFORE it draws any
--    row id. A plain INSERT evaluates the id default (nextval) before the row is written, and
--    the xid is only assigned at that write; this statement-level trigger runs before either.
--    With it, "xmin has passed the xid taken after reading the sequence" proves that every id
--    drawn before that read belongs to a finished transaction. It also fires for COPY.
CREATE FUNCTION outbox_take_xid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_current_xact_id();
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_take_xid
    BEFORE INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_take_xid();

-- 2. The lowest parked id above the floor, in the same statement as each claim's window: the
--    floor stays below parked rows, which an operator may retry. Parked rows are rare, so this
--    index is tiny and its upkeep is paid only when a row is parked or unparked.
CREATE INDEX outbox_parked_id ON outbox (id) WHERE parked_at IS NOT NULL;
