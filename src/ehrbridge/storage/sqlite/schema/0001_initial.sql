-- The world model, version 1 (SQLite). Timestamps are ISO-8601 text in UTC, JSON is text.
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    workspace       TEXT NOT NULL,
    entity_type     TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    version         INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    data            TEXT NOT NULL,
    fields          TEXT NOT NULL,
    source_kind     TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    source_ref      TEXT,
    confidence      REAL NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    effective_at    TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    supersedes      TEXT,
    correlation_id  TEXT,
    evidence        TEXT,
    idempotency_key TEXT,
    tx              INTEGER NOT NULL DEFAULT 0,
    -- optimistic concurrency: one event per entity version
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
    updated_at   TEXT,
    ledger       BLOB NOT NULL,
    state        TEXT NOT NULL,
    PRIMARY KEY (workspace, entity_type, entity_id)
) WITHOUT ROWID;

CREATE TABLE entity_keys (
    workspace    TEXT NOT NULL,
    key          TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    PRIMARY KEY (workspace, key, entity_type, entity_id)
) WITHOUT ROWID;
CREATE INDEX entity_keys_entity ON entity_keys (workspace, entity_type, entity_id);

CREATE TABLE source_records (
    workspace      TEXT NOT NULL,
    data_source    TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    entity_type    TEXT NOT NULL,
    entity_id      TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    snapshot       TEXT NOT NULL,
    last_event_id  TEXT NOT NULL,
    PRIMARY KEY (workspace, data_source, resource_type, external_id)
) WITHOUT ROWID;

CREATE TABLE open_conflicts (
    workspace    TEXT NOT NULL,
    conflict_id  TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    field        TEXT NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (workspace, conflict_id)
) WITHOUT ROWID;
CREATE INDEX open_conflicts_entity ON open_conflicts (workspace, entity_type, entity_id);
