-- A first agenda build defers every eligible case that does not fit (9,980 of 10,000 in a large
-- département) and counts each deferral. Counted in the wide case rows, each bump rewrote a row
-- with its ciphertexts and its entry in `cases_eligible`: about 10,000 scattered pages written
-- to the WAL, 0.35–0.44 s per build. The counts now live in this narrow table (only cases ever
-- deferred have a row) and the session's deferrals in a table without foreign keys: both are
-- written in a few milliseconds. Neither references `cases` or `sessions`, whose foreign-key
-- checks cost more than the inserts themselves; sessions are never deleted, and erasing a case
-- deletes its rows here in the same transaction (see `erase_case`).
CREATE TABLE case_deferrals (
    case_id  TEXT PRIMARY KEY NOT NULL,
    times    INTEGER NOT NULL CHECK (times >= 0)
) STRICT, WITHOUT ROWID;
INSERT INTO case_deferrals (case_id, times)
    SELECT id, times_deferred FROM cases WHERE times_deferred <> 0;

DROP INDEX cases_eligible;
ALTER TABLE cases DROP COLUMN times_deferred;
CREATE INDEX cases_eligible ON cases (cellule, status, id, reference, urgency, needs, commune,
    sector, follow_up_date, routed_org, submitted_at, decided_at)
    WHERE status IN ('accepted', 'in_follow_up');

CREATE TABLE agenda_deferrals_unlinked (
    session_id  TEXT NOT NULL,
    case_id     TEXT NOT NULL,
    PRIMARY KEY (session_id, case_id)
) STRICT, WITHOUT ROWID;
INSERT INTO agenda_deferrals_unlinked (session_id, case_id)
    SELECT session_id, case_id FROM agenda_deferrals;
DROP TABLE agenda_deferrals;
ALTER TABLE agenda_deferrals_unlinked RENAME TO agenda_deferrals;
