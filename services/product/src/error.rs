//! The product service's one error type, and how it answers over HTTP and over NATS.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use kit::{body::Rejection, nats::HandlerError};
use serde_json::json;

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The product does not exist (or, for delete, does not match).
    #[error("not found")]
    NotFound,
    /// A product with this id already exists.
    #[error("already exists")]
    Conflict,
    /// The request broke a rule of the contract.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The method is not allowed on this path.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A command sent over NATS got no usable reply.
    #[error(transparent)]
    Nats(#[from] kit::nats::RequestError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Rejected(Rejection::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Rejected(Rejection::Invalid(_)) => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Nats(kit::nats::RequestError::Unavailable { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Db(error) if kit::db::is_unavailable(error) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Nats(_) | Self::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = ?anyhow::Error::from(self), "request failed");
        } else if let Self::Rejected(rejection) = &self {
            tracing::debug!(%rejection, "request rejected");
        }
        // The contract's error body for `/product` is an empty object, whatever the status.
        (status, Json(json!({}))).into_response()
    }
}

/// The answer to a request whose handler panicked: a 500 with the contract's error body for
/// `/product`, an empty object.
pub fn internal(_uri: &axum::http::Uri) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({}))).into_response()
}

impl From<Error> for HandlerError {
    fn from(error: Error) -> Self {
        match &error {
            Error::Db(db) if kit::db::is_unavailable(db) => Self::unavailable(error.to_string()),
            Error::Db(db) if kit::db::violated_constraint(db).is_some() => {
                Self::bad_request(error.to_string())
            }
            Error::Rejected(_) => Self::bad_request(error.to_string()),
            _ => Self::internal(error.to_string()),
        }
    }
}
