-- The agent interface, version 4 (PostgreSQL): API keys and the audit trail (docs/design.md §11).

-- A key is stored as the SHA-256 of the whole key string; the key itself is shown once, at
-- creation. A revoked key keeps its row.
CREATE TABLE api_keys (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id       TEXT NOT NULL UNIQUE,
    workspace    TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('agent', 'operator', 'admin')),
    name         TEXT NOT NULL,
    write_types  TEXT[] NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_workspace ON api_keys (workspace, created_at, id);

-- Who did what to which entity, when: never a patient data value. details is a JSON object of
-- a few non-PHI strings. Append-only: the trigger refuses UPDATE, DELETE and TRUNCATE.
CREATE TABLE audit_log (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace    TEXT NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    key_id       TEXT NOT NULL,
    role         TEXT NOT NULL,
    action       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    entity_type  TEXT,
    entity_id    TEXT,
    phi          BOOLEAN NOT NULL,
    request_id   TEXT,
    details      JSONB NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (workspace, at, id);
CREATE INDEX audit_log_key ON audit_log (workspace, key_id, at, id);
CREATE INDEX audit_log_action ON audit_log (workspace, action, at, id);
CREATE INDEX audit_log_entity ON audit_log (workspace, entity_type, entity_id, at, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
