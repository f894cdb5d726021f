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
    PRIMARY KEY (cellule, seq, kind)
) STRICT;

-- Entries are never changed. They are deleted only by audit retention: below the purge mark,
-- and only when a retention checkpoint anchors that mark. No entry may be inserted at or below
-- the mark, and `INSERT OR REPLACE` (which fires no UPDATE trigger) cannot overwrite one.
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
WHEN OLD.seq > COALESCE((SELECT purged_through FROM audit_heads WHERE cellule = OLD.cellule), 0)
  OR NOT EXISTS (SELECT 1 FROM audit_checkpoints c JOIN audit_heads h ON h.cellule = c.cellule
                 WHERE c.cellule = OLD.cellule AND c.seq = h.purged_through AND c.kind = 'retention')
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER audit_entries_no_overwrite BEFORE INSERT ON audit_entries
WHEN EXISTS (SELECT 1 FROM audit_entries WHERE cellule = NEW.cellule AND seq = NEW.seq)
  OR NEW.seq <= COALESCE((SELECT purged_through FROM audit_heads WHERE cellule = NEW.cellule), 0)
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

CREATE TRIGGER audit_checkpoints_no_overwrite BEFORE INSERT ON audit_checkpoints
WHEN EXISTS (SELECT 1 FROM audit_checkpoints
             WHERE cellule = NEW.cellule AND seq = NEW.seq AND kind = NEW.kind)
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;

-- The head only moves forward and is never removed.
CREATE TRIGGER audit_heads_forward BEFORE UPDATE ON audit_heads
WHEN NEW.purged_through < OLD.purged_through OR NEW.seq < OLD.seq
  OR NEW.checkpoint_seq < OLD.checkpoint_seq
BEGIN
    SELECT RAISE(ABORT, 'the audit head only moves forward');
END;

CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN
    SELECT RAISE(ABORT, 'the audit head only moves forward');
END;
