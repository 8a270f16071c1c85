-- Invocation records are written at the rate of calls: only listings by function
-- keep an index of their own; listings by namespace walk the records newest first.
DROP INDEX invocations_by_namespace;
