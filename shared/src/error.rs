//! Error codes a handler puts in the NATS services API `Nats-Service-Error-Code` header.
//!
//! A business outcome (not found, conflict) is a normal reply body; these codes mean the
//! request itself could not be handled.

/// The payload did not decode or broke a rule of the contract; retrying will not help.
pub const BAD_REQUEST: usize = 400;
/// The handler's own dependency (its database) is unreachable; retrying later may help.
pub const UNAVAILABLE: usize = 503;
/// Anything else went wrong inside the handler.
pub const INTERNAL: usize = 500;
