-- The fleet graph: organizations, their group trees, roles, vehicles and installations.
-- Every existing account becomes the admin of an organization of its own (named after it),
-- and its devices move into that organization's root group.

CREATE TABLE organizations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    founder    TEXT                          -- the account that created it (for the record)
);

CREATE TABLE groups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id INTEGER NOT NULL REFERENCES organizations(id),
    parent_id       INTEGER REFERENCES groups(id),  -- NULL: the organization's root group
    name            TEXT NOT NULL,
    description     TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX groups_by_organization ON groups(organization_id);
CREATE INDEX groups_by_parent ON groups(parent_id);
CREATE UNIQUE INDEX one_root_group_per_organization ON groups(organization_id) WHERE parent_id IS NULL;

CREATE TABLE group_roles (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    group_id   INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('viewer', 'manager', 'admin')),
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, group_id)
) WITHOUT ROWID;
CREATE INDEX group_roles_by_group ON group_roles(group_id);

-- Roles waiting for an email that has no account yet. Ekko does not confirm emails, so an
-- invitation is not given to whoever signs up with the address: it carries a one-time code
-- (only its SHA-256 is kept) that the invitee presents once signed up.
CREATE TABLE invitations (
    code_hash  TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    group_id   INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('viewer', 'manager', 'admin')),
    invited_by TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);

ALTER TABLE accounts ADD COLUMN organization_id INTEGER REFERENCES organizations(id);
ALTER TABLE accounts ADD COLUMN short_name TEXT;
ALTER TABLE accounts ADD COLUMN phone TEXT;
ALTER TABLE accounts ADD COLUMN company_name TEXT;
ALTER TABLE accounts ADD COLUMN country_code TEXT;
ALTER TABLE accounts ADD COLUMN language TEXT;
ALTER TABLE accounts ADD COLUMN time_zone TEXT;
ALTER TABLE accounts ADD COLUMN last_sign_in_at INTEGER;

-- devices.owner stays: the account that registered the device (for the record). Access is
-- decided by the group.
ALTER TABLE devices ADD COLUMN group_id INTEGER REFERENCES groups(id);
ALTER TABLE devices ADD COLUMN name TEXT;
ALTER TABLE devices ADD COLUMN serial TEXT;
ALTER TABLE devices ADD COLUMN status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended'));
CREATE INDEX devices_by_group ON devices(group_id, imei);

CREATE TABLE vehicles (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id INTEGER NOT NULL REFERENCES organizations(id),
    group_id        INTEGER NOT NULL REFERENCES groups(id),
    name            TEXT,
    vin             TEXT,
    plate           TEXT,
    make            TEXT,
    model           TEXT,
    year            INTEGER,
    fuel_type       TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX vehicles_by_group ON vehicles(group_id, id);
CREATE UNIQUE INDEX one_vin_per_organization ON vehicles(organization_id, vin) WHERE vin IS NOT NULL;

CREATE TABLE installations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    imei         TEXT NOT NULL REFERENCES devices(imei) ON DELETE CASCADE,
    vehicle_id   INTEGER NOT NULL REFERENCES vehicles(id) ON DELETE CASCADE,
    installed_at INTEGER NOT NULL,
    removed_at   INTEGER
);
CREATE INDEX installations_by_device ON installations(imei, installed_at);
CREATE INDEX installations_by_vehicle ON installations(vehicle_id, installed_at);
CREATE UNIQUE INDEX one_vehicle_per_device ON installations(imei) WHERE removed_at IS NULL;
CREATE UNIQUE INDEX one_device_per_vehicle ON installations(vehicle_id) WHERE removed_at IS NULL;

-- Backfill: an organization, a root group and the admin role for every existing account.
INSERT INTO organizations (name, created_at, founder)
SELECT full_name, created_at, id FROM accounts ORDER BY created_at, id;

INSERT INTO groups (organization_id, parent_id, name, created_at, updated_at)
SELECT id, NULL, name, created_at, created_at FROM organizations ORDER BY id;

UPDATE accounts SET organization_id =
    (SELECT o.id FROM organizations o WHERE o.founder = accounts.id);

INSERT INTO group_roles (account_id, group_id, role, granted_at)
SELECT a.id, g.id, 'admin', a.created_at
FROM accounts a JOIN groups g ON g.organization_id = a.organization_id AND g.parent_id IS NULL;

UPDATE devices SET group_id =
    (SELECT g.id FROM accounts a JOIN groups g
       ON g.organization_id = a.organization_id AND g.parent_id IS NULL
     WHERE a.id = devices.owner);
