-- Cases (pseudonymised attributes in clear, free text encrypted), their wrapped data keys,
-- notes, lifecycle events, charters, erasure tombstones and the keyring check values.
ALTER TABLE cellules ADD COLUMN retention_closed_months BIGINT NOT NULL DEFAULT 24;
ALTER TABLE cellules ADD COLUMN retention_declined_months BIGINT NOT NULL DEFAULT 3;

CREATE TABLE kek_checks (
    version      BIGINT PRIMARY KEY,
    check_value  BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE charters (
    cellule     TEXT NOT NULL REFERENCES cellules (slug) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    text        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cellule, version)
);

CREATE TABLE charter_acceptances (
    cellule      TEXT NOT NULL,
    subject      TEXT NOT NULL,
    version      BIGINT NOT NULL,
    accepted_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cellule, subject, version),
    FOREIGN KEY (cellule, version) REFERENCES charters (cellule, version) ON DELETE CASCADE
);

CREATE TABLE reference_counters (
    cellule   TEXT NOT NULL REFERENCES cellules (slug) ON DELETE CASCADE,
    year      BIGINT NOT NULL,
    last_seq  BIGINT NOT NULL,
    PRIMARY KEY (cellule, year)
);

CREATE TABLE cases (
    id                     TEXT PRIMARY KEY,
    cellule                TEXT NOT NULL REFERENCES cellules (slug) ON DELETE CASCADE,
    reference              TEXT NOT NULL UNIQUE,
    status                 TEXT NOT NULL CHECK (status IN ('submitted', 'accepted', 'declined', 'scheduled', 'in_follow_up', 'closed')),
    urgency                TEXT NOT NULL CHECK (urgency IN ('routine', 'priority', 'urgent')),
    age_band               TEXT NOT NULL,
    gender                 TEXT NOT NULL,
    commune                TEXT,
    sector                 TEXT,
    needs                  TEXT NOT NULL,
    consent_status         TEXT NOT NULL CHECK (consent_status IN ('agreed', 'informed', 'not_informed')),
    consent_justification  BYTEA,
    referring_org          TEXT NOT NULL,
    referrer               TEXT NOT NULL,
    linkage_key            TEXT,
    routed_org             TEXT,
    follow_up_date         DATE,
    times_deferred         BIGINT NOT NULL DEFAULT 0,
    situation              BYTEA NOT NULL,
    expectations           BYTEA,
    submitted_at           TIMESTAMPTZ NOT NULL,
    decided_at             TIMESTAMPTZ,
    closed_at              TIMESTAMPTZ,
    updated_at             TIMESTAMPTZ NOT NULL
);

CREATE INDEX cases_by_cellule_submitted ON cases (cellule, submitted_at, id);
CREATE INDEX cases_by_cellule_status ON cases (cellule, status);
CREATE INDEX cases_by_referrer ON cases (cellule, referrer, submitted_at);
CREATE INDEX cases_by_linkage ON cases (cellule, linkage_key) WHERE linkage_key IS NOT NULL;
CREATE INDEX cases_by_routed_org ON cases (cellule, routed_org) WHERE routed_org IS NOT NULL;

-- One data key per case (id = case id), and one linkage secret per cellule
-- (id = 'linkage:<cellule>', case_id NULL); wrapped by a KEK, never in clear.
CREATE TABLE data_keys (
    id           TEXT PRIMARY KEY,
    cellule      TEXT NOT NULL REFERENCES cellules (slug) ON DELETE CASCADE,
    case_id      TEXT REFERENCES cases (id) ON DELETE CASCADE,
    kek_version  BIGINT NOT NULL,
    wrapped      BYTEA NOT NULL
);

CREATE INDEX data_keys_by_version ON data_keys (kek_version, id);

CREATE TABLE case_events (
    id              TEXT PRIMARY KEY,
    case_id         TEXT NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    from_status     TEXT NOT NULL,
    to_status       TEXT NOT NULL,
    reason          BYTEA,
    actor           TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL
);

CREATE INDEX case_events_by_case ON case_events (case_id, at);

CREATE TABLE notes (
    id                   TEXT PRIMARY KEY,
    case_id              TEXT NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    author               TEXT NOT NULL,
    author_role          TEXT NOT NULL,
    author_sphere        TEXT,
    author_organisation  TEXT,
    audience             TEXT NOT NULL CHECK (audience IN ('cellule', 'psychiatry', 'city')),
    corrects             TEXT REFERENCES notes (id) ON DELETE CASCADE,
    body                 BYTEA NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL
);

CREATE INDEX notes_by_case ON notes (case_id, created_at, id);

-- Notes are append-only: a correction is a new note.
CREATE FUNCTION notes_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'notes are append-only';
END;
$$;

CREATE TRIGGER notes_append_only BEFORE UPDATE ON notes
    FOR EACH ROW EXECUTE FUNCTION notes_append_only();

-- What remains of an erased case: its reference, when, by whom, why.
CREATE TABLE erasures (
    id         TEXT PRIMARY KEY,
    cellule    TEXT NOT NULL REFERENCES cellules (slug) ON DELETE CASCADE,
    case_id    TEXT NOT NULL,
    reference  TEXT NOT NULL,
    erased_by  TEXT NOT NULL,
    reason     TEXT NOT NULL CHECK (reason IN ('request', 'retention')),
    erased_at  TIMESTAMPTZ NOT NULL
);
