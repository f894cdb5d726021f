-- Notifications (docs/notifications.md): messages that say something happened and link to the
-- page where a signed-in person sees it, never case content. Each is written in the transaction
-- of its event (no event without its message, no message for an event rolled back), then sent by
-- the outbox worker: `pending` → `sending` (claimed by one worker) → `sent`, or back to `pending`
-- with a later `next_attempt_at` after a failure that left nothing sent, or `failed` (attempts
-- exhausted, or the outcome of a send interrupted mid-way is unknown: never sent twice).
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY NOT NULL,
    cellule          TEXT NOT NULL REFERENCES cellules (slug),
    kind             TEXT NOT NULL,
    -- Who it is for: the organisation (or `administration`) for the audit entry, the address.
    recipient_org    TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT NOT NULL,
    body_html        TEXT NOT NULL,
    -- An iCalendar attachment (`METHOD:REQUEST` or `METHOD:CANCEL`), references only.
    ics              TEXT,
    -- The case references the message names (`,ref,ref,`), for its audit entry.
    case_refs        TEXT NOT NULL DEFAULT '',
    created_at       TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    claimed_until    TEXT,
    sent_at          TEXT,
    last_error       TEXT
) STRICT;

CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Professional addresses of members (set by an administrator, or the verified `email` claim of
-- their last web sign-in) and the optional notices each person turned off.
CREATE TABLE member_addresses (
    cellule     TEXT NOT NULL,
    subject     TEXT NOT NULL,
    email       TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('admin', 'oidc')),
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (cellule, subject),
    FOREIGN KEY (cellule, subject) REFERENCES memberships (cellule, subject) ON DELETE CASCADE
) STRICT;

CREATE TABLE notification_opt_outs (
    cellule  TEXT NOT NULL,
    subject  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    PRIMARY KEY (cellule, subject, kind),
    FOREIGN KEY (cellule, subject) REFERENCES memberships (cellule, subject) ON DELETE CASCADE
) STRICT;
