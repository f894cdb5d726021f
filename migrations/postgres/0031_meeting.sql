-- The meeting (docs/design.md §10): a session is opened and closed by the coordinator, its
-- minutes approved (then frozen); attendance per participant and organisation; decisions kept as
-- versions (a correction adds one, the old stays), with the audience of their text, their actions'
-- owners and due dates in clear (the follow-up list sorts and filters on them; the action's text
-- stays sealed), and the case's routing before the first version (a correction starts from it).
ALTER TABLE sessions ADD COLUMN opened_at TIMESTAMPTZ;
ALTER TABLE sessions ADD COLUMN closed_at TIMESTAMPTZ;
ALTER TABLE sessions ADD COLUMN minutes_approved_at TIMESTAMPTZ;
ALTER TABLE sessions ADD COLUMN minutes_approved_by TEXT;

CREATE TABLE session_attendance (
    session_id    TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    organisation  TEXT NOT NULL,
    -- The membership's subject; '' when the organisation attends as a whole.
    participant   TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('present', 'excused', 'absent')),
    recorded_by   TEXT NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (session_id, organisation, participant)
);

ALTER TABLE decisions DROP CONSTRAINT decisions_session_id_case_id_key;
ALTER TABLE decisions ADD COLUMN version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1);
ALTER TABLE decisions ADD COLUMN text_audience TEXT NOT NULL DEFAULT 'cellule'
    CHECK (text_audience IN ('cellule', 'city', 'psychiatry'));
ALTER TABLE decisions ADD COLUMN prior_routed_org TEXT;
ALTER TABLE decisions ADD COLUMN prior_follow_up_date DATE;
ALTER TABLE decisions ADD CONSTRAINT decisions_version_unique UNIQUE (session_id, case_id, version);

CREATE TABLE decision_actions (
    decision_id  TEXT NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    owner        TEXT NOT NULL,
    due_on       DATE NOT NULL,
    PRIMARY KEY (decision_id, position)
);

CREATE INDEX decision_actions_by_due ON decision_actions (due_on);
