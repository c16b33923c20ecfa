-- The events index by type: no query used it (readers go by sequence and filter the
-- type with LIKE on a bound pattern, which no index serves), and every event paid an
-- insert into it. (SQLite's 0004 also drops the CDR party indexes, which PostgreSQL,
-- logging row changes rather than whole pages, keeps.)
DROP INDEX events_type_seq;
