//! The order service: owns `order_db`, runs the order saga on JetStream, serves `/order` and
//! `/user/purchased`.

mod config;
mod db;
mod error;
mod http;
mod metrics;
mod nats;
mod saga;
mod sweeper;

use std::{sync::Arc, time::Duration};

use kit::body::Limits;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, Deadlines};
pub use error::Error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/order");

/// What every handler, HTTP or NATS, works with: one [`Shared`] behind a pointer, so that a
/// request or a message clones the pointer, not the pool, the NATS client and the rest (in the
/// product service those clones were 6 % of a read's CPU).
pub type AppState = Arc<Shared>;

/// The connections and settings behind [`AppState`].
pub struct Shared {
    /// Connections to `order_db`.
    pub pool: kit::pool::Pool,
    /// The NATS connection.
    pub nats: async_nats::Client,
    /// JetStream on that connection, for the saga.
    pub js: async_nats::jetstream::Context,
    /// Request body limits.
    pub limits: Limits,
    /// Operator commands (`/admin/*`).
    pub admin: kit::admin::Admin,
    /// How long a request over NATS waits for its reply, and when it is sent again.
    pub timing: kit::nats::Timing,
    /// Requests waiting for their order's outcome.
    pub waiters: Arc<nats::Waiters>,
    /// Where this replica hears the outcomes of the orders it places
    /// (`order.outcome.<replica>`).
    pub outcomes: String,
    /// How long `POST /order` waits before answering 202.
    pub order_wait: Duration,
    /// What `GET /metrics` shows.
    pub metrics: kit::metrics::Metrics,
    /// The saga's own figures, part of `metrics`.
    pub saga: metrics::Saga,
    /// Whether `order_db` answered lately.
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
    let (pool, database) = kit::db::connect(common, "order", &MIGRATOR).await?;
    let nats = kit::nats::connect(common, "order").await?;
    let mut saga = None;
    let metrics = kit::metrics::Metrics::new(|registry| saga = Some(metrics::Saga::new(registry)));
    let saga = saga.ok_or_else(|| anyhow::anyhow!("saga metrics not registered"))?;
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
        waiters: Arc::default(),
        outcomes: shared::subject::order_outcomes_for(&uuid::Uuid::new_v4().simple().to_string()),
        order_wait: config.order_wait,
        database,
        metrics,
        saga,
    });
    let pruning = kit::db::prune_continually(pool.clone(), db::PRUNE_IDEMPOTENCY_KEYS);
    let listener_task = nats::listen_outcomes(&state).await?;
    let queries = nats::start_queries(state.clone()).await?;
    let workers = saga::start(state.clone(), common.stream_replicas, &queries.rank()).await?;
    let sweeping = CancellationToken::new();
    let sweeper = tokio::spawn(sweeper::run(
        state.clone(),
        config.deadlines,
        sweeping.clone(),
    ));
    let reset_state = state.clone();
    let admin = kit::admin::listen(
        &nats,
        common.admin_token.as_deref(),
        "order",
        shutdown.clone(),
        move || nats::reset(reset_state.clone()),
    )
    .await?;
    let router = http::router(state);
    starting.ready(router.clone());
    tracing::info!(addr = %listener.local_addr()?, "order service ready");

    kit::serve::http(listener, router, shutdown, common).await?;
    sweeping.cancel();
    let _ = sweeper.await;
    // Side by side, so that the whole stop takes one shutdown timeout at most.
    let patience = common.shutdown_timeout;
    let workers = workers.into_iter().map(|worker| worker.stop(patience));
    tokio::join!(queries.stop(patience), futures::future::join_all(workers));
    if let Err(error) = nats.drain().await {
        tracing::warn!(%error, "draining NATS");
    }
    listener_task.abort();
    pruning.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    pool.close().await;
    tracing::info!("order service stopped");
    Ok(())
}
