-- Request budgets, version 5 (PostgreSQL): the pace shared by every runner on this database.
-- One row per budget (e.g. 'source:ehr'): the earliest moment, by the database's clock, at which
-- the next request may start. Taking a slot moves it one interval on; a 429's Retry-After moves
-- it to the end of the pause, so every task of every runner waits that long.
-- UNLOGGED: a slot is taken per request, and the pace needs no durability (after a crash the
-- table is empty and the pace starts afresh), so it costs no WAL write and no commit flush.
CREATE UNLOGGED TABLE request_budgets (
    workspace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    next_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace, name)
);
