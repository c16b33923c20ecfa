-- The auto attendant's settings once changed through the API (spec 01 "Auto attendant"):
-- one row (id 1) holding the settings as JSON, the shape `GET /api/auto-attendant`
-- shows. Without the row the `auto_attendant` section of config.yml applies. JSON
-- rather than a table per menu entry: the menu is read and replaced whole, never
-- queried by entry, and its shape can grow without a migration.
CREATE TABLE auto_attendant (
    id          INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    settings    TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL
);
