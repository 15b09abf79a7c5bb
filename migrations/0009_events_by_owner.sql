-- Live event streams resume a caller's history from the store (GET /v1/events with
-- Last-Event-ID, WebSocket "from"): "this owner's events after position N, in order".
-- Without this index that read walks every event after N, everyone's.
CREATE INDEX IF NOT EXISTS events_owner_position_idx ON eventstore.events (owner, position);
COMMENT ON INDEX eventstore.events_owner_position_idx IS
    'A caller''s events in position order: resuming a live event stream (SSE Last-Event-ID, WebSocket from) reads only that owner''s rows.';
