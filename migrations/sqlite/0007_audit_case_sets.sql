-- An entry about a set of cases (an agenda built, read, edited, published or exported: up to
-- every eligible case of the cellule) names them in `cases` (compact JSON, hashed into the chain
-- after `request_id`; see src/audit) instead of being repeated once per case. "Who accessed
-- case X" looks into these entries through this partial index, which holds only them.
ALTER TABLE audit_entries ADD COLUMN cases TEXT;
CREATE INDEX audit_entries_with_cases ON audit_entries (cellule, seq) WHERE cases IS NOT NULL;
