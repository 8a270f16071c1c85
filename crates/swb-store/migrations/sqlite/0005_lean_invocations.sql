-- Invocation records are written at the rate of calls: keep them in two B-trees
-- instead of four. The rows are keyed by id itself (WITHOUT ROWID: no separate
-- rowid tree and id index), and only listings by function have an index of their
-- own; listings by namespace walk the records newest first.
CREATE TABLE invocations_lean (
    id           TEXT PRIMARY KEY NOT NULL,
    namespace    TEXT NOT NULL,
    function     TEXT NOT NULL,
    version      INTEGER,
    worker       TEXT,
    started_at   INTEGER NOT NULL,
    duration_us  INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    error        TEXT,
    stderr_tail  TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
INSERT INTO invocations_lean
    SELECT id, namespace, function, version, worker, started_at, duration_us, outcome,
           error, stderr_tail
    FROM invocations;
DROP TABLE invocations;
ALTER TABLE invocations_lean RENAME TO invocations;
CREATE INDEX invocations_by_function ON invocations (function, id);
