-- 002: arrival order for retention, and the aggregates /stats and the totals read.
--
-- The table is rebuilt so every row has an explicit arrival number, `seq` (an INTEGER PRIMARY
-- KEY: the rowid itself, which VACUUM may not renumber and the text index is keyed on). Rows keep
-- their arrival order: schema 1's implicit rowid grew by one per insert. Until this migration
-- commits the old table is untouched, so a failure (say a full disk: the copy needs as much room
-- again as the table) leaves a working schema-1 database.
CREATE TABLE messages_v2 (
    seq         INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL,
    sender      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    ts          TEXT NOT NULL,
    ts_key      TEXT NOT NULL,
    text        TEXT,
    received_at TEXT NOT NULL
);
INSERT INTO messages_v2 (message_id, sender, recipient, ts, ts_key, text, received_at)
    SELECT message_id, sender, recipient, ts, ts_key, text, received_at
    FROM messages ORDER BY rowid;
DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;

-- Exactly once: storing a message_id twice is impossible.
CREATE UNIQUE INDEX messages_by_id ON messages (message_id);
-- GET /messages order (and `since`, and keyset cursors), and /stats first/last.
CREATE INDEX messages_by_ts ON messages (ts_key, message_id);
-- GET /messages?from=… in order.
CREATE INDEX messages_by_sender ON messages (sender, ts_key, message_id);

-- One row: how many messages and distinct senders are stored.
CREATE TABLE totals (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    messages INTEGER NOT NULL,
    senders  INTEGER NOT NULL
);
-- Messages per sender; a sender with none has no row. The index serves the top 10.
CREATE TABLE sender_counts (
    sender TEXT PRIMARY KEY NOT NULL,
    n      INTEGER NOT NULL CHECK (n > 0)
) WITHOUT ROWID;
CREATE INDEX sender_counts_by_n ON sender_counts (n DESC, sender);

INSERT INTO sender_counts (sender, n) SELECT sender, count(*) FROM messages GROUP BY sender;
INSERT INTO totals (id, messages, senders)
    VALUES (1, (SELECT count(*) FROM messages), (SELECT count(*) FROM sender_counts));

-- The aggregates move with every row inserted or deleted, inside the same statement and so the
-- same transaction: they can never disagree with the rows. (`INSERT … DO NOTHING` on a duplicate
-- inserts nothing and fires nothing.)
CREATE TRIGGER messages_counted AFTER INSERT ON messages BEGIN
    UPDATE totals SET
        messages = messages + 1,
        senders = senders + NOT EXISTS (SELECT 1 FROM sender_counts WHERE sender = NEW.sender)
    WHERE id = 1;
    INSERT INTO sender_counts (sender, n) VALUES (NEW.sender, 1)
        ON CONFLICT (sender) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER messages_uncounted AFTER DELETE ON messages BEGIN
    UPDATE totals SET
        messages = messages - 1,
        senders = senders - (SELECT n = 1 FROM sender_counts WHERE sender = OLD.sender)
    WHERE id = 1;
    DELETE FROM sender_counts WHERE sender = OLD.sender AND n = 1;
    UPDATE sender_counts SET n = n - 1 WHERE sender = OLD.sender;
END;

-- A stored message is never changed (a duplicate keeps the first row): an UPDATE is a bug.
CREATE TRIGGER messages_unchanged BEFORE UPDATE ON messages BEGIN
    SELECT RAISE(ABORT, 'stored messages are never changed');
END;
