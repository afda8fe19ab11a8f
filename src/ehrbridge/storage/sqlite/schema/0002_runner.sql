-- The connector runner, version 2 (SQLite): leases, poll cursors and poll outcomes.
-- Timestamps are ISO-8601 text in UTC, fixed width, so text order is time order.
CREATE TABLE leases (
    workspace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    holder      TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (workspace, name)
) WITHOUT ROWID;

CREATE TABLE cursors (
    workspace      TEXT NOT NULL,
    source         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    cursor         TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (workspace, source, resource_type)
) WITHOUT ROWID;

CREATE TABLE poll_outcomes (
    id             INTEGER PRIMARY KEY,
    workspace      TEXT NOT NULL,
    source         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    finished_at    TEXT NOT NULL,
    ok             INTEGER NOT NULL,
    error          TEXT,
    fetched        INTEGER NOT NULL,
    events         INTEGER NOT NULL
);
CREATE INDEX poll_outcomes_source ON poll_outcomes (workspace, source, resource_type, id);
