-- The offline queue, shared by the nodes. `seq` orders a recipient's
-- messages: enqueues for one recipient take its `queue_usage` row's lock
-- first, so they commit in `seq` order. The text is kept as its UTF-8
-- bytes: a message may hold U+0000, which a `text` column refuses.
CREATE TABLE queue (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    recipient text NOT NULL,
    sender text NOT NULL,
    text bytea NOT NULL,
    at bigint NOT NULL,
    client_id text,
    size bigint NOT NULL
);
CREATE INDEX queue_by_recipient_seq ON queue (recipient, seq);

-- What waits in each recipient's queue, for the quotas.
CREATE TABLE queue_usage (
    recipient text PRIMARY KEY,
    messages bigint NOT NULL,
    bytes bigint NOT NULL
);

-- Device tokens: only their SHA-256 hashes.
CREATE TABLE devices (
    hash bytea PRIMARY KEY,
    name text NOT NULL,
    label text NOT NULL,
    created_at bigint NOT NULL,
    last_used bigint NOT NULL
);
CREATE INDEX devices_by_name ON devices (name, last_used);
