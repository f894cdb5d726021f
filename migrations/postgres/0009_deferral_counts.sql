-- A first agenda build defers every eligible case that does not fit (9,980 of 10,000 in a large
-- département) and counts each deferral. Counted in the wide case rows, each bump wrote a new
-- version of the row and of its entries in every index of `cases` (about 0.23 s for 10,000),
-- and each deferral row's foreign-key checks locked its case row (0.13 s). The counts now live
-- in this narrow table (only cases ever deferred have a row) and the session's deferrals lose
-- their foreign keys. Sessions are never deleted, and erasing a case deletes its rows here in
-- the same transaction (see `erase_case`).
CREATE TABLE case_deferrals (
    case_id  TEXT PRIMARY KEY,
    times    BIGINT NOT NULL CHECK (times >= 0)
);
INSERT INTO case_deferrals (case_id, times)
    SELECT id, times_deferred FROM cases WHERE times_deferred <> 0;
ALTER TABLE cases DROP COLUMN times_deferred;

ALTER TABLE agenda_deferrals
    DROP CONSTRAINT agenda_deferrals_session_id_fkey,
    DROP CONSTRAINT agenda_deferrals_case_id_fkey;
