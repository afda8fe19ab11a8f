-- The human review queue, version 7 (PostgreSQL; docs/design.md §8). One row per review item:
-- the columns a query filters and sorts on, and the rest (flagged events, reasons, claim,
-- decision) as JSON. At most one open item per entity: the partial unique index.
CREATE TABLE review_items (
    workspace    TEXT NOT NULL,
    item_id      TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'decided')),
    priority     INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    body         JSONB NOT NULL,
    PRIMARY KEY (workspace, item_id)
);
CREATE UNIQUE INDEX review_items_open ON review_items (workspace, entity_type, entity_id)
    WHERE status = 'open';
CREATE INDEX review_items_queue ON review_items (workspace, status, priority, created_at);
