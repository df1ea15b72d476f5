-- PostgreSQL 002: what the feed (GET /feed, `hookbox export --follow`) reads besides the rows.
--
-- A row's feed position is its `arrival`. Writers take a transaction-scoped advisory lock before
-- drawing arrival numbers and hold it through their commit (src/store/postgres/feed.rs,
-- ARCHITECTURE.md "The feed's order"), so rows become visible in arrival order on every instance.
--
-- `purged_upto` is the highest arrival retention has deleted: a consumer whose position is below
-- it has missed something (`"gap": true`). `store_id` names this database in every position token,
-- so a token from another store is refused rather than read as a position here.
CREATE TABLE feed_state (
    id          smallint PRIMARY KEY CHECK (id = 1),
    store_id    text NOT NULL,
    purged_upto bigint NOT NULL
);
INSERT INTO feed_state (id, store_id, purged_upto)
    VALUES (1, substr(md5(random()::text || clock_timestamp()::text), 1, 16), 0);

-- Once per purge statement (only one instance purges at a time), from the deleted rows.
CREATE FUNCTION hookbox_feed_purged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE feed_state SET purged_upto = greatest(purged_upto, (SELECT max(arrival) FROM gone))
        WHERE id = 1 AND EXISTS (SELECT 1 FROM gone);
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_feed_purged AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION hookbox_feed_purged();
