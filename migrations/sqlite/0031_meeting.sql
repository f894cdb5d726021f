-- The meeting (docs/design.md §10): a session is opened and closed by the coordinator, its
-- minutes approved (then frozen); attendance per participant and organisation; decisions kept as
-- versions (a correction adds one, the old stays), with the audience of their text, their actions'
-- owners and due dates in clear (the follow-up list sorts and filters on them; the action's text
-- stays sealed), and the case's routing before the first version (a correction starts from it).
ALTER TABLE sessions ADD COLUMN opened_at TEXT;
ALTER TABLE sessions ADD COLUMN closed_at TEXT;
ALTER TABLE sessions ADD COLUMN minutes_approved_at TEXT;
ALTER TABLE sessions ADD COLUMN minutes_approved_by TEXT;

CREATE TABLE session_attendance (
    session_id    TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    organisation  TEXT NOT NULL,
    -- The membership's subject; '' when the organisation attends as a whole.
    participant   TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('present', 'excused', 'absent')),
    recorded_by   TEXT NOT NULL,
    recorded_at   TEXT NOT NULL,
    PRIMARY KEY (session_id, organisation, participant)
) STRICT;

-- SQLite cannot drop a UNIQUE constraint: the table is rebuilt with (session, case, version).
CREATE TABLE decisions_v (
    id                    TEXT PRIMARY KEY NOT NULL,
    session_id            TEXT NOT NULL REFERENCES sessions (id),
    case_id               TEXT NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    version               INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    outcome               TEXT NOT NULL CHECK (outcome IN ('routed', 'follow_up', 'closed', 'deferred')),
    interlocutor          TEXT,
    follow_up_date        TEXT,
    actions               BLOB,
    text                  BLOB,
    text_audience         TEXT NOT NULL DEFAULT 'cellule' CHECK (text_audience IN ('cellule', 'city', 'psychiatry')),
    decided_by            TEXT NOT NULL,
    decided_at            TEXT NOT NULL,
    referrer_message      BLOB,
    prior_routed_org      TEXT,
    prior_follow_up_date  TEXT,
    UNIQUE (session_id, case_id, version)
) STRICT;

INSERT INTO decisions_v (id, session_id, case_id, version, outcome, interlocutor, follow_up_date,
                         actions, text, decided_by, decided_at, referrer_message)
SELECT id, session_id, case_id, 1, outcome, interlocutor, follow_up_date, actions, text,
       decided_by, decided_at, referrer_message
FROM decisions;

DROP TABLE decisions;
ALTER TABLE decisions_v RENAME TO decisions;
CREATE INDEX decisions_by_case ON decisions (case_id, decided_at);

-- Owners and due dates of the actions of every decision version (the text is in the sealed
-- `actions` document of the decision).
CREATE TABLE decision_actions (
    decision_id  TEXT NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    owner        TEXT NOT NULL,
    due_on       TEXT NOT NULL,
    PRIMARY KEY (decision_id, position)
) STRICT;

CREATE INDEX decision_actions_by_due ON decision_actions (due_on);
