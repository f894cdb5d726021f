-- Cellules (one per CLSM territory) and the memberships that authorise people in them.
CREATE TABLE cellules (
    slug        TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    code        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE memberships (
    cellule       TEXT NOT NULL REFERENCES cellules (slug) ON DELETE CASCADE,
    subject       TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('referrer', 'member', 'coordinator', 'auditor')),
    sphere        TEXT CHECK (sphere IS NULL OR sphere IN ('city', 'psychiatry')),
    organisation  TEXT,
    guest         INTEGER NOT NULL DEFAULT 0 CHECK (guest IN (0, 1)),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (cellule, subject)
) STRICT;

CREATE INDEX memberships_by_subject ON memberships (subject);
