-- The world model, version 1 (PostgreSQL).
CREATE SEQUENCE events_seq;
CREATE TABLE events (
    seq             BIGINT PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    workspace       TEXT NOT NULL,
    entity_type     TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    version         INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    data            JSONB NOT NULL,
    fields          JSONB NOT NULL,
    source_kind     TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    source_ref      TEXT,
    confidence      DOUBLE PRECISION NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    effective_at    TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    content_hash    TEXT NOT NULL,
    supersedes      TEXT,
    correlation_id  TEXT,
    evidence        JSONB,
    idempotency_key TEXT,
    -- the writing transaction's id: log readers go by (tx, seq) below the oldest running xid,
    -- so a sequence value that commits late is never skipped
    tx              BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    UNIQUE (workspace, entity_type, entity_id, version),
    UNIQUE (workspace, idempotency_key)
);
CREATE INDEX events_log ON events (workspace, tx, seq);

CREATE TABLE entities (
    workspace    TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    version      INTEGER NOT NULL,
    merged_into  TEXT,
    updated_at   TIMESTAMPTZ,
    ledger       BYTEA NOT NULL,
    state        JSONB NOT NULL,
    PRIMARY KEY (workspace, entity_type, entity_id)
);

CREATE TABLE entity_keys (
    workspace    TEXT NOT NULL,
    key          TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    PRIMARY KEY (workspace, key, entity_type, entity_id)
);
CREATE INDEX entity_keys_entity ON entity_keys (workspace, entity_type, entity_id);

CREATE TABLE source_records (
    workspace      TEXT NOT NULL,
    data_source    TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    entity_type    TEXT NOT NULL,
    entity_id      TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    snapshot       JSONB NOT NULL,
    last_event_id  TEXT NOT NULL,
    PRIMARY KEY (workspace, data_source, resource_type, external_id)
);

CREATE TABLE open_conflicts (
    workspace    TEXT NOT NULL,
    conflict_id  TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    field        TEXT NOT NULL,
    body         JSONB NOT NULL,
    PRIMARY KEY (workspace, conflict_id)
);
CREATE INDEX open_conflicts_entity ON open_conflicts (workspace, entity_type, entity_id);
