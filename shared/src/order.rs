//! The order service's queries on NATS (`order.query.*`): what `GET /order/{id}` and
//! `GET /user/purchased/{user_id}` ask, and what any NATS client may ask too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `order.query.get`: one order by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetOrder {
    /// The order's id, as `POST /order` answered it.
    pub id: Uuid,
}

/// An order as stored, in any state: the body of `GET /order/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// The order's id.
    pub id: Uuid,
    /// Who ordered.
    pub user_id: i32,
    /// What.
    pub product_id: i32,
    /// How many units.
    pub quantity: i32,
    /// `pending`, `confirmed` or `rejected`.
    pub state: String,
    /// Why it was rejected: `user_not_found`, `product_not_found`, `insufficient_stock`; none
    /// otherwise (and for an order rejected at its final deadline).
    pub reason: Option<String>,
    /// When it was placed (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// Reply to `order.query.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OrderReply {
    /// The order.
    Ok {
        /// As stored.
        order: OrderView,
    },
    /// No order has this id.
    NotFound,
}

/// `order.query.purchased`: a user's purchase history. The order service does not check that
/// the user exists (the user service owns users); it sums what it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetPurchased {
    /// The user.
    pub user_id: i32,
}

/// Reply to `order.query.purchased`: units bought per product id, over confirmed orders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchased {
    /// Product id (as a string, the JSON object's key) to units.
    pub units: BTreeMap<String, i64>,
}
