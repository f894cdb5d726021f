-- Idempotency keys of POSTs that create something (src/storage/idempotency.rs, docs/api.md).
-- One row per (subject, cellule, key): the SHA-256 of the request it was first used with, the
-- attempt that holds it while in flight (`owner`, until `lease_until`), then the answer given
-- (`status`, `response`). The answer is written in the same transaction as the record it
-- created, so a row with an answer means the record is committed and a row without one means
-- it is not. `response` holds ids, references and statuses, never free text (a note's text is
-- read again on a replay). `case_id` lets the erasure of a case turn the answers about it into
-- "not found" (status 404, no body).
-- Times are Unix microseconds; rows older than 24 hours are purged.
CREATE TABLE idempotency_keys (
    subject TEXT NOT NULL,
    cellule TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    owner TEXT,
    lease_until INTEGER NOT NULL,
    status INTEGER,
    response TEXT,
    case_id TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (subject, cellule, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_case ON idempotency_keys (case_id);
