-- A notification for every change of a bucket (issue 13, api/bucket_cache.py).
--
-- The API processes keep the live buckets they have read in memory, so an object request
-- does not read its bucket's stream each time; they must forget one as soon as any process
-- changes it. Every event of a `bucket-<name>` stream NOTIFYs `cairn_buckets` with the name,
-- in the appending transaction: listeners get it once it commits, whoever appended it. The
-- WHEN clause is checked without calling the function, so other events cost next to nothing.
CREATE OR REPLACE FUNCTION eventstore.notify_bucket_change() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_notify('cairn_buckets', substr(NEW.stream_id, length('bucket-') + 1));
    RETURN NULL;
END
$fn$;

DROP TRIGGER IF EXISTS events_notify_bucket_change ON eventstore.events;
CREATE TRIGGER events_notify_bucket_change
    AFTER INSERT ON eventstore.events
    FOR EACH ROW WHEN (NEW.stream_id LIKE 'bucket-%')
    EXECUTE FUNCTION eventstore.notify_bucket_change();

COMMENT ON FUNCTION eventstore.notify_bucket_change() IS
    'NOTIFY cairn_buckets with the bucket''s name for an event of a bucket stream: the API '
    'processes forget the bucket they hold in memory (api/bucket_cache.py).';
COMMENT ON TRIGGER events_notify_bucket_change ON eventstore.events IS
    'Tells the API processes that a bucket changed (eventstore.notify_bucket_change).';
