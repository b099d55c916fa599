//! The order service's configuration, read from the environment.

use std::time::Duration;

use kit::config::{Common, millis};

/// Everything the order service reads at start-up; see the README's configuration table.
#[derive(Debug, Clone)]
pub struct Config {
    /// Settings every service shares (HTTP address defaults to 127.0.0.1:7301, database to `order_db`).
    pub common: Common,
    /// `ORDER_WAIT_MS`: how long `POST /order` waits for the saga's outcome before answering 202.
    pub order_wait: Duration,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            common: Common::from_env(7301, "postgres://order_svc@127.0.0.1:5433/order_db")?,
            order_wait: millis("ORDER_WAIT_MS", 5_000)?,
        })
    }
}
