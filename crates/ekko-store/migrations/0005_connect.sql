-- Connect (issue 3): OAuth applications, authorization codes, consents, revoked access tokens,
-- and the client a refresh token was issued to. Timestamps are unix milliseconds.
CREATE TABLE oauth_applications (
    uid              TEXT PRIMARY KEY,        -- client_id: 64 hex characters
    secret_hash      TEXT NOT NULL,           -- SHA-256 hex of the client secret
    name             TEXT NOT NULL,
    redirect_uris    TEXT NOT NULL,           -- JSON array of strings
    confidential     INTEGER NOT NULL,
    private          INTEGER NOT NULL,
    authorized_users TEXT NOT NULL,           -- JSON array of normalized emails
    owner            TEXT NOT NULL REFERENCES accounts(id),
    created_at       INTEGER NOT NULL
);
CREATE INDEX oauth_applications_by_owner ON oauth_applications(owner);

CREATE TABLE oauth_codes (
    code_hash      TEXT PRIMARY KEY,          -- SHA-256 hex of the code
    client_id      TEXT NOT NULL REFERENCES oauth_applications(uid),
    account        TEXT NOT NULL REFERENCES accounts(id),
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    code_challenge TEXT NOT NULL,             -- PKCE S256
    nonce          TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER
);

CREATE TABLE oauth_consents (
    account    TEXT NOT NULL REFERENCES accounts(id),
    client_id  TEXT NOT NULL REFERENCES oauth_applications(uid),
    scope      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account, client_id, scope)
);

CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

ALTER TABLE refresh_tokens ADD COLUMN client_id TEXT;
ALTER TABLE refresh_tokens ADD COLUMN previous_hash TEXT;
