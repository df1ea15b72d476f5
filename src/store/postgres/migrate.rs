//! The PostgreSQL schema: migrations in `sql/postgres/`, applied under an advisory lock.

use postgres::Client;

/// Migrations in order; migration `i` is recorded as version `i + 1` in `hookbox_schema`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../sql/postgres/001_init.sql"),
    include_str!("../../../sql/postgres/002_feed.sql"),
];

/// Creates or drops the trigram index for `q` (HOOKBOX_TEXT_INDEX), at the server's startup.
const TEXT_INDEX_ON: &str = include_str!("../../../sql/postgres/text_index_on.sql");
const TEXT_INDEX_OFF: &str = include_str!("../../../sql/postgres/text_index_off.sql");

/// The schema version this build expects.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Advisory lock key ("hookbox" and a number), the same in every instance.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_626f_7801;

const CURRENT_VERSION: &str = "SELECT coalesce(max(version), 0) FROM hookbox_schema";

pub enum Migration {
    Database(postgres::Error),
    TooNew(i32),
}

impl From<postgres::Error> for Migration {
    fn from(error: postgres::Error) -> Migration {
        Migration::Database(error)
    }
}

/// The version the database carries; 0 before the first migration.
pub fn current_version(client: &mut Client) -> Result<i64, postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('hookbox_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(i64::from(
        client.query_one(CURRENT_VERSION, &[])?.get::<_, i32>(0),
    ))
}

/// Brings the schema up to `SCHEMA_VERSION` under the lock: instances starting together take
/// turns, and the later ones find it done.
pub fn migrate_locked(client: &mut Client) -> Result<(), Migration> {
    with_lock(client, apply_migrations)
}

/// Creates or drops the trigram index under the lock.
pub fn use_text_index(client: &mut Client, on: bool) -> Result<(), Migration> {
    let sql = if on { TEXT_INDEX_ON } else { TEXT_INDEX_OFF };
    with_lock(client, |client| Ok(client.batch_execute(sql)?))
}

fn with_lock(
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
    let current: i32 = client.query_one(CURRENT_VERSION, &[])?.get(0);
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
