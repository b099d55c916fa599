//! PostgreSQL: the connection pool, migrations at start-up, and how database errors are classified.

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use sqlx::{
    Connection, PgConnection, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{
    config::Common,
    pool::{KEEP_AT_MOST, Pool},
};

/// How long start-up keeps retrying while the database is not reachable yet.
const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

/// How often the [`Probe`] asks the database.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Probes in a row that may go unanswered for a second each before a database that does not
/// refuse connections, only answers slowly (an overloaded machine), counts as down.
const SLOW_PROBES: u32 = 3;

/// Opens the pool and applies `migrator`, retrying while the database is still starting, then
/// starts the pool's [`Probe`].
pub async fn connect(
    config: &Common,
    name: &str,
    migrator: &Migrator,
) -> anyhow::Result<(Pool, Probe)> {
    let timeout_ms = config.db_statement_timeout.as_millis().to_string();
    let options = PgConnectOptions::from_str(&config.database_url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .application_name(name)
        // Every statement is prepared once per connection and run many times. PostgreSQL
        // would plan most of them again at each run (a custom plan: array parameters make the
        // generic one look costlier than it is), which took a quarter of its CPU under load;
        // the generic plan of each is as good, keyed lookups all. A generic plan is made with
        // the statistics of the moment, though, and on a fresh database every table looks
        // empty, where reading it whole is cheapest: such plans (kept until the next ANALYZE)
        // made a new stack's first minute three times slower. Every statement here finds its
        // rows through an index, so scanning a whole table is never what we want.
        .options([
            ("statement_timeout", timeout_ms.as_str()),
            ("plan_cache_mode", "force_generic_plan"),
            ("enable_seqscan", "off"),
        ]);
    let probe = Probe::new();
    let stale = probe.clone();
    let pool = PgPoolOptions::new()
        .max_connections(config.db_pool_max)
        // While the server refuses connections sqlx keeps trying until this deadline; the probe
        // answers sooner (see `Probe::check`).
        .acquire_timeout(config.db_acquire_timeout)
        // Pinging before every use would cost a round trip on every request. Instead, a
        // connection opened before the database last failed to answer (say, it restarted) is
        // dropped unused, so that a restart does not fail one request per pooled connection.
        .test_before_acquire(false)
        .before_acquire(move |_, meta| {
            let fresh = !stale.failed_since(meta.age);
            Box::pin(async move { Ok(fresh) })
        })
        .connect_lazy_with(options.clone());

    let started = tokio::time::Instant::now();
    loop {
        match migrator.run(&pool).await {
            Ok(()) => break,
            Err(error) if started.elapsed() < STARTUP_PATIENCE => {
                tracing::warn!(%error, "database not ready, retrying migrations");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error).context("running migrations"),
        }
    }
    tokio::spawn(probe.clone().watch(options, pool.clone()));
    let pool = Pool::new(
        pool,
        config.db_pool_max,
        probe.clone(),
        config.db_acquire_timeout,
        KEEP_AT_MOST,
    );
    Ok((pool, probe))
}

/// Whether the database answers, asked in the background every 250 ms until the pool closes,
/// and when it last did not. While it does not, requests refuse at once ([`Probe::check`])
/// instead of waiting for a connection that cannot be made; once it does again, the pool drops
/// the connections that predate the outage instead of failing a request on each.
#[derive(Debug, Clone)]
pub struct Probe(Arc<ProbeState>);

#[derive(Debug)]
struct ProbeState {
    up: AtomicBool,
    born: Instant,
    /// Milliseconds from `born` to the last probe that found the database refusing or dropping
    /// connections; 0 when none did.
    last_failure_ms: AtomicU64,
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl Probe {
    /// A probe that has seen the database answer and never fail; [`connect`] starts one asking.
    pub fn new() -> Self {
        Self(Arc::new(ProbeState {
            // The database answered the migrations just before probing starts.
            up: AtomicBool::new(true),
            born: Instant::now(),
            last_failure_ms: AtomicU64::new(0),
        }))
    }

    /// False once a probe went unanswered, until one is answered again.
    pub fn is_up(&self) -> bool {
        self.0.up.load(Ordering::Relaxed)
    }

    /// `Ok` while the database answers; otherwise an error that [`is_unavailable`] classifies
    /// as such (503), returned at once instead of waiting out the pool's acquire timeout.
    pub fn check(&self) -> Result<(), sqlx::Error> {
        if self.is_up() {
            Ok(())
        } else {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the database does not answer its probe",
            )))
        }
    }

    /// True when a probe found the database failing after a connection of this `age` was opened.
    pub(crate) fn failed_since(&self, age: Duration) -> bool {
        let failed = self.0.last_failure_ms.load(Ordering::Relaxed);
        let opened = self.0.born.elapsed().saturating_sub(age);
        failed != 0 && u128::from(failed) >= opened.as_millis()
    }

    /// Probes over a connection of its own, so that a busy pool is not mistaken for a
    /// database that does not answer. A refused or broken connection means the database is
    /// down or restarting (and the pool's connections from before are dead); a slow answer only
    /// counts after [`SLOW_PROBES`] in a row, and leaves the pool alone.
    async fn watch(self, options: PgConnectOptions, pool: PgPool) {
        let mut every = tokio::time::interval(PROBE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connection: Option<PgConnection> = None;
        let mut slow = 0u32;
        while !pool.is_closed() {
            every.tick().await;
            let probe = tokio::time::timeout(Duration::from_secs(1), async {
                if connection.is_none() {
                    connection = Some(PgConnection::connect_with(&options).await?);
                }
                match connection.as_mut() {
                    Some(connection) => connection.ping().await,
                    None => Ok(()),
                }
            })
            .await;
            let answered = match probe {
                Ok(Ok(())) => {
                    slow = 0;
                    true
                }
                Ok(Err(_)) => {
                    connection = None;
                    let now = u64::try_from(self.0.born.elapsed().as_millis()).unwrap_or(u64::MAX);
                    self.0.last_failure_ms.store(now.max(1), Ordering::Relaxed);
                    false
                }
                Err(_) => {
                    connection = None;
                    slow += 1;
                    slow < SLOW_PROBES
                }
            };
            if self.0.up.swap(answered, Ordering::Relaxed) != answered {
                tracing::warn!(up = answered, "database reachability changed");
            }
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
/// the requester's timeout, and ten minutes is far beyond it. `$1`: most rows at once (see
/// [`prune`]).
pub const PRUNE_COMMAND_LOG: &str = "delete from command_log where id in (
         select id from command_log where at < now() - interval '10 minutes' order by at limit $1
     )";

/// Most rows one pruning statement deletes: small enough that its transaction, and the WAL it
/// makes everybody's next commit flush, stays a millisecond's work.
pub const PRUNE_CHUNK: i64 = 1_000;

/// How often [`prune_continually`] prunes: often, so that each round finds a few seconds' rows
/// rather than a minute's (60,000 commands at a busy service, deleted in one statement, were a
/// tail-latency spike of their own).
const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// Between two chunks of one round, so that the writes queued behind one go first.
const PRUNE_PAUSE: Duration = Duration::from_millis(10);

/// Runs `statement` (a `delete` of rows past their use, at most `$1` of them) until it deletes
/// fewer than [`PRUNE_CHUNK`]; returns how many rows went.
pub async fn prune(pool: &Pool, statement: &'static str) -> sqlx::Result<u64> {
    let mut deleted = 0;
    loop {
        let chunk = sqlx::query(statement)
            .bind(PRUNE_CHUNK)
            .execute(pool)
            .await?
            .rows_affected();
        deleted += chunk;
        if chunk < PRUNE_CHUNK.unsigned_abs() {
            return Ok(deleted);
        }
        tokio::time::sleep(PRUNE_PAUSE).await;
    }
}

/// [`prune`]s with `statement` every few seconds, in the background.
pub fn prune_continually(pool: Pool, statement: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PRUNE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // A panicking round (`caught` logs it) fails alone, as a handler's would; the next
            // tries again.
            if let Ok(Err(error)) = crate::panics::caught(prune(&pool, statement)).await {
                tracing::warn!(%error, statement, "pruning");
            }
        }
    })
}
