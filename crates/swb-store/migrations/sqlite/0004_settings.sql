-- Values the servers on one database share (e.g. the cluster id).
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
