-- The nodes alive: each renews its row with its leases. A node whose row
-- has not been renewed for a lease's life is gone, and the others forget
-- the users it served.
CREATE TABLE nodes (
    id text PRIMARY KEY,
    name text NOT NULL,
    renewed_at timestamptz NOT NULL
);

-- When each user was last seen online (`who --since`): milliseconds since
-- the Unix epoch by the database's clock.
CREATE TABLE last_seen (
    name text PRIMARY KEY,
    at bigint NOT NULL
);

-- Block lists: `blocker` does not want to hear from `blocked`.
CREATE TABLE blocks (
    blocker text NOT NULL,
    blocked text NOT NULL,
    PRIMARY KEY (blocker, blocked)
);
