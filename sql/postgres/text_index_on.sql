-- HOOKBOX_TEXT_INDEX=on (the default): `q` is served by a trigram index over the folded text,
-- LIKE '%needle%'. Needles of 1 or 2 characters have no trigram and scan instead; the answer is
-- the same either way, since PostgreSQL rechecks every candidate against the LIKE.
-- Run under the migration lock at startup; a no-op when the index exists.
CREATE INDEX IF NOT EXISTS messages_text_trgm ON messages USING gin (text_folded gin_trgm_ops);
