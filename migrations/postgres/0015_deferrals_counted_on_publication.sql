-- An agenda's deferrals are counted when it is published, no longer when it is built: a build
-- is the coordinator's draft, redone or edited until publication. The counts that drafts added
-- (sessions whose agenda is not published, planned or past) are taken back; the drafts keep
-- their sets of deferrals, which their publication will count.
UPDATE case_deferrals f SET times = GREATEST(f.times - d.n, 0)
FROM (
    SELECT u.case_id, count(*) AS n
    FROM session_deferrals sd
    JOIN sessions s ON s.id = sd.session_id
    CROSS JOIN unnest(sd.case_ids) AS u(case_id)
    WHERE s.published_at IS NULL
    GROUP BY u.case_id
) d
WHERE f.case_id = d.case_id;
DELETE FROM case_deferrals WHERE times = 0;
