-- The Postgres schema: the same tables as the SQLite migrations 0001-0003, with
-- Postgres types (BIGINT times and counters, BOOLEAN flags, BYTEA bytes). JSON kept as
-- TEXT, as in SQLite, so that both backends read rows the same way.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    namespace   TEXT NOT NULL UNIQUE,
    is_admin    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_hash  BYTEA NOT NULL,
    scopes       TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX tokens_by_user ON tokens (user_id);

CREATE TABLE artefacts (
    digest      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    bytes       BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE functions (
    id              BIGSERIAL PRIMARY KEY,
    namespace       TEXT NOT NULL,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    active_version  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (namespace, name)
);

CREATE TABLE versions (
    function_id  BIGINT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    spec         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (function_id, version)
);

CREATE TABLE invocations (
    id           TEXT PRIMARY KEY,
    namespace    TEXT NOT NULL,
    function     TEXT NOT NULL,
    version      BIGINT,
    worker       TEXT,
    started_at   BIGINT NOT NULL,
    duration_us  BIGINT NOT NULL,
    outcome      TEXT NOT NULL,
    error        TEXT,
    stderr_tail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX invocations_by_function ON invocations (function, id);
CREATE INDEX invocations_by_namespace ON invocations (namespace, id);

CREATE TABLE namespaces (
    name        TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE shares (
    namespace   TEXT NOT NULL,
    function    TEXT NOT NULL,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (namespace, function, email)
);

CREATE TABLE audit (
    id         TEXT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    namespace  TEXT,
    target     TEXT NOT NULL,
    details    TEXT NOT NULL
);
CREATE INDEX audit_by_namespace ON audit (namespace, id);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    owner_id         TEXT NOT NULL,
    function         TEXT NOT NULL,
    namespace        TEXT NOT NULL,
    version          BIGINT,
    input            BYTEA,
    input_blob       TEXT,
    profile          TEXT,
    idempotency_key  TEXT,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    timeout_ms       BIGINT,
    run_after        BIGINT NOT NULL,
    lease_until      BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    waiting          TEXT,
    result           BYTEA,
    result_blob      TEXT,
    error            TEXT,
    attempt_errors   TEXT NOT NULL DEFAULT '[]',
    stderr_tail      TEXT NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_ready ON jobs (status, run_after);
CREATE INDEX jobs_by_owner ON jobs (owner_id, id);

CREATE TABLE blobs (
    digest      TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    size        BIGINT NOT NULL,
    sealed      BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (digest, owner_id)
);

CREATE TABLE profiles (
    function    TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (function, name)
);

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
