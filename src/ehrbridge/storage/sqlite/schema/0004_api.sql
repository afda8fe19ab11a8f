-- The agent interface, version 4 (SQLite): API keys and the audit trail (docs/design.md §11).
-- Timestamps are ISO-8601 text in UTC, fixed width, so text order is time order.

-- A key is stored as the SHA-256 of the whole key string; the key itself is shown once, at
-- creation. write_types is a JSON array of entity type names. A revoked key keeps its row.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    key_id       TEXT NOT NULL UNIQUE,
    workspace    TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('agent', 'operator', 'admin')),
    name         TEXT NOT NULL,
    write_types  TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX api_keys_workspace ON api_keys (workspace, created_at, id);

-- Who did what to which entity, when: never a patient data value. details is a JSON object of
-- a few non-PHI strings. Append-only: the triggers refuse UPDATE and DELETE.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    workspace    TEXT NOT NULL,
    at           TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    role         TEXT NOT NULL,
    action       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    entity_type  TEXT,
    entity_id    TEXT,
    phi          INTEGER NOT NULL,
    request_id   TEXT,
    details      TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (workspace, at, id);
CREATE INDEX audit_log_key ON audit_log (workspace, key_id, at, id);
CREATE INDEX audit_log_action ON audit_log (workspace, action, at, id);
CREATE INDEX audit_log_entity ON audit_log (workspace, entity_type, entity_id, at, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
