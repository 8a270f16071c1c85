-- Functions calling functions: a job's nested calls act for whoever submitted it,
-- with the rights of the token they used (JSON: user, token id, scopes). Jobs
-- submitted before call trees have none, and make no nested calls.
ALTER TABLE jobs ADD COLUMN acting TEXT;
