//! The order service's configuration, read from the environment.

use std::time::Duration;

use kit::config::{Common, millis, nonzero_millis};

/// Everything the order service reads at start-up; see the README's configuration table.
#[derive(Debug, Clone)]
pub struct Config {
    /// Settings every service shares (HTTP address defaults to 127.0.0.1:7301, database to `order_db`).
    pub common: Common,
    /// `ORDER_WAIT_MS`: how long `POST /order` waits for the saga's outcome before answering 202.
    pub order_wait: Duration,
    /// When orders left pending are asked about again, and given up on.
    pub deadlines: Deadlines,
}

/// The sweeper's deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// `ORDER_REDRIVE_AFTER_MS`: an order pending this long with no change gets its validation
    /// and reservation requested again.
    pub redrive_after: Duration,
    /// `ORDER_REJECT_AFTER_MS`: an order still pending this long after it was placed is
    /// rejected, and any stock it may hold released.
    pub reject_after: Duration,
    /// `ORDER_SWEEP_EVERY_MS`: how often each replica looks (at least 1 ms).
    pub sweep_every: Duration,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            common: Common::from_env(7301, "postgres://order_svc@127.0.0.1:5433/order_db")?,
            order_wait: millis("ORDER_WAIT_MS", 5_000)?,
            deadlines: Deadlines {
                redrive_after: millis("ORDER_REDRIVE_AFTER_MS", 10_000)?,
                reject_after: millis("ORDER_REJECT_AFTER_MS", 60_000)?,
                sweep_every: nonzero_millis("ORDER_SWEEP_EVERY_MS", 1_000)?,
            },
        })
    }
}
