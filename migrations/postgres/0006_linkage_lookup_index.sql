-- The duplicate check (`open_cases_with_linkage`: cellule + linkage key, ordered by submission)
-- runs on every referral submission and every case read. With only (cellule, linkage_key) and no
-- planner statistics, SQLite preferred `cases_by_cellule_submitted` for the ORDER BY and scanned
-- every case of the cellule (about 270 ms at 100,000 cases; found by `cargo bench --bench load`).
-- This index serves the filter and the order; it replaces the narrower one.
CREATE INDEX cases_by_linkage_submitted ON cases (cellule, linkage_key, submitted_at)
    WHERE linkage_key IS NOT NULL;
DROP INDEX cases_by_linkage;
