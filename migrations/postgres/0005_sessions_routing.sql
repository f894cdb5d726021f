-- Monthly sessions (SPEC §10): schedule, sessions, agenda, deferrals, decisions, and the routing
-- directory. Schedules and directories are stored as the JSON documents the API exchanges (they
-- are validated by src/schedule and src/routing before they get here).
CREATE TABLE schedules (
    cellule     TEXT PRIMARY KEY REFERENCES cellules (slug),
    document    TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE routing_directories (
    cellule     TEXT PRIMARY KEY REFERENCES cellules (slug),
    document    TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- A planned session has the date its rule produced (occurrence_key) so that planning again
-- creates nothing twice; an ad-hoc session has none.
CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    cellule           TEXT NOT NULL REFERENCES cellules (slug),
    occurrence_key    DATE,
    starts_at         TIMESTAMPTZ NOT NULL,
    local_start       TEXT NOT NULL,
    time_zone         TEXT NOT NULL,
    duration_minutes  BIGINT NOT NULL,
    location          TEXT NOT NULL,
    holiday           TEXT,
    status            TEXT NOT NULL CHECK (status IN ('planned', 'cancelled')),
    agenda_built_at   TIMESTAMPTZ,
    published_at      TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL,
    UNIQUE (cellule, occurrence_key)
);

CREATE INDEX sessions_by_time ON sessions (cellule, starts_at);

-- The agenda of a session: one item per case, in order, with its routing proposal (JSON).
CREATE TABLE agenda_items (
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    case_id     TEXT NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    position    BIGINT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('new', 'follow_up')),
    minutes     BIGINT NOT NULL,
    proposal    TEXT NOT NULL,
    PRIMARY KEY (session_id, case_id)
);

CREATE INDEX agenda_items_by_case ON agenda_items (case_id);

-- A case left out of a session's agenda for lack of time is counted once per session.
CREATE TABLE agenda_deferrals (
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    case_id     TEXT NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    PRIMARY KEY (session_id, case_id)
);

-- What the session decided for an item. The text and the actions are encrypted with the case key.
CREATE TABLE decisions (
    id              TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL REFERENCES sessions (id),
    case_id         TEXT NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    outcome         TEXT NOT NULL CHECK (outcome IN ('routed', 'follow_up', 'closed', 'deferred')),
    interlocutor    TEXT,
    follow_up_date  DATE,
    actions         BYTEA,
    text            BYTEA,
    decided_by      TEXT NOT NULL,
    decided_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (session_id, case_id)
);

CREATE INDEX decisions_by_case ON decisions (case_id, decided_at);

-- Organisations invited to a published item (`,name,name,`): guests see only those items.
ALTER TABLE agenda_publications ADD COLUMN invited TEXT NOT NULL DEFAULT '';
