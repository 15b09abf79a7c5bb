-- A tus concatenation (mode 'final') starts with its parts' bytes in bytes_received (its
-- progress is 100 % at once), but none of them was received again: the parts hold them.
-- Summed over uploads they were counted twice. Now bytes_received leaves the final
-- uploads out (as usage_daily.bytes_uploaded always did); the columns are unchanged.
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
    max(updated_at)                                     AS last_activity_at
FROM readmodel.uploads
GROUP BY owner;
COMMENT ON COLUMN readmodel.upload_stats.bytes_received IS
    'Bytes received so far over all uploads (a tus concatenation''s are its parts'', counted there once).';
