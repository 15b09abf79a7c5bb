-- Group commit for the event store (bus/store/eventstore.py, PostgresEventStore): one call
-- appends a batch of appends, each to its own stream, in ONE statement, so a batch costs one
-- round trip and one commit (one WAL flush) instead of seven round trips and a commit per
-- append.
--
-- Per append (index n, 1-based, into the per-append arrays):
--   a command id already applied -> one row (n, 'applied', current version), nothing written
--     (the caller answers it from the earlier events);
--   a wrong expected version     -> one row (n, 'conflict', current version), nothing written;
--   otherwise its events are written and returned, one row each (n, 'ok', ...).
-- The per-event arrays are in append order, ev_n saying which append each event belongs to;
-- versions are computed by the caller (expected + 1, + 2, ...).
--
-- Ordering: the append lock (lock_key, a transaction-scoped advisory lock) is taken after
-- the checks and before the positions are drawn, and is held until the statement's
-- implicit transaction commits. So positions become visible in commit order, as for a
-- single append; the relay relies on it (bus/store/relay.py).
-- A concurrent writer that takes a version or a command id between the checks and the
-- insert makes the whole statement fail with a unique violation and write nothing; the
-- caller then retries each append on its own.
CREATE OR REPLACE FUNCTION eventstore.append_batch(
    lock_key        bigint,
    channel         text,
    streams         text[],
    expected        bigint[],
    commands        text[],
    counts          int[],
    ev_n            int[],
    ev_versions     bigint[],
    ev_ids          uuid[],
    ev_types        text[],
    ev_schemas      int[],
    ev_data         jsonb[],
    ev_owners       text[],
    ev_corrs        text[],
    ev_causes       text[],
    ev_tps          text[],
    ev_ats          timestamptz[]
) RETURNS TABLE (
    n               int,
    status          text,
    current_version bigint,
    stream_id       text,
    version         bigint,
    "position"      bigint,
    event_id        uuid,
    event_type      text,
    schema_version  integer,
    data            jsonb,
    owner           text,
    correlation_id  text,
    causation_id    text,
    traceparent     text,
    occurred_at     timestamptz
) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    refused_n       int[];
    refused_status  text[];
    refused_current bigint[];
BEGIN
    SELECT coalesce(array_agg(c.n), '{}'), coalesce(array_agg(c.st), '{}'),
           coalesce(array_agg(c.cur), '{}')
      INTO refused_n, refused_status, refused_current
      FROM (
        SELECT a.n::int AS n,
               CASE WHEN a.applied THEN 'applied' ELSE 'conflict' END AS st,
               a.cur
          FROM (
            SELECT x.n, x.ev,
                   (SELECT coalesce(max(e.version), 0) FROM eventstore.events e
                     WHERE e.stream_id = x.s) AS cur,
                   (x.c IS NOT NULL AND EXISTS (
                       SELECT 1 FROM eventstore.applied_commands ac
                        WHERE ac.command_id = x.c)) AS applied
              FROM unnest(streams, expected, commands) WITH ORDINALITY AS x(s, ev, c, n)
          ) a
         WHERE a.applied OR a.cur <> a.ev
      ) c;

    RETURN QUERY
        SELECT r.n, r.st, r.cur,
               NULL::text, NULL::bigint, NULL::bigint, NULL::uuid, NULL::text, NULL::int,
               NULL::jsonb, NULL::text, NULL::text, NULL::text, NULL::text, NULL::timestamptz
          FROM unnest(refused_n, refused_status, refused_current) AS r(n, st, cur);

    IF cardinality(refused_n) = cardinality(streams) THEN
        RETURN;  -- nothing to write: no lock, no notification
    END IF;

    -- Serialise position assignment with commit order (see the comment at the top).
    PERFORM pg_advisory_xact_lock(lock_key);

    RETURN QUERY
        WITH ins AS (
            INSERT INTO eventstore.events AS t
                (stream_id, version, position, event_id, event_type, schema_version, data,
                 owner, correlation_id, causation_id, traceparent, occurred_at)
            SELECT streams[x.i], x.v, nextval('eventstore.position_seq'), x.id, x.t, x.sv,
                   x.d, x.o, x.co, x.ca, x.tp, x.at
              FROM unnest(ev_n, ev_versions, ev_ids, ev_types, ev_schemas, ev_data,
                          ev_owners, ev_corrs, ev_causes, ev_tps, ev_ats)
                   WITH ORDINALITY AS x(i, v, id, t, sv, d, o, co, ca, tp, at, m)
             WHERE NOT (x.i = ANY (refused_n))
             ORDER BY x.m
            RETURNING t.stream_id, t.version, t.position, t.event_id, t.event_type,
                      t.schema_version, t.data, t.owner, t.correlation_id, t.causation_id,
                      t.traceparent, t.occurred_at
        )
        SELECT a.n::int, 'ok'::text, NULL::bigint,
               ins.stream_id, ins.version, ins.position, ins.event_id, ins.event_type,
               ins.schema_version, ins.data, ins.owner, ins.correlation_id, ins.causation_id,
               ins.traceparent, ins.occurred_at
          FROM ins
          JOIN unnest(streams) WITH ORDINALITY AS a(s, n) ON a.s = ins.stream_id;

    INSERT INTO eventstore.applied_commands (command_id, stream_id, first_version, last_version)
    SELECT a.c, a.s, a.ev + 1, a.ev + a.k
      FROM unnest(streams, expected, commands, counts) WITH ORDINALITY AS a(s, ev, c, k, n)
     WHERE a.c IS NOT NULL AND NOT (a.n::int = ANY (refused_n));

    -- A wake-up for the relay and the live feed (payload: the highest position written;
    -- under the lock, this session's last drawn position is the batch's highest).
    PERFORM pg_notify(channel, currval('eventstore.position_seq')::text);
END
$fn$;

COMMENT ON FUNCTION eventstore.append_batch(
    bigint, text, text[], bigint[], text[], int[], int[], bigint[], uuid[], text[], int[],
    jsonb[], text[], text[], text[], text[], timestamptz[]
) IS 'Group commit of the event store: appends a batch of appends (one per stream) in one statement, under the append lock; used by bus/store/eventstore.py, not meant to be called by hand.';
