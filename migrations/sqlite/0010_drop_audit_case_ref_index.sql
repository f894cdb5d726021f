-- Every audit entry that names a case reference also names that case's id (`Draft::case`, the
-- submission's and the erasure's entries), so the access log of a case is found by its id
-- alone, through `audit_entries_by_case_id`. The index by reference served nothing else (the
-- audit search by reference also matches entries naming sets of cases, which no index serves),
-- and it cost every audited read a write at a random page of a second index: measured with the
-- load bench on SQLite at 100,000 cases, case reads went from 4,400-4,900 to 5,800 per second,
-- and their p99 from 22 ms to 6 ms, without it.
DROP INDEX audit_entries_by_case_ref;
