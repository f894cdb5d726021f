-- A chain head stays with its cellule: moving it to another cellule would leave the first
-- cellule's entries without a chain (the same rule as PostgreSQL's migration 0011).
DROP TRIGGER audit_heads_forward;
CREATE TRIGGER audit_heads_forward BEFORE UPDATE ON audit_heads
WHEN NEW.purged_through < OLD.purged_through OR NEW.seq < OLD.seq
  OR NEW.checkpoint_seq < OLD.checkpoint_seq OR NEW.cellule IS NOT OLD.cellule
BEGIN
    SELECT RAISE(ABORT, 'the audit head only moves forward');
END;
