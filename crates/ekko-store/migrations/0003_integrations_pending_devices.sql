-- Integrations (machine callers such as a CloudConnect webhook) and pending devices.
CREATE TABLE integrations (
    id          TEXT PRIMARY KEY,            -- 16 hex digits, part of the secret
    account     TEXT NOT NULL REFERENCES accounts(id),
    secret_hash TEXT NOT NULL,               -- SHA-256 hex of the secret; the secret is not kept
    created_at  INTEGER NOT NULL
);
CREATE INDEX integrations_by_account ON integrations(account);

-- Unknown devices refused by a protocol, for an admin to claim. Not a foreign key: the device
-- is by definition not registered.
CREATE TABLE pending_devices (
    imei       TEXT NOT NULL,
    protocol   TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    PRIMARY KEY (imei, protocol)
);
