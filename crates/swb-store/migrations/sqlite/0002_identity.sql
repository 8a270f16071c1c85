-- Every namespace, personal or team, has exactly one owner.
CREATE TABLE namespaces (
    name        TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
);
INSERT INTO namespaces (name, owner_id, created_at) SELECT namespace, id, created_at FROM users;

-- Grants by e-mail, so that they apply to accounts created later. function = '' means
-- the whole namespace.
CREATE TABLE shares (
    namespace   TEXT NOT NULL,
    function    TEXT NOT NULL,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, function, email)
);

CREATE INDEX tokens_by_user ON tokens (user_id);

CREATE TABLE audit (
    id         TEXT PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    namespace  TEXT,
    target     TEXT NOT NULL,
    details    TEXT NOT NULL
);
CREATE INDEX audit_by_namespace ON audit (namespace, id);
