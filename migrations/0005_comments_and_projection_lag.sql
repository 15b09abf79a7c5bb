-- Every table, view and column documents itself (analysts read the schema in psql with
-- \d+), and readmodel.projection_lag counts only the streams each projection consumes, so
-- it reads 0 when the system is idle and caught up. Additive only.

-- ---- the migrations table (created by bus/store/db.py before the first migration) ------

COMMENT ON TABLE public.cairn_migrations IS
    'Migrations applied to this database, one row per file of migrations/ (applied in name order, each once, under an advisory lock).';
COMMENT ON COLUMN public.cairn_migrations.name IS 'File name of the migration, e.g. 0001_event_store.sql.';
COMMENT ON COLUMN public.cairn_migrations.applied_at IS 'When the migration was applied.';

-- ---- event store -----------------------------------------------------------------------

COMMENT ON SCHEMA eventstore IS
    'The source of truth: every state change of every aggregate as an append-only log of events. Kafka topics and read models are derived from it.';
COMMENT ON SEQUENCE eventstore.position_seq IS
    'Draws eventstore.events.position; appends take a transaction-scoped lock first, so positions become visible in commit order.';

COMMENT ON TABLE eventstore.events IS
    'The event log: one row per event, never updated or deleted. (stream_id, version) orders a stream and guards concurrent writers; position orders everything and is what the relay publishes in.';
COMMENT ON COLUMN eventstore.events.stream_id IS 'The aggregate instance: <type>-<id>, e.g. upload-<uuid>, file-<uuid>.';
COMMENT ON COLUMN eventstore.events.version IS 'Position of the event within its stream, from 1, without gaps.';
COMMENT ON COLUMN eventstore.events.position IS 'Global position across all streams (commit order); the relay checkpoint and projection status refer to it.';
COMMENT ON COLUMN eventstore.events.event_id IS 'Unique event id (the Kafka event-id header and the "id" of the published value): consumers deduplicate by it.';
COMMENT ON COLUMN eventstore.events.event_type IS 'Event type, e.g. UploadInitiated, UploadChunkStored, FileCreated.';
COMMENT ON COLUMN eventstore.events.schema_version IS 'Version of the event type''s data schema as written; older versions are upcast on read.';
COMMENT ON COLUMN eventstore.events.data IS 'The event''s payload (JSON object), as written at schema_version.';
COMMENT ON COLUMN eventstore.events.owner IS 'User id owning the aggregate; null for system events.';
COMMENT ON COLUMN eventstore.events.correlation_id IS 'Ties together everything caused by one request (the API''s request id).';
COMMENT ON COLUMN eventstore.events.causation_id IS 'Id of the command or event that caused this event.';
COMMENT ON COLUMN eventstore.events.traceparent IS 'W3C trace context of the command that produced the event, for distributed tracing.';
COMMENT ON COLUMN eventstore.events.occurred_at IS 'When the event happened (decided by the actor).';
COMMENT ON COLUMN eventstore.events.recorded_at IS 'When the row was committed to the event store.';

COMMENT ON TABLE eventstore.applied_commands IS
    'Commands applied, written in the same transaction as their events: a command Kafka delivers twice is recognised and answered from here instead of being applied again.';
COMMENT ON COLUMN eventstore.applied_commands.command_id IS 'The command''s id.';
COMMENT ON COLUMN eventstore.applied_commands.stream_id IS 'The stream the command appended to.';
COMMENT ON COLUMN eventstore.applied_commands.first_version IS 'Version of the first event the command appended.';
COMMENT ON COLUMN eventstore.applied_commands.last_version IS 'Version of the last event the command appended.';
COMMENT ON COLUMN eventstore.applied_commands.applied_at IS 'When the command was applied.';

COMMENT ON TABLE eventstore.relay_checkpoints IS
    'How far the relay has published the event log to Kafka, per relay name (''main''). Rewound to 0 when the embedded broker starts empty.';
COMMENT ON COLUMN eventstore.relay_checkpoints.name IS 'Relay name.';
COMMENT ON COLUMN eventstore.relay_checkpoints.position IS 'Highest eventstore.events.position published.';
COMMENT ON COLUMN eventstore.relay_checkpoints.updated_at IS 'When the checkpoint last moved.';

-- ---- which streams each projection consumes ---------------------------------------------

CREATE TABLE IF NOT EXISTS readmodel.projection_streams (
    projection     text NOT NULL,
    stream_prefix  text NOT NULL,
    PRIMARY KEY (projection, stream_prefix)
);
COMMENT ON TABLE readmodel.projection_streams IS
    'The event streams each projection consumes, by stream id prefix; readmodel.projection_lag counts only these. A new projection adds its rows in its migration (a test checks this table against the code).';
COMMENT ON COLUMN readmodel.projection_streams.projection IS 'Projection name (readmodel.status.projection).';
COMMENT ON COLUMN readmodel.projection_streams.stream_prefix IS 'Prefix of the stream ids it consumes, e.g. upload- .';
INSERT INTO readmodel.projection_streams (projection, stream_prefix)
VALUES ('uploads', 'upload-'), ('files', 'file-')
ON CONFLICT DO NOTHING;

-- ---- views: lag per projection, and every view column -----------------------------------

-- Before: the newest position of ANY stream minus the projection's last position, so the
-- uploads projection stayed behind by the FileCreated that follows every completion.
-- Now: the newest position among the projection's own streams (all streams if it has no
-- rows in projection_streams). max() over the position index stops at the first match
-- from the end, which is cheap when the projection is caught up.
CREATE OR REPLACE VIEW readmodel.projection_lag AS
SELECT
    s.projection,
    s.last_position,
    s.last_event_at,
    s.updated_at,
    greatest(
        coalesce((
            SELECT max(e.position) FROM eventstore.events e
            WHERE e.stream_id LIKE ANY (coalesce(
                (SELECT array_agg(ps.stream_prefix || '%') FROM readmodel.projection_streams ps
                 WHERE ps.projection = s.projection),
                ARRAY['%']))
        ), 0) - s.last_position,
        0) AS positions_behind,
    now() - s.last_event_at AS age_of_last_event
FROM readmodel.status s;
COMMENT ON VIEW readmodel.projection_lag IS
    'How far each projection is behind: positions between the last event it applied and the newest event of the streams it consumes (0 when caught up), and the age of the last applied event.';
COMMENT ON COLUMN readmodel.projection_lag.projection IS 'Projection name.';
COMMENT ON COLUMN readmodel.projection_lag.last_position IS 'Highest eventstore.events.position applied.';
COMMENT ON COLUMN readmodel.projection_lag.last_event_at IS 'occurred_at of the event at last_position.';
COMMENT ON COLUMN readmodel.projection_lag.updated_at IS 'When the projection last applied an event.';
COMMENT ON COLUMN readmodel.projection_lag.positions_behind IS 'Newest position among the streams this projection consumes minus last_position (0 when caught up; an upper bound on the events still to apply).';
COMMENT ON COLUMN readmodel.projection_lag.age_of_last_event IS 'now() minus last_event_at.';

COMMENT ON COLUMN readmodel.upload_stats.owner IS 'User id.';
COMMENT ON COLUMN readmodel.upload_stats.uploads_total IS 'Uploads of this owner, any status.';
COMMENT ON COLUMN readmodel.upload_stats.initiated IS 'Uploads INITIATED (no chunk yet).';
COMMENT ON COLUMN readmodel.upload_stats.in_progress IS 'Uploads IN_PROGRESS.';
COMMENT ON COLUMN readmodel.upload_stats.completed IS 'Uploads COMPLETED.';
COMMENT ON COLUMN readmodel.upload_stats.failed IS 'Uploads FAILED.';
COMMENT ON COLUMN readmodel.upload_stats.aborted IS 'Uploads ABORTED.';
COMMENT ON COLUMN readmodel.upload_stats.expired IS 'Uploads EXPIRED.';
COMMENT ON COLUMN readmodel.upload_stats.bytes_received IS 'Bytes stored so far over all uploads.';
COMMENT ON COLUMN readmodel.upload_stats.bytes_completed IS 'Declared sizes of the completed uploads.';
COMMENT ON COLUMN readmodel.upload_stats.last_activity_at IS 'When the owner''s most recent upload event happened.';

COMMENT ON COLUMN readmodel.live_files.id IS 'File id.';
COMMENT ON COLUMN readmodel.live_files.owner IS 'User id that owns the file.';
COMMENT ON COLUMN readmodel.live_files.name IS 'File name.';
COMMENT ON COLUMN readmodel.live_files.size IS 'Size in bytes.';
COMMENT ON COLUMN readmodel.live_files.content_type IS 'MIME type.';
COMMENT ON COLUMN readmodel.live_files.sha256 IS 'sha256 of the whole content (hex).';
COMMENT ON COLUMN readmodel.live_files.bucket IS 'Bucket the file lives in.';
COMMENT ON COLUMN readmodel.live_files.metadata IS 'User metadata (string keys and values).';
COMMENT ON COLUMN readmodel.live_files.upload_id IS 'The upload that produced the file, if any.';
COMMENT ON COLUMN readmodel.live_files.chunk_count IS 'Number of chunks in the manifest.';
COMMENT ON COLUMN readmodel.live_files.created_at IS 'When the file was created.';
COMMENT ON COLUMN readmodel.live_files.updated_at IS 'When the last event of this file happened.';

COMMENT ON COLUMN readmodel.storage_by_owner.owner IS 'User id.';
COMMENT ON COLUMN readmodel.storage_by_owner.bucket IS 'Bucket.';
COMMENT ON COLUMN readmodel.storage_by_owner.files IS 'Live files of the owner in the bucket.';
COMMENT ON COLUMN readmodel.storage_by_owner.bytes IS 'Their logical size in bytes (before chunk deduplication).';

COMMENT ON COLUMN readmodel.chunk_usage.sha256 IS 'The chunk (blob) digest.';
COMMENT ON COLUMN readmodel.chunk_usage.size IS 'Size of the chunk in bytes.';
COMMENT ON COLUMN readmodel.chunk_usage.live_refs IS 'Live uploads and files referencing the chunk.';

COMMENT ON COLUMN readmodel.chunk_refs_position.id IS 'Always true: the table has exactly one row.';
COMMENT ON COLUMN readmodel.chunk_refs_position.position IS 'eventstore.events position up to which readmodel.chunk_refs is complete.';
COMMENT ON COLUMN readmodel.chunk_refs_position.updated_at IS 'When the position last moved.';
