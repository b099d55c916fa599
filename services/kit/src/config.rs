//! Settings every service reads from its environment, once, at start-up.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use anyhow::Context;

/// Settings shared by all services. Each has an environment variable and a default.
#[derive(Debug, Clone)]
pub struct Common {
    /// `HTTP_ADDR`: address the HTTP server binds to.
    pub http_addr: SocketAddr,
    /// `DATABASE_URL`: this service's own PostgreSQL database.
    pub database_url: String,
    /// `DB_POOL_MAX`: most connections the pool opens (sized to the cores, not to the clients:
    /// by default the cores, plus one).
    pub db_pool_max: u32,
    /// `DB_ACQUIRE_TIMEOUT_MS`: how long a query waits for a connection of the pool (all busy,
    /// or the database refuses new ones) before failing with 503. As long as a statement may
    /// run: a database that answers slowly (a commit stalled on a busy disk holds its
    /// connection for seconds) delays requests rather than failing them, while one that does
    /// not answer at all fails them at once ([`crate::db::Probe`]).
    pub db_acquire_timeout: Duration,
    /// `DB_STATEMENT_TIMEOUT_MS`: PostgreSQL `statement_timeout` for every connection.
    pub db_statement_timeout: Duration,
    /// `NATS_URL`: the NATS server, or a cluster's servers separated by commas: the connection
    /// picks one and moves to another by itself when it goes.
    pub nats_servers: NatsServers,
    /// `NATS_USER` and `NATS_PASSWORD`: this service's NATS credentials, if the server asks for them.
    pub nats_credentials: Option<(String, String)>,
    /// `STREAM_REPLICAS`: how many copies of each JetStream stream a NATS cluster keeps, when
    /// this service is the one that creates it (1 on one server; 3 on a cluster of three).
    pub stream_replicas: usize,
    /// `NATS_REQUEST_TIMEOUT_MS`: how long the HTTP layer waits for a command's reply in all.
    pub nats_request_timeout: Duration,
    /// `NATS_RETRY_AFTER_MS`: when a command's reply has not come by then, it is sent once more
    /// with the same command id (the first may have gone to a replica that was stopping).
    pub nats_retry_after: Duration,
    /// `HTTP_BODY_LIMIT_BYTES`: largest request body accepted (413 beyond it).
    pub body_limit: usize,
    /// `HTTP_BODY_TIMEOUT_MS`: time allowed to receive a whole request body (400 when a client stalls).
    pub body_timeout: Duration,
    /// `SHUTDOWN_DRAIN_MS`: on SIGTERM, how long requests on open keep-alive connections are
    /// still served (answered with `Connection: close`) before idle connections are closed.
    /// Longer than Nginx keeps an idle upstream connection (1 s), so that Nginx, not the
    /// replica, closes those: a close from the replica can cross a request already sent.
    pub shutdown_drain: Duration,
    /// `SHUTDOWN_TIMEOUT_MS`: on SIGTERM, how long in-flight work may take before the process exits anyway.
    pub shutdown_timeout: Duration,
    /// `ADMIN_TOKEN`: the bearer token of `POST /admin/*`; unset (the default) turns them off.
    pub admin_token: Option<String>,
}

impl Common {
    /// Reads the settings, using `default_port` and `default_database_url` when their variables are unset.
    pub fn from_env(default_port: u16, default_database_url: &str) -> anyhow::Result<Self> {
        let user = std::env::var("NATS_USER").ok().filter(|u| !u.is_empty());
        let nats_credentials =
            user.map(|u| (u, std::env::var("NATS_PASSWORD").unwrap_or_default()));
        Ok(Self {
            http_addr: var(
                "HTTP_ADDR",
                SocketAddr::from(([127, 0, 0, 1], default_port)),
            )?,
            database_url: var("DATABASE_URL", default_database_url.to_owned())?,
            db_pool_max: var("DB_POOL_MAX", default_pool())?,
            db_acquire_timeout: millis("DB_ACQUIRE_TIMEOUT_MS", 5_000)?,
            db_statement_timeout: millis("DB_STATEMENT_TIMEOUT_MS", 5_000)?,
            nats_servers: var("NATS_URL", NatsServers::local())?,
            nats_credentials,
            stream_replicas: var("STREAM_REPLICAS", 1)?,
            nats_request_timeout: millis("NATS_REQUEST_TIMEOUT_MS", 5_000)?,
            nats_retry_after: millis("NATS_RETRY_AFTER_MS", 1_000)?,
            body_limit: var("HTTP_BODY_LIMIT_BYTES", 64 * 1024)?,
            body_timeout: millis("HTTP_BODY_TIMEOUT_MS", 500)?,
            shutdown_drain: millis("SHUTDOWN_DRAIN_MS", 2_000)?,
            shutdown_timeout: millis("SHUTDOWN_TIMEOUT_MS", 10_000)?,
            admin_token: std::env::var("ADMIN_TOKEN").ok().filter(|t| !t.is_empty()),
        })
    }
}

/// One NATS server or several (the nodes of a cluster), as `NATS_URL` lists them:
/// `nats://10.0.0.1:4222,nats://10.0.0.2:4222`.
#[derive(Debug, Clone)]
pub struct NatsServers(pub Vec<async_nats::ServerAddr>);

impl NatsServers {
    /// `nats://127.0.0.1:4222`, the default.
    fn local() -> Self {
        "nats://127.0.0.1:4222".parse().expect("a valid NATS URL")
    }
}

impl FromStr for NatsServers {
    type Err = std::io::Error;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let servers = list
            .split(',')
            .map(str::trim)
            .filter(|server| !server.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if servers.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no NATS server in the list",
            ));
        }
        Ok(Self(servers))
    }
}

/// The cores, and one more: what the pool may use at once by default. Work comes in batches
/// (saga messages, commands), so a few connections keep the database busy, and more only
/// contend for its cores: 8 a process made every kind of request slower on 2 cores than 3.
fn default_pool() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    u32::try_from(cores + 1).unwrap_or(u32::MAX).max(2)
}

/// Reads `name` from the environment and parses it, or returns `default` when it is unset or empty.
pub fn var<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    parse(name, std::env::var(name).ok().as_deref(), default)
}

fn parse<T>(name: &str, raw: Option<&str>, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match raw.map(str::trim) {
        Some(value) if !value.is_empty() => value
            .parse()
            .with_context(|| format!("environment variable {name}={value:?} is not valid")),
        _ => Ok(default),
    }
}

/// The most a duration setting may be, in milliseconds: `i32::MAX` (about 24.8 days),
/// PostgreSQL's own bound for its timeouts, and far within what clock arithmetic takes (a
/// deadline counted back from now would otherwise overflow, and panic).
pub const MOST_MILLIS: u64 = 2_147_483_647;

/// Reads a duration given in milliseconds, at most [`MOST_MILLIS`].
pub fn millis(name: &str, default_ms: u64) -> anyhow::Result<Duration> {
    bounded_millis(name, std::env::var(name).ok().as_deref(), default_ms)
}

/// Reads a duration given in milliseconds that must not be zero (a period, say).
pub fn nonzero_millis(name: &str, default_ms: u64) -> anyhow::Result<Duration> {
    nonzero(name, millis(name, default_ms)?)
}

fn nonzero(name: &str, duration: Duration) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        !duration.is_zero(),
        "environment variable {name} must be at least 1 (ms)"
    );
    Ok(duration)
}

fn bounded_millis(name: &str, raw: Option<&str>, default_ms: u64) -> anyhow::Result<Duration> {
    let ms: u64 = parse(name, raw, default_ms)?;
    anyhow::ensure!(
        ms <= MOST_MILLIS,
        "environment variable {name}={ms} is more than {MOST_MILLIS} ms (about 24.8 days)"
    );
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_or_empty_variable_takes_the_default() {
        assert_eq!(parse::<u32>("N", None, 7).unwrap(), 7);
        assert_eq!(parse::<u32>("N", Some("  "), 7).unwrap(), 7);
        assert_eq!(parse::<u32>("N", Some(" 12 "), 7).unwrap(), 12);
    }

    #[test]
    fn nats_url_lists_one_server_or_a_clusters_several() {
        let one: NatsServers = parse(
            "NATS_URL",
            Some("nats://10.0.0.1:4222"),
            NatsServers::local(),
        )
        .unwrap();
        assert_eq!(one.0.len(), 1);
        let three: NatsServers = parse(
            "NATS_URL",
            Some("nats://127.0.0.2:4222, nats://127.0.0.3:4222,nats://127.0.0.4:4222"),
            NatsServers::local(),
        )
        .unwrap();
        let hosts: Vec<_> = three.0.iter().map(async_nats::ServerAddr::host).collect();
        assert_eq!(hosts, ["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
        assert!(parse::<NatsServers>("NATS_URL", Some(","), NatsServers::local()).is_err());
        assert!(
            parse::<NatsServers>("NATS_URL", Some("nats://a:b:c"), NatsServers::local()).is_err()
        );
    }

    #[test]
    fn a_duration_is_at_most_about_24_days_in_milliseconds() {
        let most = MOST_MILLIS.to_string();
        let bounded = |raw| bounded_millis("ORDER_REJECT_AFTER_MS", Some(raw), 60_000);
        assert_eq!(bounded(&most).unwrap(), Duration::from_millis(MOST_MILLIS));
        assert_eq!(bounded("0").unwrap(), Duration::ZERO);
        for raw in ["2147483648", "18446744073709551615"] {
            let error = bounded(raw).unwrap_err();
            assert!(
                error.to_string().contains("ORDER_REJECT_AFTER_MS"),
                "{error}"
            );
        }
        assert!(bounded("-1").is_err());
    }

    #[test]
    fn a_period_of_zero_is_refused() {
        let error = nonzero("ORDER_SWEEP_EVERY_MS", Duration::ZERO).unwrap_err();
        assert!(
            error.to_string().contains("ORDER_SWEEP_EVERY_MS"),
            "{error}"
        );
        let one = Duration::from_millis(1);
        assert_eq!(nonzero("ORDER_SWEEP_EVERY_MS", one).unwrap(), one);
    }

    #[test]
    fn a_malformed_variable_is_an_error_that_names_it() {
        let error = parse::<u32>("DB_POOL_MAX", Some("many"), 7).unwrap_err();
        assert!(error.to_string().contains("DB_POOL_MAX"), "{error}");
    }
}
