-- An agenda build reads every case of its cellule's pool (accepted, or in follow-up): 10,000
-- rows in a large département. Each case row also holds its encrypted texts (some 1.2 kB in
-- all), so those rows lie on about as many heap pages as there are rows: reading them took
-- some 20 ms of the 30 ms the build's read took (`EXPLAIN ANALYZE`, 100,000 cases, 10,000 in the
-- pool). This partial index holds the pool's rows with every column the build reads, so the
-- read is an index-only scan of some 2 MB (2.7 ms for the same rows, 12.5 ms for the whole
-- read). Rows out of the pool (submitted, declined, scheduled, closed) are not in it, so a
-- referral's insert does not touch it.
CREATE INDEX cases_agenda_pool ON cases (cellule)
    INCLUDE (id, reference, status, urgency, needs, commune, sector, follow_up_date, routed_org,
             submitted_at, decided_at)
    WHERE status IN ('accepted', 'in_follow_up');

-- An index-only scan reads a heap page anyway unless vacuum has marked it all-visible. By
-- default autovacuum waits for a fifth of a table to change: months of a cellule's work, during
-- which the pages of newly accepted cases would be read again at every build. Here it runs
-- after 1,000 rows plus 1 % of the table changed or were inserted (a vacuum that finds most
-- pages all-visible skips them). Inserts count from PostgreSQL 13 on.
ALTER TABLE cases SET (autovacuum_vacuum_scale_factor = 0.01);
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 130000 THEN
        EXECUTE 'ALTER TABLE cases SET (autovacuum_vacuum_insert_scale_factor = 0.01)';
    END IF;
END;
$$;
