//! Payloads of the operator commands (`admin.cmd.*`), served only when `ADMIN_TOKEN` is set.

use serde::{Deserialize, Serialize};

/// The services of the system: a reset is complete once each has answered.
pub const SERVICES: [&str; 3] = ["user", "product", "order"];

/// One process's answer to `admin.cmd.reset`: its service's data is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetDone {
    /// `user`, `product` or `order`.
    pub service: String,
}
