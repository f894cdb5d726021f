-- `/readyz`'s write probe: a row written and deleted in one committed transaction, so that
-- readiness fails while writes fail (a full disk, a read-only standby) and comes back by
-- itself when they succeed again. Always empty between probes.
CREATE TABLE write_probe (
    id TEXT PRIMARY KEY,
    pad BYTEA NOT NULL
);
