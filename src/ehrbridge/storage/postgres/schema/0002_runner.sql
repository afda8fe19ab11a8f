-- The connector runner, version 2 (PostgreSQL): leases, poll cursors and poll outcomes.
CREATE TABLE leases (
    workspace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace, name)
);

CREATE TABLE cursors (
    workspace      TEXT NOT NULL,
    source         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    cursor         TEXT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, source, resource_type)
);

CREATE TABLE poll_outcomes (
    id             BIGSERIAL PRIMARY KEY,
    workspace      TEXT NOT NULL,
    source         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ NOT NULL,
    ok             BOOLEAN NOT NULL,
    error          TEXT,
    fetched        INTEGER NOT NULL,
    events         INTEGER NOT NULL
);
CREATE INDEX poll_outcomes_source ON poll_outcomes (workspace, source, resource_type, id);
