-- The web application's sessions and sign-ins in progress (src/storage/web_sessions.rs). Rows are
-- keyed by the SHA-256 of a random secret only the browser holds; times are Unix seconds.
CREATE TABLE web_sessions (
    id_hash BLOB PRIMARY KEY,
    subject TEXT NOT NULL,
    issuer TEXT NOT NULL,
    id_token TEXT,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_last_seen ON web_sessions (last_seen_at);

CREATE TABLE web_sign_ins (
    id_hash BLOB PRIMARY KEY,
    issuer TEXT NOT NULL,
    state TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX web_sign_ins_created ON web_sign_ins (created_at);
