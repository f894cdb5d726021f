-- Every audited request inserts entries, and on PostgreSQL each entry row paid for two checks
-- of its own: the append-only guard, a PL/pgSQL call whose query on `audit_heads` was planned
-- anew for every row, and the foreign key to `cellules`, one more query per row. Measured with
-- `pg_stat_statements` under the load bench's case reads (1,000 cases, 16 in flight): 12,000
-- of each in 5 seconds, some 20 µs of the server's time per entry.
--
-- Inserts are now checked once per statement, over the statement's new rows: each must belong
-- to a cellule that has a chain head and lie above its purge mark. The foreign key goes: an
-- entry's cellule has a head, a head's cellule must exist (its own foreign key), and a head can
-- be neither deleted nor truncated (`audit_heads_guard`, `audit_heads_no_truncate`) nor, from
-- now on, moved to another cellule (below), so a cellule with entries can never go either.
-- Updates and deletes keep the row guard of 0004.
CREATE FUNCTION audit_entries_insert_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_entries n LEFT JOIN audit_heads h ON h.cellule = n.cellule
               WHERE h.cellule IS NULL OR n.seq <= h.purged_through) THEN
        RAISE EXCEPTION 'audit entries are append-only';
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER audit_entries_guard ON audit_entries;
CREATE TRIGGER audit_entries_guard BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_entries_guard();
CREATE TRIGGER audit_entries_insert_guard AFTER INSERT ON audit_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_insert_guard();

ALTER TABLE audit_entries DROP CONSTRAINT audit_entries_cellule_fkey;

-- A head stays with its cellule (moving it would leave the cellule's entries without a chain).
CREATE OR REPLACE FUNCTION audit_heads_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.purged_through < OLD.purged_through OR NEW.seq < OLD.seq
       OR NEW.checkpoint_seq < OLD.checkpoint_seq OR NEW.cellule IS DISTINCT FROM OLD.cellule THEN
        RAISE EXCEPTION 'the audit head only moves forward';
    END IF;
    RETURN NEW;
END;
$$;
