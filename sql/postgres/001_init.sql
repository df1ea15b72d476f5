-- PostgreSQL 001: messages, their indexes, and the aggregates /stats reads.
--
-- The same design as the SQLite schema. message_id is the primary key: storing a message twice
-- is impossible, for every instance sharing this database, which is what makes ingest
-- exactly-once. `ts` is kept exactly as received; `ts_key` is its sort key (src/timestamp.rs).
-- Every key column is COLLATE "C": byte order, which is SQLite's order, so /messages pages and
-- keyset cursors agree on both stores whatever the database's locale.

-- Trigram indexes serve `q` (a case-insensitive literal substring) at any position. pg_trgm is
-- a trusted extension since PostgreSQL 13: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE messages (
    message_id  text COLLATE "C" PRIMARY KEY,
    sender      text COLLATE "C" NOT NULL,
    recipient   text NOT NULL,
    ts          text NOT NULL,
    ts_key      text COLLATE "C" NOT NULL,
    text        text,
    -- crate::text::fold(text), computed in Rust: the very fold SQLite's index uses, so `q`
    -- cannot mean one thing here and another there (lower() would follow the server's locale).
    text_folded text COLLATE "C",
    -- The same fold, as bytes, instead of text_folded when it holds U+0000 or U+0001: text cannot
    -- hold U+0000 (`text` stores it escaped, see src/store/postgres.rs), and a `q` needle must
    -- match such rows exactly; they are rare, and a partial index finds them.
    text_folded_bytes bytea,
    -- When the writer committed it (timestamp::now_utc: fixed width, so text order is time order).
    received_at text COLLATE "C" NOT NULL,
    -- Arrival order, for HOOKBOX_RETAIN_MESSAGES ("keep the newest N").
    arrival     bigserial NOT NULL
);

-- GET /messages order, `since`, keyset cursors, and /stats first/last.
CREATE INDEX messages_by_ts ON messages (ts_key, message_id);
-- GET /messages?from=… in order.
CREATE INDEX messages_by_sender ON messages (sender, ts_key, message_id);
-- Retention: the oldest by arrival go first, and what arrived before a cut-off.
CREATE INDEX messages_by_arrival ON messages (arrival);
CREATE INDEX messages_by_received ON messages (received_at);
CREATE INDEX messages_with_text_bytes ON messages (message_id) WHERE text_folded_bytes IS NOT NULL;
-- The trigram index for `q` is not part of the schema: HOOKBOX_TEXT_INDEX creates or drops it at
-- every startup (sql/postgres/text_index_on.sql, text_index_off.sql).

-- Messages per sender, changed in the insert's (and the purge's) own transaction by the batch's
-- delta. A row is locked only by batches holding that sender, never by all writers at once. A
-- purge that takes a sender to 0 deletes its row in the same transaction (a row at 0 exists only
-- inside it), so outside a transaction there is a row exactly for each sender with messages.
CREATE TABLE sender_counts (
    sender  text COLLATE "C" PRIMARY KEY,
    count   bigint NOT NULL CHECK (count >= 0)
);
-- /stats top ten: count descending, then sender ascending, read straight off the index.
CREATE INDEX sender_counts_top ON sender_counts (count DESC, sender);

-- Totals (messages and senders), split over shards: a batch adds its delta to one random shard,
-- so concurrent writers rarely touch the same row; /stats sums the 16 rows.
CREATE TABLE totals (
    shard    smallint PRIMARY KEY,
    messages bigint NOT NULL,
    senders  bigint NOT NULL
);
INSERT INTO totals (shard, messages, senders) SELECT shard, 0, 0 FROM generate_series(0, 15) AS shard;
