-- The agenda build reads every eligible case of the cellule (accepted, or followed up): 10,000
-- at 100,000 cases in a large département. Through `cases_by_cellule_status` each one costs a
-- visit to its wide row (ciphertexts included), scattered over the file: about 45 ms for the
-- 10,000 (`cargo bench --bench load`). This partial index holds only those cases and every
-- column the build reads, so the read stays inside it (about 15 ms). Other statuses add nothing
-- to it; an update of an eligible case updates it too.
CREATE INDEX cases_eligible ON cases (cellule, status, id, reference, urgency, needs, commune,
    sector, follow_up_date, times_deferred, routed_org, submitted_at, decided_at)
    WHERE status IN ('accepted', 'in_follow_up');
