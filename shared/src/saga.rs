//! Payloads of the order saga, carried on JetStream (see `nats/README.md` for the streams).
//!
//! Every message names the order it belongs to; the order id is also each message's
//! correlation id and, with the message kind, its `Nats-Msg-Id` (see [`message_id`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `order.cmd.place`: store a new order and start its saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// Allocated by the order service's HTTP layer before publishing.
    pub order_id: Uuid,
    /// The buyer.
    pub user_id: i32,
    /// What is bought.
    pub product_id: i32,
    /// How many units, `>= 1`.
    pub quantity: i32,
    /// Where the placing replica waits to hear the outcome
    /// ([`crate::subject::order_outcomes_for`]); none when nobody waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
}

/// `user.cmd.validate`: does this user exist?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateUser {
    /// The order asking.
    pub order_id: Uuid,
    /// The user to check.
    pub user_id: i32,
}

/// `user.evt.validated` or `user.evt.rejected`: the user service's answer to [`ValidateUser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserVerdict {
    /// The order asking.
    pub order_id: Uuid,
    /// The user checked.
    pub user_id: i32,
    /// True when the user exists (and the subject is `user.evt.validated`).
    pub valid: bool,
}

/// `product.cmd.reserve` and `product.cmd.release`: take units of a product for an order, or
/// give back what that order took. Both are idempotent on the order id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRequest {
    /// The order the units are for.
    pub order_id: Uuid,
    /// The product.
    pub product_id: i32,
    /// How many units.
    pub quantity: i32,
}

/// What happened to an order's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockOutcome {
    /// The units are taken and held for the order (`product.evt.reserved`).
    Reserved,
    /// Nothing was taken; see the reason (`product.evt.rejected`).
    Rejected,
    /// What the order held was given back, or it was cancelled before it took anything
    /// (`product.evt.released`).
    Released,
}

/// Why an order was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The buyer does not exist.
    UserNotFound,
    /// The product does not exist.
    ProductNotFound,
    /// Fewer units in stock than ordered.
    InsufficientStock,
}

impl RejectReason {
    /// The name stored in databases and shown by `GET /order/{id}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserNotFound => "user_not_found",
            Self::ProductNotFound => "product_not_found",
            Self::InsufficientStock => "insufficient_stock",
        }
    }

    /// The inverse of [`RejectReason::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::UserNotFound,
            Self::ProductNotFound,
            Self::InsufficientStock,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

/// `product.evt.reserved|rejected|released`: the product service's answer to a [`StockRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockVerdict {
    /// The order concerned.
    pub order_id: Uuid,
    /// The product.
    pub product_id: i32,
    /// The units requested.
    pub quantity: i32,
    /// What happened.
    pub outcome: StockOutcome,
    /// Set when the outcome is [`StockOutcome::Rejected`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectReason>,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Waiting for the user and stock verdicts.
    Pending,
    /// Both verdicts good: the stock is taken for good.
    Confirmed,
    /// Refused; any stock taken was released.
    Rejected,
}

impl OrderState {
    /// The name stored in the database and shown by `GET /order/{id}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
        }
    }

    /// The inverse of [`OrderState::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Pending, Self::Confirmed, Self::Rejected]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// `order.evt.confirmed|rejected`, and to the placing replica's `order.outcome.<replica>`: how
/// an order ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderOutcome {
    /// The order.
    pub order_id: Uuid,
    /// The buyer.
    pub user_id: i32,
    /// The product.
    pub product_id: i32,
    /// The units.
    pub quantity: i32,
    /// [`OrderState::Confirmed`] or [`OrderState::Rejected`].
    pub state: OrderState,
    /// Set when rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectReason>,
}

/// The `Nats-Msg-Id` of the saga message `kind` (`place`, `validate`, `reserve`, ...) for an order:
/// JetStream drops a second publish of it within its duplicate window.
pub fn message_id(kind: &str, order_id: Uuid) -> String {
    format!("{kind}:{order_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_wire_format() {
        for reason in [
            RejectReason::UserNotFound,
            RejectReason::ProductNotFound,
            RejectReason::InsufficientStock,
        ] {
            assert_eq!(RejectReason::parse(reason.as_str()), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        for state in [
            OrderState::Pending,
            OrderState::Confirmed,
            OrderState::Rejected,
        ] {
            assert_eq!(OrderState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }

    #[test]
    fn a_reserved_verdict_carries_no_reason_field() {
        let verdict = StockVerdict {
            order_id: Uuid::nil(),
            product_id: 1,
            quantity: 2,
            outcome: StockOutcome::Reserved,
            reason: None,
        };
        let json = serde_json::to_value(verdict).unwrap();
        assert_eq!(json["outcome"], "reserved");
        assert!(json.get("reason").is_none());
    }
}
