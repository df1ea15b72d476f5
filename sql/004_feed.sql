-- 004: positions for the feed (GET /feed, `hookbox export --follow`).
--
-- A row's feed position is `base + seq`. SQLite takes `seq` (the rowid) under its one write lock,
-- so commit order is `seq` order and "rows above N" misses nothing. But a table emptied by
-- retention numbers its next row 1 again: a consumer holding position 500 would then never see
-- rows 1..500 of the new numbering. So when a purge empties the table, `base` moves up to the
-- highest position ever purged, and positions keep growing whatever the rowids do.
--
-- `purged_upto` is the highest position retention has deleted: a consumer whose position is below
-- it has missed something (`"gap": true`). `store_id` names this database in every position token,
-- so a token from another store is refused rather than read as a position here.
CREATE TABLE feed_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    store_id    TEXT NOT NULL,
    base        INTEGER NOT NULL,
    purged_upto INTEGER NOT NULL
);
INSERT INTO feed_state (id, store_id, base, purged_upto) VALUES (1, lower(hex(randomblob(8))), 0, 0);

-- Per deleted row, inside the purge's own statement: two updates of one row, and a probe of the
-- first rowid. Purges delete 64 rows at a time; inserts fire nothing here.
CREATE TRIGGER messages_feed_purged AFTER DELETE ON messages BEGIN
    UPDATE feed_state SET purged_upto = max(purged_upto, base + OLD.seq) WHERE id = 1;
    UPDATE feed_state SET base = purged_upto
        WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM messages);
END;
