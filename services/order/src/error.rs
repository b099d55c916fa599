//! The order service's one error type, and how it answers over HTTP and to the saga.
//!
//! `POST /order` and wrong methods on `/order` answer in the contract's order shape
//! (`{"status": ...}`); `GET /order/{id}` and `/user/purchased` answer `{}` like `/user`.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use kit::{body::Rejection, jetstream::PublishError, nats::HandlerError};
use serde_json::json;

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `POST /order` broke a rule of the contract.
    #[error("invalid order: {0}")]
    InvalidOrder(Rejection),
    /// The order's user or product does not exist.
    #[error("unknown user or product")]
    UnknownParty,
    /// The product has fewer units than ordered.
    #[error("not enough stock")]
    OutOfStock,
    /// The order outlived its final deadline undecided.
    #[error("the order could not be decided in time")]
    Undecided,
    /// An `Idempotency-Key` already used for a different order.
    #[error("Idempotency-Key already used for a different order")]
    KeyReused,
    /// A method other than POST on `/order`.
    #[error("method not allowed on /order")]
    OrderMethodNotAllowed,
    /// No such order, user or path.
    #[error("not found")]
    NotFound,
    /// A path id that is not an integer.
    #[error(transparent)]
    Invalid(#[from] Rejection),
    /// A method not allowed on another path.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The order could not be handed to the saga.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A query sent over NATS got no usable reply.
    #[error(transparent)]
    Nats(#[from] kit::nats::RequestError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            Self::InvalidOrder(Rejection::TooLarge { .. }) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"status": "Invalid Request"}),
            ),
            Self::InvalidOrder(_) => (
                StatusCode::BAD_REQUEST,
                json!({"status": "Invalid Request"}),
            ),
            Self::UnknownParty => (StatusCode::NOT_FOUND, json!({"status": "Invalid Request"})),
            Self::OutOfStock => (
                StatusCode::CONFLICT,
                json!({"status": "Exceeded quantity limit"}),
            ),
            Self::KeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"status": "Invalid Request"}),
            ),
            Self::OrderMethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"status": "Invalid Request"}),
            ),
            Self::NotFound => (StatusCode::NOT_FOUND, json!({})),
            Self::Invalid(Rejection::TooLarge { .. }) => (StatusCode::PAYLOAD_TOO_LARGE, json!({})),
            Self::Invalid(_) => (StatusCode::BAD_REQUEST, json!({})),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, json!({})),
            Self::Undecided
            | Self::Publish(_)
            | Self::Nats(kit::nats::RequestError::Unavailable { .. }) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "Service Unavailable"}),
            ),
            Self::Db(error) if kit::db::is_unavailable(error) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "Service Unavailable"}),
            ),
            Self::Nats(_) | Self::Db(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"status": "Internal Server Error"}),
            ),
        };
        if status.is_server_error() {
            tracing::error!(error = ?anyhow::Error::from(self), "request failed");
        }
        (status, Json(body)).into_response()
    }
}

impl From<Error> for HandlerError {
    fn from(error: Error) -> Self {
        match &error {
            Error::Db(db) if kit::db::is_unavailable(db) => Self::unavailable(error.to_string()),
            Error::Db(db) if kit::db::violated_constraint(db).is_some() => {
                Self::bad_request(error.to_string())
            }
            Error::Publish(_) => Self::unavailable(error.to_string()),
            _ => Self::internal(error.to_string()),
        }
    }
}
