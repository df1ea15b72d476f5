-- The text index for `q` (HOOKBOX_TEXT_INDEX=on, the default); created, and filled from the
-- stored rows, at startup when missing.
--
-- FTS5 with the trigram tokenizer: for a needle of 3 or more characters it yields every row
-- holding all of the needle's trigrams, a superset of the rows containing it, which the exact
-- check narrows. It indexes `hookbox_fold(text)`, the same Unicode case fold the needle gets
-- (src/text.rs), so it is case-sensitive itself and never folds in a different way. Contentless
-- (the text lives in `messages` only), with deletes by rowid = `seq` so purges keep it exact;
-- `detail = none` (no positions: about a third of the size, and faster to fill) because the exact
-- check does what positions would.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text,
    content = '',
    contentless_delete = 1,
    detail = none,
    tokenize = 'trigram case_sensitive 1'
);

INSERT INTO messages_fts (rowid, text)
    SELECT seq, hookbox_fold(text) FROM messages WHERE text IS NOT NULL;
-- Every stored row is in the index now (see sql/003_text_index_tail.sql).
UPDATE text_index_state SET indexed_upto = (SELECT coalesce(max(seq), 0) FROM messages)
    WHERE id = 1;

-- New rows are not added by a trigger, nor inside their insert: FTS5 writes its pending terms
-- out as a new segment at every statement that touches it, so a per-row trigger made that once
-- per message (40% of import time), and even once per commit it cost durable ingest 20%. The
-- writer's upkeep adds them between commits, many rows per statement (`Sqlite::index_pending` in
-- src/store/sqlite/text_index.rs); rows not added yet are the tail, above
-- `text_index_state.indexed_upto`.
--
-- Deletes come in few statements, so a trigger serves them. It also fires for a purged tail row,
-- which is not in the index: deleting an absent rowid from a contentless-delete FTS5 table changes
-- nothing (pinned by a unit test in src/store/sqlite/tests.rs), so it needs no watermark check.
CREATE TRIGGER messages_text_unindexed AFTER DELETE ON messages WHEN OLD.text IS NOT NULL BEGIN
    DELETE FROM messages_fts WHERE rowid = OLD.seq;
END;
