-- One batch from the writer, as one statement and so one transaction and one durable commit:
-- the messages, and the aggregates' deltas for the rows actually created. $1..$7 and $10 are the
-- batch's columns (ids already distinct; see src/store/postgres.rs), $8 received_at, $9 the
-- totals shard. Returns the ids created; the others were already stored (duplicates).
WITH batch AS (
    -- Arrival numbers are drawn in input order (as SQLite's rowids are), before the rows are
    -- sorted for locking; an id that turns out to be a duplicate leaves a gap, which is harmless.
    SELECT b.*, nextval('messages_arrival_seq') AS arrival
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $10::bytea[]) WITH ORDINALITY
        AS b (message_id, sender, recipient, ts, ts_key, text, text_folded, text_folded_bytes,
              ordinal)
    ORDER BY ordinal
),
created AS (
    INSERT INTO messages (message_id, sender, recipient, ts, ts_key, text, text_folded,
                          text_folded_bytes, received_at, arrival)
    SELECT message_id, sender, recipient, ts, ts_key, text, text_folded, text_folded_bytes, $8,
           arrival
    FROM batch
    -- One lock order for every instance: overlapping batches wait, never deadlock.
    ORDER BY message_id COLLATE "C"
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id, sender
),
per_sender AS (
    INSERT INTO sender_counts (sender, count)
    SELECT sender, count(*) FROM created GROUP BY sender ORDER BY sender
    ON CONFLICT (sender) DO UPDATE SET count = sender_counts.count + excluded.count
    RETURNING (xmax = 0) AS new_sender
),
counted AS (
    UPDATE totals SET messages = messages + (SELECT count(*) FROM created),
                      senders = senders + (SELECT count(*) FROM per_sender WHERE new_sender)
    WHERE shard = $9 AND EXISTS (SELECT 1 FROM created)
)
SELECT message_id FROM created
