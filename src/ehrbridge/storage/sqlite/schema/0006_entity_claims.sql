-- Exclusive claims, version 6 (SQLite): what one entity of a workspace holds and no other may (docs/design.md §5.6,
-- §10). A booked Appointment that names a slot claims it (planner.claim_keys); the claim is
-- written in the write's own transaction, so two writers booking one slot cannot both commit,
-- whichever process or API route they come through. Claims are derived from the projections:
-- `rebuild` recomputes them (a database from before this version gets the claims of its older
-- bookings that way).
CREATE TABLE entity_claims (
    workspace    TEXT NOT NULL,
    claim        TEXT NOT NULL,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    PRIMARY KEY (workspace, claim)
) WITHOUT ROWID;
CREATE INDEX entity_claims_entity ON entity_claims (workspace, entity_type, entity_id);
