-- HOOKBOX_TEXT_INDEX=off: the text index goes, and `q` scans the rows instead. Its pages return
-- to the file's free list and are reused by later inserts (the file does not shrink without a
-- VACUUM). Turning the index back on rebuilds it from the rows.
DROP TRIGGER IF EXISTS messages_text_unindexed;
DROP TABLE IF EXISTS messages_fts;
-- Nothing is indexed (the watermark means nothing without the index; text_index_on.sql sets it).
UPDATE text_index_state SET indexed_upto = 0 WHERE id = 1;
