//! The PostgreSQL store's statements: each function takes a live client and runs one operation
//! (its own transaction or snapshot); reconnecting and sorting errors is `connection`'s job.

use std::borrow::Cow;
use std::collections::HashSet;
use std::time::Instant;

use postgres::types::ToSql;
use postgres::{Client, IsolationLevel, Row, Transaction};

use super::escape::{escape_nul, needs_escape, unescape_nul};
use crate::message::Message;
use crate::store::{ExportFilter, ListQuery, Page, SenderCount, Stats, StoredMessage};
use crate::text;

/// Advisory lock key for purges ("hookbox" and a number), the same in every instance.
pub const PURGE_LOCK: i64 = 0x686f_6f6b_626f_7802;

/// Shards of the `totals` table (see sql/postgres/001_init.sql).
const TOTAL_SHARDS: u32 = 16;

/// Rows fetched per round trip while exporting: memory stays constant whatever the table holds.
const EXPORT_FETCH_ROWS: i32 = 500;

/// One batch as one statement (see the file).
pub const INSERT_BATCH: &str = include_str!("../../../sql/postgres/insert_batch.sql");

/// The rows a purge deletes, and the per-sender decrements they cause (all in one statement).
const PURGE_DELETE: &str = include_str!("../../../sql/postgres/purge_delete.sql");

pub(super) fn read_snapshot(
    client: &mut Client,
    timeout_ms: u128,
) -> Result<Transaction<'_>, postgres::Error> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {timeout_ms}"))?;
    Ok(tx)
}

/// `needle` as a LIKE pattern matching it literally anywhere (`\` is the escape character), on
/// the text column: escaped like the stored text, so it carries no U+0000 either.
fn like_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for ch in escape_nul(&text::fold(needle)).chars() {
        if matches!(ch, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    pattern
}

pub fn list_in(
    client: &mut Client,
    timeout_ms: u128,
    query: &ListQuery,
) -> Result<Page, postgres::Error> {
    // Every stored sender is `+digits`: a `from` holding U+0000 (which no text parameter can
    // carry) matches nothing, and is answered without asking.
    if query.from.as_deref().is_some_and(needs_escape) {
        return Ok(Page {
            rows: Vec::new(),
            total: 0,
        });
    }
    // Sort keys are escaped like ids (order is kept): a forged cursor's key cannot fail the read.
    let since_key = query.since_key.as_deref().map(escape_nul);
    let after_key = query.after.as_ref().map(|after| escape_nul(&after.ts_key));
    let pattern = query.text.as_deref().map(like_pattern);
    let needle_bytes = query
        .text
        .as_deref()
        .map(|needle| text::fold(needle).into_bytes());
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<&(dyn ToSql + Sync)> = Vec::new();
    from_and_since(&query.from, &since_key, &mut conditions, &mut values);
    if let (Some(pattern), Some(needle_bytes)) = (&pattern, &needle_bytes) {
        values.push(pattern);
        values.push(needle_bytes);
        conditions.push(format!(
            "(text_folded LIKE ${} ESCAPE '\\'
              OR (text_folded_bytes IS NOT NULL AND position(${} IN text_folded_bytes) > 0))",
            values.len() - 1,
            values.len()
        ));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };

    let mut tx = read_snapshot(client, timeout_ms)?;
    // The aggregates answer the common totals without counting rows.
    let total: i64 = match (&query.from, &since_key, &pattern) {
        (None, None, None) => tx
            .query_one("SELECT coalesce(sum(messages), 0)::bigint FROM totals", &[])?
            .get(0),
        (Some(from), None, None) => tx
            .query_opt("SELECT count FROM sender_counts WHERE sender = $1", &[from])?
            .map_or(0, |row| row.get(0)),
        _ => tx
            .query_one(&format!("SELECT count(*) FROM messages{filter}"), &values)?
            .get(0),
    };

    // Past the end: nothing to read, and no index to walk to find that out.
    if query.offset >= u64::try_from(total).unwrap_or(0) {
        tx.commit()?;
        return Ok(Page {
            rows: Vec::new(),
            total,
        });
    }
    let mut page_conditions = conditions;
    let mut page_values = values;
    let after_id = query
        .after
        .as_ref()
        .map(|after| escape_nul(&after.message_id));
    if let (Some(after_key), Some(after_id)) = (&after_key, &after_id) {
        page_values.push(after_key);
        page_values.push(after_id);
        page_conditions.push(format!(
            "(ts_key, message_id) > (${}, ${})",
            page_values.len() - 1,
            page_values.len()
        ));
    }
    let limit = i64::from(query.limit);
    // OFFSET is a bigint: a larger u64 still reads nothing, never "no limit".
    let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
    page_values.push(&limit);
    page_values.push(&offset);
    let page_filter = if page_conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", page_conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT message_id, sender, recipient, ts, text FROM messages{page_filter}
         ORDER BY ts_key, message_id LIMIT ${} OFFSET ${}",
        page_values.len() - 1,
        page_values.len()
    );
    let rows = tx
        .query(&sql, &page_values)?
        .iter()
        .map(stored_message)
        .collect();
    tx.commit()?;
    Ok(Page { rows, total })
}

pub fn stats_in(client: &mut Client, timeout_ms: u128) -> Result<Stats, postgres::Error> {
    let mut tx = read_snapshot(client, timeout_ms)?;
    let totals = tx.query_one(
        "SELECT coalesce(sum(messages), 0)::bigint, coalesce(sum(senders), 0)::bigint FROM totals",
        &[],
    )?;
    let messages_per_sender = tx
        .query(
            "SELECT sender, count FROM sender_counts WHERE count > 0
             ORDER BY count DESC, sender LIMIT 10",
            &[],
        )?
        .iter()
        .map(|row| SenderCount {
            from: row.get(0),
            count: row.get(1),
        })
        .collect();
    let first_message_ts = tx
        .query_opt(
            "SELECT ts FROM messages ORDER BY ts_key, message_id LIMIT 1",
            &[],
        )?
        .map(|row| row.get(0));
    let last_message_ts = tx
        .query_opt(
            "SELECT ts FROM messages ORDER BY ts_key DESC, message_id DESC LIMIT 1",
            &[],
        )?
        .map(|row| row.get(0));
    tx.commit()?;
    Ok(Stats {
        total_messages: totals.get(0),
        senders_count: totals.get(1),
        messages_per_sender,
        first_message_ts,
        last_message_ts,
    })
}

pub fn purge_in(
    client: &mut Client,
    keep_messages: u64,
    cutoff: Option<&str>,
    batch: i64,
) -> Result<usize, postgres::Error> {
    let mut tx = client.transaction()?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PURGE_LOCK])?
        .get(0);
    if !locked {
        return Ok(0); // Another instance is purging; dropping `tx` rolls back.
    }
    let mut victims: Vec<String> = Vec::new();
    if keep_messages > 0 {
        let total: i64 = tx
            .query_one("SELECT coalesce(sum(messages), 0)::bigint FROM totals", &[])?
            .get(0);
        let excess = total.saturating_sub(i64::try_from(keep_messages).unwrap_or(i64::MAX));
        if excess > 0 {
            let take = excess.min(batch);
            victims.extend(
                tx.query(
                    "SELECT message_id FROM messages ORDER BY arrival LIMIT $1",
                    &[&take],
                )?
                .iter()
                .map(|row| row.get::<_, String>(0)),
            );
        }
    }
    if let Some(cutoff) = cutoff {
        let room = batch - victims.len() as i64;
        if room > 0 {
            victims.extend(
                tx.query(
                    "SELECT message_id FROM messages WHERE received_at < $1
                     ORDER BY received_at LIMIT $2",
                    &[&cutoff, &room],
                )?
                .iter()
                .map(|row| row.get::<_, String>(0)),
            );
        }
        victims.sort_unstable();
        victims.dedup();
    }
    if victims.is_empty() {
        return Ok(0);
    }
    let row = tx.query_one(PURGE_DELETE, &[&victims])?;
    let gone: i64 = row.get(0);
    let emptied: Vec<String> = row.get(1);
    // A later statement sees the decrements; a sender whose count is 0 goes, and so does its
    // place in `senders`. (A concurrent insert of that sender waits for us, then adds it anew.)
    let senders_gone = tx.execute(
        "DELETE FROM sender_counts WHERE sender = ANY($1) AND count = 0",
        &[&emptied],
    )?;
    tx.execute(
        "UPDATE totals SET messages = messages - $1, senders = senders - $2 WHERE shard = $3",
        &[
            &gone,
            &i64::try_from(senders_gone).unwrap_or(0),
            &random_shard(),
        ],
    )?;
    tx.commit()?;
    Ok(usize::try_from(gone).unwrap_or(0))
}

pub enum Export {
    Database(postgres::Error),
    Write(std::io::Error),
}

impl From<postgres::Error> for Export {
    fn from(error: postgres::Error) -> Export {
        Export::Database(error)
    }
}

/// The `from` and `since` conditions `/messages` and export share, their parameters numbered
/// after those already in `values`.
fn from_and_since<'a>(
    from: &'a Option<String>,
    since_key: &'a Option<Cow<'a, str>>,
    conditions: &mut Vec<String>,
    values: &mut Vec<&'a (dyn ToSql + Sync)>,
) {
    if let Some(from) = from {
        values.push(from);
        conditions.push(format!("sender = ${}", values.len()));
    }
    if let Some(since_key) = since_key {
        values.push(since_key);
        conditions.push(format!("ts_key >= ${}", values.len()));
    }
}

pub fn export_in(
    client: &mut Client,
    filter: &ExportFilter,
    each: &mut dyn FnMut(&StoredMessage) -> std::io::Result<()>,
) -> Result<(), Export> {
    if filter.from.as_deref().is_some_and(needs_escape) {
        return Ok(()); // No stored sender holds U+0000 (see `list_in`).
    }
    let since_key = filter.since_key.as_deref().map(escape_nul);
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<&(dyn ToSql + Sync)> = Vec::new();
    from_and_since(&filter.from, &since_key, &mut conditions, &mut values);
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let mut tx = read_snapshot(client, 0)?;
    // Between fetches the transaction is idle while `each` writes; a slow reader (a pipe into
    // `hookbox import`) must not get the session ended under it.
    tx.batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0")?;
    let portal = tx.bind(
        &format!(
            "SELECT message_id, sender, recipient, ts, text FROM messages{filter_sql}
             ORDER BY ts_key, message_id"
        ),
        &values,
    )?;
    loop {
        let rows = tx.query_portal(&portal, EXPORT_FETCH_ROWS)?;
        for row in &rows {
            each(&stored_message(row)).map_err(Export::Write)?;
        }
        if rows.len() < EXPORT_FETCH_ROWS as usize {
            break;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn stored_message(row: &Row) -> StoredMessage {
    StoredMessage {
        message_id: unescape_nul(row.get(0)),
        from: row.get(1),
        to: row.get(2),
        ts: row.get(3),
        text: row.get::<_, Option<String>>(4).map(unescape_nul),
    }
}

/// A shard of `totals` for this batch: spread, not strictly random (no RNG crate needed).
/// Inserts `unique` (ids distinct) with the prepared `INSERT_BATCH`, in one statement and so one
/// transaction; returns the ids it created (the others were stored already).
pub fn insert_in(
    client: &mut Client,
    statement: &postgres::Statement,
    unique: &[&Message],
    received_at: &str,
) -> Result<HashSet<String>, postgres::Error> {
    let column = |field: fn(&Message) -> &str| -> Vec<&str> {
        unique.iter().map(|message| field(message)).collect()
    };
    let ids: Vec<_> = unique.iter().map(|m| escape_nul(&m.message_id)).collect();
    let senders = column(|m| &m.from);
    let recipients = column(|m| &m.to);
    let ts = column(|m| &m.ts);
    let ts_keys = column(|m| &m.ts_key);
    let texts: Vec<_> = unique
        .iter()
        .map(|m| m.text.as_deref().map(escape_nul))
        .collect();
    // The folded text goes to the indexed text column, or, when it holds U+0000 or U+0001
    // (which the escape would turn into look-alike sequences), to the exact bytes column.
    let (folded, folded_bytes): (Vec<Option<String>>, Vec<Option<Vec<u8>>>) = unique
        .iter()
        .map(|m| match m.text.as_deref().map(text::fold) {
            Some(folded) if needs_escape(&folded) => (None, Some(folded.into_bytes())),
            other => (other, None),
        })
        .unzip();
    let shard = random_shard();
    let params: [&(dyn ToSql + Sync); 10] = [
        &ids,
        &senders,
        &recipients,
        &ts,
        &ts_keys,
        &texts,
        &folded,
        &received_at,
        &shard,
        &folded_bytes,
    ];
    // Under the feed's lock: rows become visible in arrival order (feed.rs).
    Ok(
        super::feed::insert_in_arrival_order(client, statement, &params)?
            .iter()
            .map(|row| unescape_nul(row.get(0)))
            .collect(),
    )
}

pub fn random_shard() -> i16 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(Instant::now()) % u64::from(TOTAL_SHARDS)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_literal_and_folded() {
        assert_eq!(like_pattern("Hello"), "%hello%");
        assert_eq!(like_pattern("100%"), "%100\\%%");
        assert_eq!(like_pattern("a_c"), "%a\\_c%");
        assert_eq!(like_pattern("back\\slash"), "%back\\\\slash%");
        assert_eq!(like_pattern("*"), "%*%");
        assert_eq!(like_pattern("ÄRGER"), "%ärger%");
        assert_eq!(like_pattern("a\u{0}b"), "%a\u{1}\u{1}b%");
    }
}
