//! The product service: owns `product_db` (products and stock reservations), handles `product.*`
//! commands, queries and saga commands on NATS, serves `/product`.

mod config;
mod db;
mod error;
mod http;
mod nats;
mod saga;
mod stock;

use std::sync::Arc;

use kit::body::Limits;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::Error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/product");

/// What every handler, HTTP or NATS, works with: one [`Shared`] behind a pointer, so that a
/// request or a message clones the pointer, not the pool, the NATS client and the rest (in the
/// product service those clones were 6 % of a read's CPU).
pub type AppState = Arc<Shared>;

/// The connections and settings behind [`AppState`].
pub struct Shared {
    /// Connections to `product_db`.
    pub pool: kit::pool::Pool,
    /// The NATS connection commands are sent and served on.
    pub nats: async_nats::Client,
    /// JetStream on that connection, for the saga.
    pub js: async_nats::jetstream::Context,
    /// Request body limits.
    pub limits: Limits,
    /// Operator commands (`/admin/*`).
    pub admin: kit::admin::Admin,
    /// How long a request over NATS waits for its reply, and when it is sent again.
    pub timing: kit::nats::Timing,
    /// What `GET /metrics` shows.
    pub metrics: kit::metrics::Metrics,
    /// Whether the database answers.
    pub database: kit::db::Probe,
}

/// Runs the service on `listener` until `shutdown` is cancelled, then drains and exits.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let common = &config.common;
    // Until it can serve, its port answers the probes at once and holds other requests.
    let starting = kit::starting::serve(&listener)?;
    let (pool, database) = kit::db::connect(common, "product", &MIGRATOR).await?;
    let nats = kit::nats::connect(common, "product").await?;
    let state = Arc::new(Shared {
        pool: pool.clone(),
        nats: nats.clone(),
        js: async_nats::jetstream::new(nats.clone()),
        admin: kit::admin::Admin::new(common.admin_token.clone(), nats.clone()),
        timing: common.into(),
        limits: Limits {
            max_bytes: common.body_limit,
            timeout: common.body_timeout,
        },
        database,
        metrics: kit::metrics::Metrics::new(|_| {}),
    });
    let handlers = nats::start(state.clone()).await?;
    let saga = saga::start(state.clone(), common.stream_replicas, &handlers.rank()).await?;
    let pruning = kit::db::prune_continually(pool.clone(), kit::db::PRUNE_COMMAND_LOG);
    let reset_state = state.clone();
    let admin = kit::admin::listen(
        &nats,
        common.admin_token.as_deref(),
        "product",
        shutdown.clone(),
        move || nats::reset(reset_state.clone()),
    )
    .await?;
    let router = http::router(state);
    starting.ready(router.clone());
    tracing::info!(addr = %listener.local_addr()?, "product service ready");

    kit::serve::http(listener, router, shutdown, common).await?;
    // Side by side, so that the whole stop takes one shutdown timeout at most.
    tokio::join!(
        handlers.stop(common.shutdown_timeout),
        saga.stop(common.shutdown_timeout)
    );

    if let Err(error) = nats.drain().await {
        tracing::warn!(%error, "draining NATS");
    }
    if let Some(admin) = admin {
        admin.abort();
    }
    pruning.abort();
    pool.close().await;
    tracing::info!("product service stopped");
    Ok(())
}
