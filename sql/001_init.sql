-- 001: the messages table.
--
-- message_id is the primary key: storing a message twice is impossible, which is what makes
-- ingest exactly-once. `ts` is kept exactly as received; `ts_key` is its sort key (see
-- src/timestamp.rs), which orders rows by instant at any fractional precision.
CREATE TABLE messages (
    message_id  TEXT PRIMARY KEY NOT NULL,
    sender      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    ts          TEXT NOT NULL,
    ts_key      TEXT NOT NULL,
    text        TEXT,
    received_at TEXT NOT NULL
);

-- GET /messages order (and `since`), and /stats first/last.
CREATE INDEX messages_by_ts ON messages (ts_key, message_id);

-- GET /messages?from=… in order, and /stats per-sender counts.
CREATE INDEX messages_by_sender ON messages (sender, ts_key, message_id);
