-- Voicemail (spec 01, "Voicemail"): the messages' metadata; the audio is a WAV file
-- under `data_dir/voicemail/` (`file` is relative to that directory).
--
-- `folder` is text (`new` | `saved`) rather than a `read` flag: it is what the phone
-- menu speaks of, needs no boolean split between the two databases, and can grow
-- (another folder) without a migration of its meaning.
CREATE TABLE voicemail_messages (
    id           TEXT PRIMARY KEY NOT NULL,
    extension    TEXT NOT NULL REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    -- The caller's number and display name, as the call engine knew them.
    caller       TEXT NOT NULL,
    caller_name  TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    folder       TEXT NOT NULL DEFAULT 'new' CHECK (folder IN ('new', 'saved')),
    file         TEXT NOT NULL
);
CREATE INDEX voicemail_messages_extension ON voicemail_messages (extension, received_at);

-- A custom greeting per extension (at most one): a table of its own, not a column of
-- `extensions`, so that the voicemail store owns its SQL, the row carries what the API
-- shows (duration, when it changed) without reading the file, and deleting the
-- extension forgets it (ON DELETE CASCADE) like its messages.
CREATE TABLE voicemail_greetings (
    extension    TEXT PRIMARY KEY NOT NULL REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    file         TEXT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
