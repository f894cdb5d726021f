-- The short message a decision leaves for the referrer (what happens next, who to contact),
-- written by the coordinator, scanned for identifiers and sealed with the case's data key like
-- the decision's text; the referrer's status view shows it, never the internal reasons.
ALTER TABLE decisions ADD COLUMN referrer_message BYTEA;
