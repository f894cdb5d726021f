-- A first agenda build over 10,000 eligible cases defers some 9,980 of them. Stored one row per
-- deferred case (`agenda_deferrals`, primary key on two text columns), those rows cost the build
-- some 25 ms to insert and 10-25 ms more at commit (their index entries and their WAL), timed in
-- `psql` and by `cargo bench --bench load --only agenda`. A session's deferrals are only ever
-- read, written and withdrawn as a set of its own, so they are now one row per session holding
-- the set as an array: about 2.5 ms to write 10,000 case ids, whatever the session held before.
--
-- A case's count of deferrals stays in `case_deferrals`, one row per case ever deferred. Like
-- the table it replaces, this one has no foreign keys: cancelling a session deletes its row and
-- erasing a case removes its id from every set (see `cancel_session` and `erase_case`).
CREATE TABLE session_deferrals (
    session_id  TEXT PRIMARY KEY,
    case_ids    TEXT[] NOT NULL
);

-- The set of a large session is some 360 kB of random case ids: lz4 where the server has it,
-- as for audit case sets (0012).
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'ALTER TABLE session_deferrals ALTER COLUMN case_ids SET COMPRESSION lz4';
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this server has no lz4: deferral sets stay compressed with pglz';
END;
$$;

INSERT INTO session_deferrals (session_id, case_ids)
    SELECT session_id, array_agg(case_id ORDER BY case_id) FROM agenda_deferrals
    GROUP BY session_id;
DROP TABLE agenda_deferrals;
