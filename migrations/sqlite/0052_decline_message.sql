-- The message a coordinator leaves for the referrer when declining a referral (where to turn
-- instead), scanned for identifiers and sealed with the case's data key like the event's
-- reason; the referrer's status view shows it, never the internal reason.
ALTER TABLE case_events ADD COLUMN referrer_message BLOB;
