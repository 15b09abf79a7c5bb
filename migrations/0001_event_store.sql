-- The event store: the source of truth. Kafka is only the bus.
CREATE SCHEMA IF NOT EXISTS eventstore;

CREATE SEQUENCE IF NOT EXISTS eventstore.position_seq;

CREATE TABLE IF NOT EXISTS eventstore.events (
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    position        bigint      NOT NULL UNIQUE,
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            jsonb       NOT NULL,
    owner           text,
    correlation_id  text,
    causation_id    text,
    traceparent     text,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, version)
);
CREATE INDEX IF NOT EXISTS events_type_idx ON eventstore.events (event_type, position);

-- Commands applied, written in the same transaction as their events: a command delivered
-- twice by Kafka is recognised and answered from here instead of being applied again.
CREATE TABLE IF NOT EXISTS eventstore.applied_commands (
    command_id      text        PRIMARY KEY,
    stream_id       text        NOT NULL,
    first_version   bigint      NOT NULL,
    last_version    bigint      NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now()
);

-- How far the relay has published, per relay name.
CREATE TABLE IF NOT EXISTS eventstore.relay_checkpoints (
    name        text        PRIMARY KEY,
    position    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
