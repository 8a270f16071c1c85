-- Invocation records are written at the rate of calls, and read newest first, a page
-- at a time. They are kept in batches: one row per function and write (the records
-- the recorder gathered, up to 1,000), its records a JSON array of arrays
-- [id, version, worker, started_at, duration_us, outcome, error, stderr_tail].
-- A call then costs a share of one row instead of a row in two B-trees.
CREATE TABLE invocation_batches (
    seq        BIGSERIAL PRIMARY KEY,
    namespace  TEXT NOT NULL,
    function   TEXT NOT NULL,
    first_id   TEXT NOT NULL,
    last_id    TEXT NOT NULL,
    records    BIGINT NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX invocation_batches_by_last_id ON invocation_batches (last_id, first_id);
CREATE INDEX invocation_batches_by_function ON invocation_batches (function, last_id);
INSERT INTO invocation_batches (namespace, function, first_id, last_id, records, body)
    SELECT namespace, function, id, id, 1,
           json_build_array(json_build_array(id, version, worker, started_at, duration_us,
                                             outcome, error::json, stderr_tail))::text
    FROM invocations;
DROP TABLE invocations;
