-- Which cases are on a published agenda, and for which session: members see those cases until
-- 30 days after the session (SPEC §7). Filled by agenda publication (scheduling).
CREATE TABLE agenda_publications (
    case_id       TEXT NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    session_id    TEXT NOT NULL,
    session_at    TEXT NOT NULL,
    published_at  TEXT NOT NULL,
    PRIMARY KEY (case_id, session_id)
) STRICT;

CREATE INDEX agenda_publications_by_case ON agenda_publications (case_id, session_at);
