-- Access to code follows access to functions: an artefact is reachable by the users
-- who uploaded its bytes and from the namespaces holding a version that pins it.
CREATE TABLE artefact_uploads (
    digest      TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (digest, user_id)
);
ALTER TABLE versions ADD COLUMN artefact TEXT;
UPDATE versions SET artefact = (spec::jsonb)->>'artefact';
CREATE INDEX versions_by_artefact ON versions (artefact);

-- A token created with another token dies with it (revocation and expiry cascade).
ALTER TABLE tokens ADD COLUMN parent_id TEXT;
CREATE INDEX tokens_by_parent ON tokens (parent_id);
