-- Background file tasks: the read model (projected from cairn.tasks) and the workers' leases.

CREATE TABLE IF NOT EXISTS readmodel.tasks (
    id               uuid        PRIMARY KEY,
    owner            text        NOT NULL,
    type             text        NOT NULL,
    status           text        NOT NULL,
    priority         smallint    NOT NULL,
    params           jsonb       NOT NULL,
    items_total      integer     NOT NULL,
    items_done       integer     NOT NULL DEFAULT 0,
    items_failed     integer     NOT NULL DEFAULT 0,
    bytes_total      bigint      NOT NULL DEFAULT 0,
    bytes_done       bigint      NOT NULL DEFAULT 0,
    result_file_ids  jsonb       NOT NULL DEFAULT '[]',
    error            jsonb,
    attempts         integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    last_version     integer     NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_owner_created ON readmodel.tasks (owner, created_at DESC);
-- The workers' queue: runnable tasks, best first.
CREATE INDEX IF NOT EXISTS tasks_queue ON readmodel.tasks (priority DESC, created_at)
    WHERE status IN ('PENDING', 'RUNNING');
CREATE INDEX IF NOT EXISTS tasks_finished ON readmodel.tasks (finished_at)
    WHERE finished_at IS NOT NULL;

COMMENT ON TABLE readmodel.tasks IS
    'One row per background task (copy, move, delete, compress, extract), projected from the task events; the task workers pick runnable tasks from here and then check the task aggregate itself. Finished tasks are deleted after CAIRN_TASK_RETENTION.';
COMMENT ON COLUMN readmodel.tasks.id IS 'The task id (stream task-<id>).';
COMMENT ON COLUMN readmodel.tasks.owner IS 'The user who created the task; only they (or an admin) see it.';
COMMENT ON COLUMN readmodel.tasks.type IS 'copy, move, delete, compress or extract.';
COMMENT ON COLUMN readmodel.tasks.status IS 'PENDING, RUNNING, PAUSED, COMPLETED, FAILED or CANCELLED.';
COMMENT ON COLUMN readmodel.tasks.priority IS '0-100, higher first; equal priorities run oldest first.';
COMMENT ON COLUMN readmodel.tasks.params IS 'The validated parameters of the task, as created.';
COMMENT ON COLUMN readmodel.tasks.items_total IS 'How many items (files, archive members) the task works through.';
COMMENT ON COLUMN readmodel.tasks.items_done IS 'Items finished (successfully or not) as of the last checkpoint.';
COMMENT ON COLUMN readmodel.tasks.items_failed IS 'Items among items_done that failed (their errors are in the task''s results).';
COMMENT ON COLUMN readmodel.tasks.bytes_total IS 'Bytes the task reads, when known up front (0 = unknown).';
COMMENT ON COLUMN readmodel.tasks.bytes_done IS 'Bytes processed as of the last checkpoint.';
COMMENT ON COLUMN readmodel.tasks.result_file_ids IS 'The files the task produced (a JSON array of ids), set on completion.';
COMMENT ON COLUMN readmodel.tasks.error IS 'Why the task failed ({code, message, details}); null otherwise.';
COMMENT ON COLUMN readmodel.tasks.attempts IS 'How many times a worker started the task (more than 1 after a takeover or resume).';
COMMENT ON COLUMN readmodel.tasks.created_at IS 'When the task was created.';
COMMENT ON COLUMN readmodel.tasks.updated_at IS 'When the task last changed.';
COMMENT ON COLUMN readmodel.tasks.started_at IS 'When a worker first started the task.';
COMMENT ON COLUMN readmodel.tasks.finished_at IS 'When the task completed, failed or was cancelled.';
COMMENT ON COLUMN readmodel.tasks.last_version IS 'The task stream version this row reflects.';

CREATE SCHEMA IF NOT EXISTS work;
COMMENT ON SCHEMA work IS 'Coordination state of the background workers (not derived from events).';

CREATE TABLE IF NOT EXISTS work.task_leases (
    task_id     uuid        PRIMARY KEY,
    owner       text        NOT NULL,
    worker      text        NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS task_leases_owner ON work.task_leases (owner, expires_at);
COMMENT ON TABLE work.task_leases IS
    'Which task worker runs which task, until when. A worker renews its lease (CAIRN_TASK_LEASE_SECONDS) while it runs; a lease that ran out (a crashed worker) lets another worker take the task over from its last checkpoint.';
COMMENT ON COLUMN work.task_leases.task_id IS 'The task (readmodel.tasks.id).';
COMMENT ON COLUMN work.task_leases.owner IS 'The task''s owner, for the per-owner concurrency limit (CAIRN_TASK_CONCURRENCY_PER_OWNER).';
COMMENT ON COLUMN work.task_leases.worker IS 'The worker holding the lease (host:pid:random).';
COMMENT ON COLUMN work.task_leases.expires_at IS 'The lease runs out then unless renewed.';
