-- Request budgets, version 5 (SQLite): the pace shared by every runner on this database.
-- One row per budget (e.g. 'source:ehr'): the earliest moment, in Unix seconds, at which the
-- next request may start. Taking a slot moves it one interval on; a 429's Retry-After moves it
-- to the end of the pause, so every task of every runner waits that long.
CREATE TABLE request_budgets (
    workspace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    next_at    REAL NOT NULL,
    PRIMARY KEY (workspace, name)
) WITHOUT ROWID;
