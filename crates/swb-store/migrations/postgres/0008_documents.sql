-- State of parts that keep their own records as JSON (the federation's datasets,
-- federations and queries), by kind and key.
CREATE TABLE documents (
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, key)
);
