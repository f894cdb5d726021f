-- Scheduled notices (docs/notifications.md): a session's reminder is sent once (the replica
-- that sets `reminded_at` sends it), and each organisation's digest of what falls due once a day.
ALTER TABLE sessions ADD COLUMN reminded_at TEXT;

CREATE TABLE due_notices (
    cellule       TEXT NOT NULL REFERENCES cellules (slug),
    organisation  TEXT NOT NULL,
    day           TEXT NOT NULL,
    PRIMARY KEY (cellule, organisation, day)
) STRICT;
