-- Values of the installation that every node shares: the salt of a passphrase-derived
-- master key and the check value that tells a node it holds the right master key.
CREATE TABLE node_settings (
    name   TEXT PRIMARY KEY NOT NULL,
    value  TEXT NOT NULL
);
