-- Administrative entries say what they changed, and every entry carries an authentication code
-- that only the keyring can make (docs/audit.md, "Threat model").
--
-- `detail`: compact JSON with sorted keys (`before`/`after` of a change, or the settings that
-- decided a retention erasure), identifiers only, hashed into the chain.
-- `mac`: HMAC-SHA-256 under the keyring's audit MAC key `mac_key` over the entry's chain hash;
-- NULL only on entries written before this migration.
ALTER TABLE audit_entries ADD COLUMN detail TEXT, ADD COLUMN mac BYTEA, ADD COLUMN mac_key BIGINT;
