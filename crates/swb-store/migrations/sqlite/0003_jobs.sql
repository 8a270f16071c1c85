-- Durable jobs. A job is claimed by setting it running with a lease; a result is
-- recorded only by the attempt that holds the claim (status running, same attempt).
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    owner_id         TEXT NOT NULL,
    function         TEXT NOT NULL,
    namespace        TEXT NOT NULL,
    version          INTEGER,
    input            BLOB,
    input_blob       TEXT,
    profile          TEXT,
    idempotency_key  TEXT,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    timeout_ms       INTEGER,
    run_after        INTEGER NOT NULL,
    lease_until      INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    waiting          TEXT,
    result           BLOB,
    result_blob      TEXT,
    error            TEXT,
    attempt_errors   TEXT NOT NULL DEFAULT '[]',
    stderr_tail      TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_ready ON jobs (status, run_after);
CREATE INDEX jobs_by_owner ON jobs (owner_id, id);

-- Blob bytes live in the object store under their digest; these rows say who holds
-- which blob and whether it is sealed (a dataset that is never downloaded).
CREATE TABLE blobs (
    digest      TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sealed      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (digest, owner_id)
);

CREATE TABLE profiles (
    function    TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (function, name)
);
