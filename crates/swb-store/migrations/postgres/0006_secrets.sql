-- Secrets: a namespace's (function = '') or one function's (function = its name),
-- sealed by the server (XChaCha20-Poly1305 with a key kept outside the database):
-- `sealed` is nonce || ciphertext, and no column holds the value in the clear.
-- They go with their namespace.
CREATE TABLE secrets (
    namespace   TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
    function    TEXT NOT NULL,
    name        TEXT NOT NULL,
    sealed      BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (namespace, function, name)
);
