-- The facts every node of a cluster shares. Times are the database's
-- (now()), never a node's clock.

-- One row: this service's identity, drawn once. NATS subjects carry it, so
-- two services sharing one NATS server never hear each other.
CREATE TABLE service (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    id text NOT NULL
);
INSERT INTO service (id) VALUES (md5(random()::text || clock_timestamp()::text));

-- Accounts. `name_key` (the name in lower case) makes names unique
-- ignoring case; `version` grows with every change, so a node can tell
-- that its copy of the names is stale.
CREATE SEQUENCE account_version;
CREATE TABLE accounts (
    name text PRIMARY KEY,
    name_key text NOT NULL UNIQUE,
    credential text NOT NULL,
    version bigint NOT NULL DEFAULT nextval('account_version')
);

-- Wrong passwords in a row, and the block the third one starts.
CREATE TABLE login_failures (
    name text PRIMARY KEY,
    failures integer NOT NULL DEFAULT 0,
    blocked_until timestamptz
);

-- One login per user across nodes: the node holding a user's session
-- renews its lease; `epoch` grows at every new holder (a fencing token).
-- Rows stay after release (expired), so epochs never repeat.
CREATE TABLE leases (
    name text PRIMARY KEY,
    node text NOT NULL,
    epoch bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX leases_by_node ON leases (node);
