-- The outbox, version 8 (PostgreSQL; docs/design.md §9, docs/outbox.md). One row per item: what
-- it delivers to which sink, where it stands, and the claim that holds it (holder, lease,
-- epoch). The position comes from a sequence, taken under the lane's lock, so a lane's
-- positions rise in commit order.
CREATE SEQUENCE outbox_position;
CREATE TABLE outbox_items (
    id               TEXT PRIMARY KEY,
    position         BIGINT NOT NULL UNIQUE,
    workspace        TEXT NOT NULL,
    sink             TEXT NOT NULL,
    key              TEXT NOT NULL,
    lane             TEXT NOT NULL,
    entity_type      TEXT NOT NULL,
    entity_id        TEXT NOT NULL,
    event_id         TEXT,
    operation        TEXT NOT NULL,
    payload          JSONB NOT NULL,
    workflow         TEXT,
    step             INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'synced', 'dead',
                                                     'conflict', 'cancelled', 'skipped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    holder           TEXT,
    lease_until      TIMESTAMPTZ,
    claimed_at       TIMESTAMPTZ,
    epoch            INTEGER NOT NULL DEFAULT 0,
    in_doubt         BOOLEAN NOT NULL DEFAULT false,
    last_error       TEXT,
    result           JSONB,
    synced_at        TIMESTAMPTZ,
    confirmed_at     TIMESTAMPTZ,
    UNIQUE (workspace, key)
);
-- a claim's candidates, in position order, and the lane check beside each
CREATE INDEX outbox_items_ready ON outbox_items (workspace, sink, position)
    WHERE status IN ('pending', 'processing');
CREATE INDEX outbox_items_lanes ON outbox_items (workspace, sink, lane, position)
    WHERE status IN ('pending', 'processing', 'dead', 'conflict');
CREATE INDEX outbox_items_events ON outbox_items (workspace, event_id);
CREATE INDEX outbox_items_unconfirmed ON outbox_items (workspace, sink, synced_at)
    WHERE status = 'synced' AND confirmed_at IS NULL;

-- Every settled attempt (and every lease that ran out), in the order they ended.
CREATE TABLE outbox_attempts (
    seq          BIGSERIAL PRIMARY KEY,
    workspace    TEXT NOT NULL,
    item_id      TEXT NOT NULL,
    epoch        INTEGER NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ NOT NULL,
    outcome      TEXT NOT NULL,
    status       INTEGER,
    detail       TEXT NOT NULL
);
CREATE INDEX outbox_attempts_item ON outbox_attempts (workspace, item_id, seq);

-- The feeders' places in the log, saved with the items they queued.
CREATE TABLE outbox_cursors (
    workspace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    tx          BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace, name)
);

-- What each dispatcher last said of each sink (circuit, limits in use), for ehrbridge status.
CREATE TABLE outbox_sink_states (
    workspace   TEXT NOT NULL,
    sink        TEXT NOT NULL,
    holder      TEXT NOT NULL,
    state       JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace, sink, holder)
);
