-- The audit log (SPEC §9): one hash chain per cellule.
--
-- `audit_heads` holds, per cellule, the last sequence number and hash. Every append bumps the
-- head first (that UPDATE locks the row, so appends from several API processes are strictly
-- ordered), inserts the entries, then stores the new head hash, all in the transaction of the
-- audited work.
CREATE TABLE audit_heads (
    cellule         TEXT PRIMARY KEY REFERENCES cellules (slug),
    seq             BIGINT NOT NULL,
    hash            BYTEA NOT NULL,
    -- Sequence of the last signed checkpoint.
    checkpoint_seq  BIGINT NOT NULL DEFAULT 0,
    -- Entries up to this sequence were removed by audit retention (anchored by a checkpoint).
    purged_through  BIGINT NOT NULL DEFAULT 0
);

-- Identifiers only: never content, identity or tokens. Times are UTC microseconds.
CREATE TABLE audit_entries (
    cellule      TEXT NOT NULL REFERENCES cellules (slug),
    seq          BIGINT NOT NULL,
    at_us        BIGINT NOT NULL,
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
    prev_hash    BYTEA NOT NULL,
    hash         BYTEA NOT NULL,
    PRIMARY KEY (cellule, seq)
);

CREATE INDEX audit_entries_by_case_id ON audit_entries (cellule, case_id, seq);
CREATE INDEX audit_entries_by_case_ref ON audit_entries (cellule, case_ref, seq);
CREATE INDEX audit_entries_by_actor ON audit_entries (cellule, actor, seq);
CREATE INDEX audit_entries_by_time ON audit_entries (cellule, at_us);

-- Signed chain heads (Ed25519 over cellule, seq, hash and time; see src/audit).
CREATE TABLE audit_checkpoints (
    cellule       TEXT NOT NULL REFERENCES cellules (slug),
    seq           BIGINT NOT NULL,
    hash          BYTEA NOT NULL,
    signed_at_us  BIGINT NOT NULL,
    key_id        TEXT NOT NULL,
    signature     BYTEA NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('periodic', 'on_demand', 'retention')),
    PRIMARY KEY (cellule, seq, kind)
);

-- Entries are never changed. They are deleted only by audit retention: below the purge mark,
-- and only when a retention checkpoint anchors that mark. No entry may be inserted at or below
-- the mark (an INSERT … ON CONFLICT DO UPDATE fires the UPDATE guard).
CREATE FUNCTION audit_entries_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.seq <= COALESCE(
        (SELECT purged_through FROM audit_heads WHERE cellule = OLD.cellule), 0)
       AND EXISTS (SELECT 1 FROM audit_checkpoints c JOIN audit_heads h ON h.cellule = c.cellule
                   WHERE c.cellule = OLD.cellule AND c.seq = h.purged_through AND c.kind = 'retention') THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'INSERT' AND NEW.seq > COALESCE(
        (SELECT purged_through FROM audit_heads WHERE cellule = NEW.cellule), 0) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only';
END;
$$;

CREATE TRIGGER audit_entries_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_entries_guard();

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;

CREATE TRIGGER audit_checkpoints_guard BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- The head only moves forward and is never removed.
CREATE FUNCTION audit_heads_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.purged_through < OLD.purged_through OR NEW.seq < OLD.seq
       OR NEW.checkpoint_seq < OLD.checkpoint_seq THEN
        RAISE EXCEPTION 'the audit head only moves forward';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER audit_heads_guard BEFORE UPDATE OR DELETE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION audit_heads_guard();

CREATE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON audit_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
