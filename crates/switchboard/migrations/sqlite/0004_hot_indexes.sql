-- Indexes that cost more to keep than they give, under a call storm.
--
-- The CDR indexes by caller, callee and answering extension (SQLite only): every call
-- inserted into each of them at a place set by the extension number, and SQLite's
-- write-ahead log holds whole pages, so each such insert rewrote a 4 KiB page in the log
-- and again at the checkpoint (measured: 13 us of CPU per call of 48 for recording).
-- `GET /api/cdr?extension=` reads the newest records through cdr_started and stops at
-- the page asked; a `from`/`to` range bounds the scan. PostgreSQL logs row changes, not
-- pages, and keeps the three.
DROP INDEX cdr_caller;
DROP INDEX cdr_callee;
DROP INDEX cdr_answered_by;

-- The events index by type (both databases): no query used it (readers go by sequence
-- and filter the type with LIKE on a bound pattern, which no index serves), and every
-- event paid an insert into it, in three places at once under a call storm.
DROP INDEX events_type_seq;
