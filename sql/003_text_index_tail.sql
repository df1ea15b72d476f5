-- 003: the text index's watermark. Rows are no longer added to the text index inside their insert;
-- the writer adds them between commits, in short transactions of their own, oldest first (see
-- `Sqlite::index_pending`, src/store/sqlite/text_index.rs). `indexed_upto` is the highest `seq` up
-- to which every row is in `messages_fts` (those with text; a row without text needs no entry).
-- Rows above it are "the tail": `q` verifies every one of them besides the index's candidates, so
-- its answers stay exact, and the writer keeps the tail short (README, "Growth").
--
-- Meaningful only while `messages_fts` exists: sql/text_index_on.sql sets it after filling the
-- index, sql/text_index_off.sql resets it.
CREATE TABLE text_index_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL
);
-- Schema 2 added every row to the index inside its own insert: all stored rows are in it.
INSERT INTO text_index_state (id, indexed_upto) SELECT 1, coalesce(max(seq), 0) FROM messages;
