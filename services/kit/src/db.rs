//! PostgreSQL: the connection pool, migrations at start-up, and how database errors are classified.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::Common;

/// How long start-up keeps retrying while the database is not reachable yet.
const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

/// Opens the pool and applies `migrator`, retrying while the database is still starting.
pub async fn connect(config: &Common, name: &str, migrator: &Migrator) -> anyhow::Result<PgPool> {
    let timeout_ms = config.db_statement_timeout.as_millis().to_string();
    let options = PgConnectOptions::from_str(&config.database_url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .application_name(name)
        .options([("statement_timeout", timeout_ms.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(config.db_pool_max)
        .acquire_timeout(Duration::from_secs(2))
        // A dead connection fails one query and is dropped; pinging before every use would
        // cost a round trip on every request to save that one.
        .test_before_acquire(false)
        .connect_lazy_with(options);

    let started = tokio::time::Instant::now();
    loop {
        match migrator.run(&pool).await {
            Ok(()) => return Ok(pool),
            Err(error) if started.elapsed() < STARTUP_PATIENCE => {
                tracing::warn!(%error, "database not ready, retrying migrations");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error).context("running migrations"),
        }
    }
}

/// True when the error means the database could not be reached (answer 503), rather than that
/// a statement failed (a bug, 500) or broke a constraint (the caller decides).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P0x: server shutting down or starting; 53300: too many connections.
            code.starts_with("08") || code.starts_with("57P0") || code == "53300"
        }),
        _ => false,
    }
}

/// The constraint a statement broke, if it broke one (`users_pkey`, `products_quantity_check`, ...).
pub fn violated_constraint(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// Forgets commands old enough that no repeat of them can still arrive: repeats come within
/// the requester's timeout, and ten minutes is far beyond it.
pub const PRUNE_COMMAND_LOG: &str =
    "delete from command_log where at < now() - interval '10 minutes'";

/// Runs `statement` (a `delete` of rows past their use) every minute, in the background.
pub fn prune_every_minute(pool: PgPool, statement: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            if let Err(error) = sqlx::query(statement).execute(&pool).await {
                tracing::warn!(%error, statement, "pruning");
            }
        }
    })
}
