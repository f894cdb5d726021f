-- `/readyz`'s write probe: a row written and deleted in one committed transaction, with enough
-- bytes to need fresh pages, so that readiness fails while writes fail (a full disk or a
-- `pool.sqlite_max_size` reached) and comes back by itself when they succeed again. Always
-- empty between probes.
CREATE TABLE write_probe (
    id TEXT PRIMARY KEY,
    pad BLOB NOT NULL
);
