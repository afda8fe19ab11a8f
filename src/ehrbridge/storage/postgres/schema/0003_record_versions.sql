-- The connector runner, version 3 (PostgreSQL): the version each data source last sent of each
-- record that was stored, so a poll skips a record it already has before mapping it. The token is
-- the source's version id (FHIR meta.versionId) or, without one, a digest of the record's content.
CREATE TABLE record_versions (
    workspace      TEXT NOT NULL,
    source         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    record_id      TEXT NOT NULL,
    token          TEXT NOT NULL,
    PRIMARY KEY (workspace, source, resource_type, record_id)
);

-- Resources a poll read and skipped because their version was already stored.
ALTER TABLE poll_outcomes ADD COLUMN unchanged INTEGER NOT NULL DEFAULT 0;
