-- A purge's deletion, in the purge's transaction: the rows $1 names, and the per-sender
-- decrements they cause. Returns how many went, and the senders now at 0, which the next
-- statement deletes (it sees these decrements; this statement's own parts could not).
WITH gone AS (
    DELETE FROM messages WHERE message_id = ANY($1) RETURNING sender
),
per_sender AS (
    SELECT sender, count(*) AS n FROM gone GROUP BY sender
),
decremented AS (
    UPDATE sender_counts SET count = sender_counts.count - per_sender.n
    FROM per_sender WHERE sender_counts.sender = per_sender.sender
    RETURNING sender_counts.sender, sender_counts.count
)
SELECT (SELECT count(*) FROM gone),
       coalesce((SELECT array_agg(sender) FROM decremented WHERE count = 0), '{}')
