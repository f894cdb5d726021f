-- Cellules (one per CLSM territory) and the memberships that authorise people in them.
CREATE TABLE cellules (
    slug        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    code        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE memberships (
    cellule       TEXT NOT NULL REFERENCES cellules (slug) ON DELETE CASCADE,
    subject       TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('referrer', 'member', 'coordinator', 'auditor')),
    sphere        TEXT CHECK (sphere IS NULL OR sphere IN ('city', 'psychiatry')),
    organisation  TEXT,
    guest         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cellule, subject)
);

CREATE INDEX memberships_by_subject ON memberships (subject);
