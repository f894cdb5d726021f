-- An agenda's deferrals are counted when it is published, no longer when it is built: a build
-- is the coordinator's draft, redone or edited until publication. The counts that drafts added
-- (sessions whose agenda is not published, planned or past) are taken back; the drafts keep
-- their deferrals, which their publication will count.
UPDATE case_deferrals SET times = max(times - (
    SELECT count(*) FROM agenda_deferrals d JOIN sessions s ON s.id = d.session_id
    WHERE d.case_id = case_deferrals.case_id AND s.published_at IS NULL
), 0)
WHERE case_id IN (
    SELECT d.case_id FROM agenda_deferrals d JOIN sessions s ON s.id = d.session_id
    WHERE s.published_at IS NULL
);
DELETE FROM case_deferrals WHERE times = 0;
