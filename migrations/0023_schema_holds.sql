-- The projector holds a partition before an event of a known type whose schema version is
-- newer than the running code reads (written by a newer deployment during a rolling
-- upgrade, or before a rollback): it neither skips nor misreads it. Each such event it
-- stopped at is recorded here, for /ready and the metrics of any process. A row stays
-- after the event is applied (by a projector that knows the version); it counts as held
-- only while a projection of its stream has not applied that version
-- (projections/holds.py). Rows that no longer count are deleted when the next hold is
-- recorded.
CREATE TABLE IF NOT EXISTS readmodel.schema_holds (
    event_id        uuid        PRIMARY KEY,
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL,
    position        bigint      NOT NULL,
    event_type      text        NOT NULL,
    schema_version  int         NOT NULL,
    known_version   int         NOT NULL,
    held_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE readmodel.schema_holds IS
    'Events the projector stopped at because their schema version is newer than its code reads (a rolling upgrade in progress, or a rollback): the partition waits there, nothing after it applied, until a projector that knows the version runs. Held while some projection of the stream has not applied that version (see projections/holds.py).';
COMMENT ON COLUMN readmodel.schema_holds.event_id IS 'eventstore.events.event_id of the event held at.';
COMMENT ON COLUMN readmodel.schema_holds.stream_id IS 'Its stream.';
COMMENT ON COLUMN readmodel.schema_holds.version IS 'Its version in the stream.';
COMMENT ON COLUMN readmodel.schema_holds.position IS 'Its position in the event store.';
COMMENT ON COLUMN readmodel.schema_holds.event_type IS 'Its type (e.g. UploadChunkStored).';
COMMENT ON COLUMN readmodel.schema_holds.schema_version IS 'The schema version it was stored at.';
COMMENT ON COLUMN readmodel.schema_holds.known_version IS 'The newest version of that type the holding projector reads.';
COMMENT ON COLUMN readmodel.schema_holds.held_at IS 'When the projector stopped at it (last, if again).';
