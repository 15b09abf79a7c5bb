-- The event store's batch append (0014) without a plan that grows with the store.
--
-- 0014 asked whether each command id was applied already with EXISTS (...). PostgreSQL may
-- run such an EXISTS as a "hashed subplan": read ALL of applied_commands into a hash table,
-- then probe it, which is cheap for a small table. PL/pgSQL keeps the plan it chose for the
-- function's statement (a generic plan, made while the table was small and before any
-- ANALYZE), so every batch then scanned the whole table: measured with auto_explain, a batch
-- of 32 appends spent 8.8 of its 10.7 ms in a sequential scan of 24,000 rows, and appends
-- at 32 writers fell from 3,300 to 1,500 events/s over 30,000 appends (issue 13).
-- A scalar subquery with LIMIT 1 cannot be hashed: it is always one index probe per append
-- (applied_commands_pkey), whatever the statistics say. Nothing else changes.
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
                   (x.c IS NOT NULL AND (
                       SELECT true FROM eventstore.applied_commands ac
                        WHERE ac.command_id = x.c LIMIT 1) IS NOT NULL) AS applied
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
