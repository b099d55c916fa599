//! The user service's configuration, read from the environment.

use kit::config::Common;

/// Everything the user service reads at start-up; see the README's configuration table.
#[derive(Debug, Clone)]
pub struct Config {
    /// Settings every service shares (HTTP address defaults to 127.0.0.1:7101, database to `user_db`).
    pub common: Common,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            common: Common::from_env(7101, "postgres://user_svc@127.0.0.1:5433/user_db")?,
        })
    }
}
