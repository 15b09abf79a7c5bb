-- blobs.inline.stored_at is the database's clock now, not the writer's (bus/blobs/inline.py):
-- the INSERT sets it, and the collector judges a row's age on it. Nothing to convert: rows
-- already stored keep the time their writer gave them, and age out as before.
COMMENT ON COLUMN blobs.inline.stored_at IS
    'When the blob was last put, epoch seconds by the database''s clock (clock_timestamp() '
    'of the INSERT, not the writer''s): the garbage collector deletes a row only while it is '
    'older than its grace by the database''s now.';
