-- The text index for `q` (HOOKBOX_TEXT_INDEX=on, the default); created, and filled from the
-- stored rows, at startup when missing.
--
-- FTS5 with the trigram tokenizer finds every row whose text contains a needle of 3 or more
-- characters. It indexes `hookbox_fold(text)`, the same Unicode case fold the needle gets
-- (src/text.rs), so it is case-sensitive itself and never folds in a different way. Contentless
-- (the text lives in `messages` only), with deletes by rowid = `seq` so purges keep it exact.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text,
    content = '',
    contentless_delete = 1,
    tokenize = 'trigram case_sensitive 1'
);

INSERT INTO messages_fts (rowid, text)
    SELECT seq, hookbox_fold(text) FROM messages WHERE text IS NOT NULL;

CREATE TRIGGER messages_text_indexed AFTER INSERT ON messages WHEN NEW.text IS NOT NULL BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (NEW.seq, hookbox_fold(NEW.text));
END;

CREATE TRIGGER messages_text_unindexed AFTER DELETE ON messages WHEN OLD.text IS NOT NULL BEGIN
    DELETE FROM messages_fts WHERE rowid = OLD.seq;
END;
