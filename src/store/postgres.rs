//! The PostgreSQL store: the same seam as SQLite, for many hookbox instances sharing one database.
//!
//! SQL lives here and in `sql/postgres/`. Each worker owns one connection, the writer owns one;
//! there is no pool. A connection that dies (database restarted, backend terminated, network
//! cut) is dropped and opened again on a later call, after a growing pause, so hookbox recovers
//! by itself; meanwhile every call answers `StoreError::Unavailable` (503 + `Retry-After`) at once
//! instead of waiting.
//!
//! Exactly-once across instances rests on the primary key alone: a batch is one
//! `INSERT … ON CONFLICT (message_id) DO NOTHING RETURNING message_id` statement, whose returned
//! ids are the created ones. The same statement keeps the aggregates (per-sender rows and
//! sharded totals) in its own transaction, so `/stats` and totals are always exact.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, IsolationLevel, NoTls, Row, Statement, Transaction};

use super::{
    ExportFilter, Inserted, ListQuery, Page, Retention, SenderCount, Stats, StoreError,
    StoredMessage,
};
use crate::message::Message;
use crate::store::PostgresOptions;
use crate::text;

/// Migrations in order; migration `i` is recorded as version `i + 1` in `hookbox_schema`.
const MIGRATIONS: &[&str] = &[include_str!("../../sql/postgres/001_init.sql")];

/// Creates or drops the trigram index for `q` (HOOKBOX_TEXT_INDEX), at the server's startup.
const TEXT_INDEX_ON: &str = include_str!("../../sql/postgres/text_index_on.sql");
const TEXT_INDEX_OFF: &str = include_str!("../../sql/postgres/text_index_off.sql");

/// The schema version this build expects.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Advisory lock keys ("hookbox" and a number), the same in every instance.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_626f_7801;
pub const PURGE_LOCK: i64 = 0x686f_6f6b_626f_7802;

/// Shards of the `totals` table (see sql/postgres/001_init.sql).
const TOTAL_SHARDS: u32 = 16;

/// Rows fetched per round trip while exporting: memory stays constant whatever the table holds.
const EXPORT_FETCH_ROWS: i32 = 500;

/// Pause before the first reconnect attempt after a failure, doubled after each failed attempt.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Attempts of one batch when PostgreSQL aborts it for a deadlock or a serialisation failure
/// (possible when instances insert overlapping batches; the rows are sorted to make it rare).
const INSERT_ATTEMPTS: usize = 3;

const INSERT_BATCH: &str = include_str!("../../sql/postgres/insert_batch.sql");

/// The rows a purge deletes, and the per-sender decrements they cause (all in one statement).
const PURGE_DELETE: &str = include_str!("../../sql/postgres/purge_delete.sql");

/// One connection to PostgreSQL, reopened when it dies.
pub struct Postgres {
    config: postgres::Config,
    query_timeout_ms: u128,
    lock_timeout_ms: u128,
    connection: Option<Connection>,
    /// While set, calls fail at once instead of reconnecting (backoff after a failed attempt).
    retry_at: Option<Instant>,
    retry_pause: Duration,
}

/// A live client and the statements prepared on it (they die with it).
struct Connection {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Connection {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// What a failing call was doing, for sorting its error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Doing {
    Reading,
    Writing,
}

impl Postgres {
    /// Connects to the database `options.url` names.
    pub fn open(options: &PostgresOptions) -> Result<Postgres, StoreError> {
        let mut pg_config: postgres::Config = options
            .url
            .parse()
            .map_err(|error| StoreError::Internal(format!("DATABASE_URL: {error}")))?;
        // Bounded waits for a database that is gone: connecting, and a silent peer.
        if pg_config.get_connect_timeout().is_none() {
            pg_config.connect_timeout(Duration::from_secs(5));
        }
        pg_config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("hookbox");
        }
        let mut store = Postgres {
            config: pg_config,
            query_timeout_ms: options.query_timeout.as_millis().max(1),
            lock_timeout_ms: options.lock_timeout.as_millis(),
            connection: None,
            retry_at: None,
            retry_pause: RECONNECT_FIRST,
        };
        store.connection()?;
        Ok(store)
    }

    /// The live connection, reconnecting if the last one died and the backoff pause is over.
    fn connection(&mut self) -> Result<&mut Connection, StoreError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|connection| connection.client.is_closed())
        {
            self.lose_connection();
        }
        if self.connection.is_none() {
            if let Some(at) = self.retry_at {
                if Instant::now() < at {
                    return Err(StoreError::Unavailable(
                        "the connection to PostgreSQL was lost; reconnecting".to_owned(),
                    ));
                }
            }
            match self.connect() {
                Ok(client) => {
                    self.retry_at = None;
                    self.retry_pause = RECONNECT_FIRST;
                    self.connection = Some(Connection {
                        client,
                        statements: HashMap::new(),
                    });
                }
                Err(error) => {
                    self.schedule_retry();
                    return Err(StoreError::Unavailable(format!(
                        "cannot connect to PostgreSQL: {error}"
                    )));
                }
            }
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    fn connect(&self) -> Result<Client, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        // A 200 means durable: the commit waits for the WAL flush, whatever the server default.
        // lock_timeout: a write waiting on a lock fails (503) like SQLite's busy timeout.
        client.batch_execute(&format!(
            "SET synchronous_commit = on; SET lock_timeout = {}; \
             SET idle_in_transaction_session_timeout = 60000",
            self.lock_timeout_ms
        ))?;
        Ok(client)
    }

    fn lose_connection(&mut self) {
        if self.connection.take().is_some() {
            // The first attempt after losing a connection comes soon; later ones back off.
            self.retry_pause = RECONNECT_FIRST;
            self.retry_at = None;
        }
    }

    fn schedule_retry(&mut self) {
        // Jitter, so the connections of many instances do not all knock at the same instant.
        let jitter = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos() % 1000);
        let pause = self.retry_pause + self.retry_pause * jitter / 2000;
        self.retry_at = Some(Instant::now() + pause);
        self.retry_pause = (self.retry_pause * 2).min(RECONNECT_MAX);
    }

    /// Sorts an error, and forgets the connection when the error means it is gone.
    fn fail(&mut self, error: postgres::Error, doing: Doing) -> StoreError {
        let sorted = sort_error(&error, doing);
        let closed = error.is_closed()
            || self
                .connection
                .as_ref()
                .is_some_and(|connection| connection.client.is_closed());
        if closed || connection_lost(&error) {
            self.lose_connection();
        }
        sorted
    }

    /// Runs `work` on the connection. When it fails because a connection that was already open
    /// turns out to be dead (the database restarted while this one sat idle), it runs once more
    /// on a new connection: a read or a purge is safe to repeat, and a stale connection is no
    /// reason for a 503 once the database is back.
    fn run<T>(
        &mut self,
        doing: Doing,
        mut work: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let was_open = self.connection.is_some();
        let connection = self.connection()?;
        let error = match work(&mut connection.client) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let lost = error.is_closed() || connection_lost(&error) || connection.client.is_closed();
        if !(lost && was_open) {
            return Err(self.fail(error, doing));
        }
        self.lose_connection();
        let connection = self.connection()?;
        let result = work(&mut connection.client);
        result.map_err(|error| self.fail(error, doing))
    }

    /// Brings the schema up to `SCHEMA_VERSION` under an advisory lock, one transaction per
    /// migration: instances starting together take turns, and the later ones find it done.
    pub fn migrate(&mut self) -> Result<(), StoreError> {
        let connection = self.connection()?;
        let result = migrate_locked(&mut connection.client, apply_migrations);
        result.map_err(|error| self.migration_error(error))
    }

    /// Creates or drops the trigram index (the server's startup decision), under the migration
    /// lock.
    pub fn use_text_index(&mut self, on: bool) -> Result<(), StoreError> {
        let sql = if on { TEXT_INDEX_ON } else { TEXT_INDEX_OFF };
        let connection = self.connection()?;
        let result = migrate_locked(&mut connection.client, |client| {
            Ok(client.batch_execute(sql)?)
        });
        result.map_err(|error| self.migration_error(error))
    }

    fn migration_error(&mut self, error: Migration) -> StoreError {
        match error {
            Migration::Database(error) => self.fail(error, Doing::Writing),
            Migration::TooNew(current) => super::newer_schema(current.into(), SCHEMA_VERSION),
        }
    }

    /// The schema version the database holds (0: none yet), reconnecting if needed.
    pub fn stored_schema_version(&mut self) -> Result<i64, StoreError> {
        self.run(Doing::Reading, |client| {
            let exists: bool = client
                .query_one("SELECT to_regclass('hookbox_schema') IS NOT NULL", &[])?
                .get(0);
            if !exists {
                return Ok(0);
            }
            client
                .query_one("SELECT coalesce(max(version), 0) FROM hookbox_schema", &[])
                .map(|row| i64::from(row.get::<_, i32>(0)))
        })
    }

    /// Stores the batch with one statement (one transaction, one durable commit). Repeats of an
    /// id inside the batch are left out of the statement and answered `Duplicate`.
    pub fn insert_batch(
        &mut self,
        messages: &[Message],
        received_at: &str,
    ) -> Result<Vec<Inserted>, StoreError> {
        let mut seen = HashSet::with_capacity(messages.len());
        let first: Vec<bool> = messages
            .iter()
            .map(|message| seen.insert(message.message_id.as_str()))
            .collect();
        let unique: Vec<&Message> = messages
            .iter()
            .zip(&first)
            .filter_map(|(message, first)| first.then_some(message))
            .collect();
        let column = |field: fn(&Message) -> &str| -> Vec<&str> {
            unique.iter().map(|message| field(message)).collect()
        };
        let ids: Vec<Cow<str>> = unique.iter().map(|m| escape_nul(&m.message_id)).collect();
        let senders = column(|m| &m.from);
        let recipients = column(|m| &m.to);
        let ts = column(|m| &m.ts);
        let ts_keys = column(|m| &m.ts_key);
        let texts: Vec<Option<Cow<str>>> = unique
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
        let mut attempt = 0;
        let created: HashSet<String> = loop {
            attempt += 1;
            let connection = self.connection()?;
            let result = connection
                .statement(INSERT_BATCH)
                .and_then(|statement| connection.client.query(&statement, &params));
            match result {
                Ok(rows) => break rows.iter().map(|row| unescape_nul(row.get(0))).collect(),
                Err(error) => {
                    let retryable = matches!(
                        error.code(),
                        Some(
                            &SqlState::T_R_DEADLOCK_DETECTED | &SqlState::T_R_SERIALIZATION_FAILURE
                        )
                    );
                    if !retryable || attempt >= INSERT_ATTEMPTS {
                        return Err(self.fail(error, Doing::Writing));
                    }
                }
            }
        };
        let mut answered = HashSet::with_capacity(created.len());
        Ok(messages
            .iter()
            .zip(first)
            .map(|(message, first)| {
                if first
                    && created.contains(&message.message_id)
                    && answered.insert(&message.message_id)
                {
                    Inserted::Created
                } else {
                    Inserted::Duplicate
                }
            })
            .collect())
    }

    /// One page and the exact total from one snapshot (a read-only repeatable-read
    /// transaction), each statement bounded by `HOOKBOX_QUERY_TIMEOUT_MS`.
    pub fn list(&mut self, query: &ListQuery) -> Result<Page, StoreError> {
        let timeout = self.query_timeout_ms;
        self.run(Doing::Reading, |client| list_in(client, timeout, query))
    }

    /// From the aggregates: 16 total shards, ten index entries, and the two ends of the ts index.
    pub fn stats(&mut self) -> Result<Stats, StoreError> {
        let timeout = self.query_timeout_ms;
        self.run(Doing::Reading, |client| stats_in(client, timeout))
    }

    /// Deletes at most `batch` rows retention says must go, keeping the aggregates exact, in one
    /// short transaction. Only one instance purges at a time (an advisory lock taken without
    /// waiting): the others find it held and return 0.
    pub fn purge(&mut self, retention: &Retention, batch: usize) -> Result<usize, StoreError> {
        if retention.is_unlimited() || batch == 0 {
            return Ok(0);
        }
        let cutoff = retention.cutoff();
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        self.run(Doing::Writing, |client| {
            purge_in(client, retention.keep_messages, cutoff.as_deref(), batch)
        })
    }

    /// Streams matching rows in `/messages` order through a portal, `EXPORT_FETCH_ROWS` at a
    /// time, from one snapshot; no statement timeout (an export of a large store takes a while).
    pub fn export(
        &mut self,
        filter: &ExportFilter,
        each: &mut dyn FnMut(&StoredMessage) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let connection = self.connection()?;
        let result = export_in(&mut connection.client, filter, each);
        match result {
            Ok(()) => Ok(()),
            Err(Export::Write(error)) => Err(StoreError::Unavailable(format!(
                "could not write the export: {error}"
            ))),
            Err(Export::Database(error)) => Err(self.fail(error, Doing::Reading)),
        }
    }

    /// Closes the connection politely (the server ends its backend at once).
    pub fn close(self) {
        if let Some(connection) = self.connection {
            let _ = connection.client.close();
        }
    }
}

fn describe_error(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// True for errors after which this connection cannot be used again: the server ended the
/// session (shutdown, restart, terminated backend), or the socket failed or closed.
fn connection_lost(error: &postgres::Error) -> bool {
    match error.code() {
        Some(code) => {
            code.code().starts_with("08")
                || matches!(
                    *code,
                    SqlState::ADMIN_SHUTDOWN
                        | SqlState::CRASH_SHUTDOWN
                        | SqlState::CANNOT_CONNECT_NOW
                )
        }
        None => {
            error.is_closed()
                || std::error::Error::source(error)
                    .is_some_and(|source| source.is::<std::io::Error>())
        }
    }
}

/// Conditions a sender can wait out are `Unavailable`; a read stopped by `statement_timeout` is
/// `QueryTimeout`; anything else is a bug.
fn sort_error(error: &postgres::Error, doing: Doing) -> StoreError {
    let Some(code) = error.code() else {
        // No SQLSTATE: the connection failed, or a value did not convert (a bug of ours).
        return if connection_lost(error) {
            StoreError::Unavailable(format!("PostgreSQL connection: {error}"))
        } else {
            StoreError::Internal(error.to_string())
        };
    };
    let class = &code.code()[..2];
    if *code == SqlState::QUERY_CANCELED && doing == Doing::Reading {
        return StoreError::QueryTimeout;
    }
    let waitable = matches!(
        class,
        // connection, resources (disk full, too many connections), operator intervention
        // (shutdown, cancel), system error, transaction rollback (deadlock, serialisation)
        "08" | "53" | "57" | "58" | "40"
    ) || matches!(
        *code,
        SqlState::LOCK_NOT_AVAILABLE | SqlState::READ_ONLY_SQL_TRANSACTION
    );
    if waitable {
        StoreError::Unavailable(describe_error(error))
    } else {
        StoreError::Internal(describe_error(error))
    }
}

enum Migration {
    Database(postgres::Error),
    TooNew(i32),
}

impl From<postgres::Error> for Migration {
    fn from(error: postgres::Error) -> Migration {
        Migration::Database(error)
    }
}

/// Runs `work` holding the migration lock.
fn migrate_locked(
    client: &mut Client,
    work: impl FnOnce(&mut Client) -> Result<(), Migration>,
) -> Result<(), Migration> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = work(client);
    // Released with the session too, should this fail.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result?;
    unlocked?;
    Ok(())
}

fn apply_migrations(client: &mut Client) -> Result<(), Migration> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS hookbox_schema (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let current: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM hookbox_schema", &[])?
        .get(0);
    if i64::from(current) > SCHEMA_VERSION {
        return Err(Migration::TooNew(current));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        let version = index as i32 + 1;
        tx.execute(
            "INSERT INTO hookbox_schema (version) VALUES ($1)",
            &[&version],
        )?;
        tx.commit()?;
    }
    Ok(())
}

fn read_snapshot(
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

fn list_in(
    client: &mut Client,
    timeout_ms: u128,
    query: &ListQuery,
) -> Result<Page, postgres::Error> {
    let pattern = query.text.as_deref().map(like_pattern);
    let needle_bytes = query
        .text
        .as_deref()
        .map(|needle| text::fold(needle).into_bytes());
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(from) = &query.from {
        values.push(from);
        conditions.push(format!("sender = ${}", values.len()));
    }
    if let Some(since_key) = &query.since_key {
        values.push(since_key);
        conditions.push(format!("ts_key >= ${}", values.len()));
    }
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
    let total: i64 = match (&query.from, &query.since_key, &pattern) {
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

    // Past the last match there is nothing to read: answer without walking `offset` rows.
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
    if let (Some(after), Some(after_id)) = (&query.after, &after_id) {
        page_values.push(&after.ts_key);
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

fn stats_in(client: &mut Client, timeout_ms: u128) -> Result<Stats, postgres::Error> {
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

fn purge_in(
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

enum Export {
    Database(postgres::Error),
    Write(std::io::Error),
}

impl From<postgres::Error> for Export {
    fn from(error: postgres::Error) -> Export {
        Export::Database(error)
    }
}

fn export_in(
    client: &mut Client,
    filter: &ExportFilter,
    each: &mut dyn FnMut(&StoredMessage) -> std::io::Result<()>,
) -> Result<(), Export> {
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(from) = &filter.from {
        values.push(from);
        conditions.push(format!("sender = ${}", values.len()));
    }
    if let Some(since_key) = &filter.since_key {
        values.push(since_key);
        conditions.push(format!("ts_key >= ${}", values.len()));
    }
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

fn stored_message(row: &Row) -> StoredMessage {
    StoredMessage {
        message_id: unescape_nul(row.get(0)),
        from: row.get(1),
        to: row.get(2),
        ts: row.get(3),
        text: row.get::<_, Option<String>>(4).map(unescape_nul),
    }
}

/// PostgreSQL's text cannot hold U+0000, which JSON allows in `message_id` and `text`. Stored
/// text escapes it reversibly: U+0000 → U+0001 U+0001, U+0001 → U+0001 U+0002. The mapping is
/// one-to-one and keeps byte order (both codes sort below every other character, in their
/// order), so ids stay unique and `/messages` order and cursors are unchanged.
fn needs_escape(raw: &str) -> bool {
    raw.contains(['\u{0}', '\u{1}'])
}

fn escape_nul(raw: &str) -> Cow<'_, str> {
    if !needs_escape(raw) {
        return Cow::Borrowed(raw);
    }
    let mut escaped = String::with_capacity(raw.len() + 8);
    for ch in raw.chars() {
        match ch {
            '\u{0}' => escaped.push_str("\u{1}\u{1}"),
            '\u{1}' => escaped.push_str("\u{1}\u{2}"),
            other => escaped.push(other),
        }
    }
    Cow::Owned(escaped)
}

fn unescape_nul(stored: String) -> String {
    if !stored.contains('\u{1}') {
        return stored;
    }
    let mut raw = String::with_capacity(stored.len());
    let mut chars = stored.chars();
    while let Some(ch) = chars.next() {
        match (ch, ch == '\u{1}') {
            (_, true) => raw.push(match chars.next() {
                Some('\u{1}') => '\u{0}',
                _ => '\u{1}',
            }),
            (other, false) => raw.push(other),
        }
    }
    raw
}

/// A shard of `totals` for this batch: spread, not strictly random (no RNG crate needed).
fn random_shard() -> i16 {
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

    #[test]
    fn the_nul_escape_round_trips_and_keeps_order() {
        let samples = [
            "",
            "\u{0}",
            "\u{1}",
            "\u{2}",
            "\u{0}\u{0}",
            "\u{0}\u{1}",
            "\u{1}\u{0}",
            "a",
            "a\u{0}",
            "a\u{0}b",
            "a\u{1}",
            "a\u{2}",
            "ab",
            "\u{1}\u{1}",
            "é\u{0}",
            "😀",
        ];
        for raw in samples {
            assert_eq!(unescape_nul(escape_nul(raw).into_owned()), raw, "{raw:?}");
            assert!(!escape_nul(raw).contains('\u{0}'));
        }
        for a in samples {
            for b in samples {
                assert_eq!(
                    a.as_bytes().cmp(b.as_bytes()),
                    escape_nul(a).as_bytes().cmp(escape_nul(b).as_bytes()),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }
}
