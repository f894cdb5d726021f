-- The audit log (SPEC §9): one hash chain per cellule.
--
-- `audit_heads` holds, per cellule, the last sequence number and hash. Every append bumps the
-- head first (that UPDATE takes the write lock, so appends are strictly ordered), inserts the
-- entries, then stores the new head hash, all in the transaction of the audited work.
CREATE TABLE audit_heads (
    cellule         TEXT PRIMARY KEY NOT NULL REFERENCES cellules (slug),
    seq             INTEGER NOT NULL,
    hash            BLOB NOT NULL,
    -- Sequence of the last signed checkpoint.
    checkpoint_seq  INTEGER NOT NULL DEFAULT 0,
    -- Entries up to this sequence were removed by audit retention (anchored by a checkpoint).
    purged_through  INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Identifiers only: never content, identity or tokens. Times are UTC microseconds.
CREATE TABLE audit_entries (
    cellule      TEXT NOT NULL REFERENCES cellules (slug),
    seq          INTEGER NOT NULL,
    at_us        INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    actor_role   TEXT NOT NULL,
    actor_org    TEXT,
    action       TEXT NOT NULL,
    case_id      TEXT,
    case_ref     TEXT,
    target_kind  TEXT,
    target_id    TEXT,
    outcome      TEXT NOT NULL CHECK (outcome IN ('allowed', 'denied')),
    reason       TEXT,
    request_id   TEXT,
    prev_hash    BLOB NOT NULL,
    hash         BLOB NOT NULL,
    PRIMARY KEY (cellule, seq)
) STRICT;

CREATE INDEX audit_entries_by_case_id ON audit_entries (cellule, case_id, seq);
CREATE INDEX audit_entries_by_case_ref ON audit_entries (cellule, case_ref, seq);
CREATE INDEX audit_entries_by_actor ON audit_entries (cellule, actor, seq);
CREATE INDEX audit_entries_by_time ON audit_entries (cellule, at_us);

-- Signed chain heads (Ed25519 over cellule, seq, hash and time; see src/audit).
CREATE TABLE audit_checkpoints (
    cellule       TEXT NOT NULL REFERENCES cellules (slug),
    seq           INTEGER NOT NULL,
    hash          BLOB NOT NULL,
    signed_at_us  INTEGER NOT NULL,
    key_id        TEXT NOT NULL,
    signature     BLOB NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('periodic', 'on_demand', 'retention')),
    PRIMARY KEY (cellule, seq)
) STRICT;

-- Entries are never changed; they are deleted only by audit retention, below the purge mark.
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
WHEN OLD.seq > COALESCE((SELECT purged_through FROM audit_heads WHERE cellule = OLD.cellule), 0)
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;

-- The purge mark only moves forward.
CREATE TRIGGER audit_heads_purge_forward BEFORE UPDATE OF purged_through ON audit_heads
WHEN NEW.purged_through < OLD.purged_through
BEGIN
    SELECT RAISE(ABORT, 'the audit purge mark only moves forward');
END;
