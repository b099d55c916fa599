//! NATS subject names, `<owner>.<kind>.<name>`: the owner handles the commands and queries on it.
//!
//! `nats/README.md` is the catalog for people; these constants are the catalog for code.

/// Create a user; request/reply, payload [`crate::user::User`], reply [`crate::user::UserReply`].
pub const USER_CREATE: &str = "user.cmd.create";
/// Update some fields of a user; payload [`crate::user::UpdateUser`].
pub const USER_UPDATE: &str = "user.cmd.update";
/// Delete a user whose credentials match; payload [`crate::user::DeleteUser`].
pub const USER_DELETE: &str = "user.cmd.delete";
/// Read one user; payload [`crate::user::GetUser`].
pub const USER_GET: &str = "user.query.get";

/// Create a product; request/reply, payload [`crate::product::Product`], reply [`crate::product::ProductReply`].
pub const PRODUCT_CREATE: &str = "product.cmd.create";
/// Update some fields of a product; payload [`crate::product::UpdateProduct`].
pub const PRODUCT_UPDATE: &str = "product.cmd.update";
/// Delete a product whose fields match; payload [`crate::product::DeleteProduct`].
pub const PRODUCT_DELETE: &str = "product.cmd.delete";
/// Read one product; payload [`crate::product::GetProduct`].
pub const PRODUCT_GET: &str = "product.query.get";

/// Read one order; request/reply, payload [`crate::order::GetOrder`], reply [`crate::order::OrderReply`].
pub const ORDER_GET: &str = "order.query.get";
/// A user's purchase history; payload [`crate::order::GetPurchased`], reply [`crate::order::Purchased`].
pub const ORDER_PURCHASED: &str = "order.query.purchased";

/// Place an order (JetStream, stream `ORDER_SAGA`); payload [`crate::saga::PlaceOrder`].
pub const ORDER_PLACE: &str = "order.cmd.place";
/// Does the user exist (JetStream, `USER_SAGA`); payload [`crate::saga::ValidateUser`].
pub const USER_VALIDATE: &str = "user.cmd.validate";
/// The user exists; payload [`crate::saga::UserVerdict`].
pub const USER_VALIDATED: &str = "user.evt.validated";
/// The user does not exist; payload [`crate::saga::UserVerdict`].
pub const USER_REJECTED: &str = "user.evt.rejected";
/// Take stock for an order (JetStream, `PRODUCT_SAGA`); payload [`crate::saga::StockRequest`].
pub const PRODUCT_RESERVE: &str = "product.cmd.reserve";
/// Give back an order's stock; payload [`crate::saga::StockRequest`].
pub const PRODUCT_RELEASE: &str = "product.cmd.release";

/// The stock was taken; payload [`crate::saga::StockVerdict`].
pub const PRODUCT_RESERVED: &str = "product.evt.reserved";
/// The stock was not taken (no such product, not enough units); payload [`crate::saga::StockVerdict`].
pub const PRODUCT_REJECTED: &str = "product.evt.rejected";
/// An order's stock was given back; payload [`crate::saga::StockVerdict`].
pub const PRODUCT_RELEASED: &str = "product.evt.released";

/// The verdict subject for a stock outcome: `product.evt.reserved|rejected|released`.
pub fn stock_verdict(outcome: crate::saga::StockOutcome) -> &'static str {
    match outcome {
        crate::saga::StockOutcome::Reserved => PRODUCT_RESERVED,
        crate::saga::StockOutcome::Rejected => PRODUCT_REJECTED,
        crate::saga::StockOutcome::Released => PRODUCT_RELEASED,
    }
}

/// Every subject the saga's consumers read from JetStream.
pub const SAGA: [&str; 9] = [
    ORDER_PLACE,
    USER_VALIDATE,
    PRODUCT_RESERVE,
    PRODUCT_RELEASE,
    USER_VALIDATED,
    USER_REJECTED,
    PRODUCT_RESERVED,
    PRODUCT_REJECTED,
    PRODUCT_RELEASED,
];

/// An order was confirmed (JetStream, `ORDER_EVENTS`, kept for audit); payload
/// [`crate::saga::OrderOutcome`], which names the order.
pub const ORDER_CONFIRMED: &str = "order.evt.confirmed";
/// An order was rejected; payload [`crate::saga::OrderOutcome`].
pub const ORDER_REJECTED: &str = "order.evt.rejected";

/// The outcome event subject for a decided order's state: `order.evt.confirmed|rejected`.
pub fn order_outcome(state: crate::saga::OrderState) -> &'static str {
    match state {
        crate::saga::OrderState::Confirmed => ORDER_CONFIRMED,
        _ => ORDER_REJECTED,
    }
}

/// Where the order replica `replica` hears the outcomes of the orders it placed and waits for
/// (core NATS, not retained): `order.outcome.<replica>`, named in each
/// [`crate::saga::PlaceOrder`]. One subscription per replica, never one per order.
pub fn order_outcomes_for(replica: &str) -> String {
    format!("order.outcome.{replica}")
}

/// Every replica's outcome subject, for permissions and for watching them all.
pub const ORDER_OUTCOMES: &str = "order.outcome.*";

/// Operator command, every process of every service: shut down gracefully. No payload.
pub const ADMIN_SHUTDOWN: &str = "admin.cmd.shutdown";
/// Operator command, every process of every service: delete all its data; each answers with
/// [`crate::admin::ResetDone`].
pub const ADMIN_RESET: &str = "admin.cmd.reset";

/// Header carrying the id of a `*.cmd.*` request. The requester retries a command whose reply
/// did not come with the same id, and the handler applies each id once: a repeat gets the
/// answer the first one got, never a second effect.
pub const COMMAND_ID_HEADER: &str = "Command-Id";

/// Where a saga message that could not be handled is kept: `dead.<its subject>` (stream
/// `DEAD_LETTERS`), with headers saying why and where it came from.
pub fn dead_letter(subject: &str) -> String {
    format!("dead.{subject}")
}

/// Header of a dead letter: why it could not be handled.
pub const DEAD_REASON_HEADER: &str = "Dead-Reason";
/// Header of a dead letter: `<stream>:<sequence>` of the original message.
pub const DEAD_ORIGIN_HEADER: &str = "Dead-Origin";
/// Header of a dead letter: the consumer that gave up on it.
pub const DEAD_CONSUMER_HEADER: &str = "Dead-Consumer";
/// Header of a dead letter: how many times it was delivered.
pub const DEAD_ATTEMPTS_HEADER: &str = "Dead-Attempts";
