-- Two costs of an agenda build over 10,000 eligible cases, timed inside the build with
-- temporary probes (`cargo bench --bench load --only agenda`, 100,000 cases):
--
-- 1. Its one audit entry names every case of the build in `cases` (some 780 kB of JSON for
--    10,000 cases). PostgreSQL compresses such a value with pglz by default: about 9.5 ms of
--    the server's time for that value alone (the insert of the entry took 12-14 ms). lz4 does
--    the same in about 1.5 ms at the same ratio (the case ids are random: either keeps some
--    55 %). Values stored before keep their compression; both are read back alike. A server
--    built without lz4 keeps pglz (the statement fails with `feature_not_supported`), and so
--    does a server older than PostgreSQL 14, which has no per-column compression.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'ALTER TABLE audit_entries ALTER COLUMN cases SET COMPRESSION lz4';
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this server has no lz4: audit case sets stay compressed with pglz';
END;
$$;

-- 2. A first build counts every deferral: most of the cases it defers were deferred before, so
--    their count rows are updated, each into a new row version. With full pages each version
--    went to another page and into the primary key again (10,000 updates: some 50 ms); with
--    room left on every page an update stays on its page and skips the index (a heap-only
--    tuple, as `times` is in no index: some 29 ms). CLUSTER rewrites the rows stored so far
--    with that room (and in key order); it locks the table while it does, a short wait at the
--    upgrade (one narrow row per case ever deferred).
ALTER TABLE case_deferrals SET (fillfactor = 50);
CLUSTER case_deferrals USING case_deferrals_pkey;
