//! The saga's figures for `GET /metrics`: orders decided (confirmed, rejected by reason), how
//! long deciding took, and how many orders are pending.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::db;

/// Labels of a rejected order: why (`user_not_found`, `product_not_found`,
/// `insufficient_stock`, or `deadline` when the sweeper gave up on it).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

/// Counted by the replica whose transaction decided the order, so summing over replicas counts
/// each order once.
#[derive(Clone)]
pub struct Saga {
    confirmed: Counter,
    rejected: Family<Reason, Counter>,
    duration: Histogram,
    /// Orders pending in `order_db` (all replicas'), refreshed at each scrape.
    pub pending: Gauge,
}

impl Saga {
    /// The saga's metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let saga = Self {
            confirmed: Counter::default(),
            rejected: Family::default(),
            duration: kit::metrics::latency_histogram(),
            pending: Gauge::default(),
        };
        registry.register(
            "orders_confirmed",
            "Orders confirmed by this replica's saga",
            saga.confirmed.clone(),
        );
        registry.register(
            "orders_rejected",
            "Orders rejected by this replica's saga or sweeper, by reason",
            saga.rejected.clone(),
        );
        registry.register(
            "order_saga_duration_seconds",
            "Time from placing an order to its decision",
            saga.duration.clone(),
        );
        registry.register(
            "orders_pending",
            "Orders waiting for their verdicts, in order_db",
            saga.pending.clone(),
        );
        saga
    }

    /// Counts `order`, which the caller has just decided.
    pub fn decided(&self, order: &db::Order) {
        match (order.state.as_str(), order.reason.as_deref()) {
            ("confirmed", _) => {
                self.confirmed.inc();
            }
            ("rejected", reason) => {
                let reason = reason.unwrap_or("deadline").to_owned();
                self.rejected.get_or_create(&Reason { reason }).inc();
            }
            _ => return,
        }
        // From `POST /order`, which allocated the id (a UUIDv7, time-ordered): the time the
        // order waited in ORDER_SAGA before its row was written counts too.
        let placed = order.id.get_timestamp().map_or(order.created_at, |at| {
            let (seconds, nanos) = at.to_unix();
            time::OffsetDateTime::UNIX_EPOCH + std::time::Duration::new(seconds, nanos)
        });
        let took = order.updated_at - placed;
        self.duration.observe(took.as_seconds_f64().max(0.0));
    }
}
