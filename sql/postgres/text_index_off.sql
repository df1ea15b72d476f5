-- HOOKBOX_TEXT_INDEX=off: no trigram index (less disk, cheaper inserts); `q` scans the rows.
-- text_folded is still kept, so turning the index on again only has to build it.
DROP INDEX IF EXISTS messages_text_trgm;
