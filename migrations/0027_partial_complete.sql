-- A tus partial upload (Upload-Concat: partial) that has all its bytes is finished, as
-- tusd has it: status PARTIAL_COMPLETE (no file of its own; its bytes usable in final
-- concatenations until it is terminated or expires), where it stayed IN_PROGRESS and
-- counted as active in GET /v1/uploads/stats until it expired. The projection derives it
-- from the same events as before (no new event): bytes or a declared length that bring a
-- partial upload's offset to its length. The rows recorded before are set here as a
-- rebuild from the log would set them.
UPDATE readmodel.uploads
   SET status = 'PARTIAL_COMPLETE'
 WHERE partial
   AND status IN ('INITIATED', 'IN_PROGRESS')
   AND file_size IS NOT NULL
   AND bytes_received = file_size;

COMMENT ON COLUMN readmodel.uploads.status IS
    'INITIATED, IN_PROGRESS, COMPLETED, FAILED, ABORTED or EXPIRED; PARTIAL_COMPLETE: a tus partial upload with all its bytes (no file of its own, usable in final concatenations until it expires).';
COMMENT ON COLUMN readmodel.uploads.partial IS
    'A tus partial upload (Upload-Concat: partial): never completed itself, only concatenated into a final upload; PARTIAL_COMPLETE once it has all its bytes.';

-- The analysts' per-owner counts gain the new status (a new last column: the others keep
-- their names and places).
CREATE OR REPLACE VIEW readmodel.upload_stats AS
SELECT
    owner,
    count(*)                                            AS uploads_total,
    count(*) FILTER (WHERE status = 'INITIATED')        AS initiated,
    count(*) FILTER (WHERE status = 'IN_PROGRESS')      AS in_progress,
    count(*) FILTER (WHERE status = 'COMPLETED')        AS completed,
    count(*) FILTER (WHERE status = 'FAILED')           AS failed,
    count(*) FILTER (WHERE status = 'ABORTED')          AS aborted,
    count(*) FILTER (WHERE status = 'EXPIRED')          AS expired,
    coalesce(sum(bytes_received) FILTER (WHERE mode IS DISTINCT FROM 'final'), 0)::bigint
                                                        AS bytes_received,
    coalesce(sum(file_size) FILTER (WHERE status = 'COMPLETED'), 0)::bigint
                                                        AS bytes_completed,
    max(updated_at)                                     AS last_activity_at,
    count(*) FILTER (WHERE status = 'PARTIAL_COMPLETE') AS partial_complete
FROM readmodel.uploads
GROUP BY owner;
COMMENT ON COLUMN readmodel.upload_stats.partial_complete IS
    'Uploads PARTIAL_COMPLETE: tus partial uploads with all their bytes, awaiting (or used in) a final concatenation.';
