CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    namespace   TEXT NOT NULL UNIQUE,
    is_admin    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

-- Tokens are stored as SHA-256 hashes of their secret part; the id is public.
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_hash  BLOB NOT NULL,
    scopes       TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER
);

CREATE TABLE artefacts (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    bytes       BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE functions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace       TEXT NOT NULL,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    active_version  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (namespace, name)
);

-- A version is immutable once written: its spec is the JSON of swb_api::VersionInfo.
CREATE TABLE versions (
    function_id  INTEGER NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
    version      INTEGER NOT NULL,
    spec         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (function_id, version)
);

-- Ids are UUIDv7, so ordering by id is ordering by start time.
CREATE TABLE invocations (
    id           TEXT PRIMARY KEY,
    namespace    TEXT NOT NULL,
    function     TEXT NOT NULL,
    version      INTEGER,
    worker       TEXT,
    started_at   INTEGER NOT NULL,
    duration_us  INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    error        TEXT,
    stderr_tail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX invocations_by_function ON invocations (function, id);
CREATE INDEX invocations_by_namespace ON invocations (namespace, id);
