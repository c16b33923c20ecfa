-- The auto attendant's recorded greeting (one, id 1), played instead of the menu spoken
-- from the settings. The audio is `data_dir/auto-attendant/greeting.wav`; the row says
-- it is there and what the API shows, as `voicemail_greetings` does for mailboxes.
CREATE TABLE auto_attendant_greeting (
    id           INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    duration_ms  BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
