//! The order service's one error type, and how it answers over HTTP and to the saga.
//!
//! An error answers `{}` like `/user` does (`GET /order/{id}`, `/user/purchased`), except on
//! `POST /order`, whose handler wraps it in [`Placing`] to answer in the contract's order shape
//! (`{"status": ...}`), whatever went wrong.

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
    /// The request broke a rule of the contract (400, or 413 for a body too large).
    #[error(transparent)]
    Invalid(#[from] Rejection),
    /// The order's user or product does not exist.
    #[error("unknown user or product")]
    UnknownParty,
    /// The product has fewer units than ordered.
    #[error("not enough stock")]
    OutOfStock,
    /// An `Idempotency-Key` already used for a different order.
    #[error("Idempotency-Key already used for a different order")]
    KeyReused,
    /// No such order, user or path.
    #[error("not found")]
    NotFound,
    /// A method the path does not allow.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The order outlived its final deadline undecided.
    #[error("the order could not be decided in time")]
    Undecided,
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

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(Rejection::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::UnknownParty | Self::NotFound => StatusCode::NOT_FOUND,
            Self::OutOfStock => StatusCode::CONFLICT,
            Self::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Undecided
            | Self::Publish(_)
            | Self::Nats(kit::nats::RequestError::Unavailable { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Db(error) if kit::db::is_unavailable(error) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Nats(_) | Self::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The status, after logging a server error with its whole cause chain.
    fn logged_status(self) -> StatusCode {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = ?anyhow::Error::from(self), "request failed");
        }
        status
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.logged_status(), Json(json!({}))).into_response()
    }
}

/// An error of `POST /order` (or a wrong method on `/order`), answered in the order shape.
#[derive(Debug)]
pub struct Placing(pub Error);

impl<E: Into<Error>> From<E> for Placing {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for Placing {
    fn into_response(self) -> Response {
        let status = self.0.logged_status();
        let message = match status {
            StatusCode::CONFLICT => "Exceeded quantity limit",
            StatusCode::SERVICE_UNAVAILABLE => "Service Unavailable",
            StatusCode::INTERNAL_SERVER_ERROR => "Internal Server Error",
            _ => "Invalid Request",
        };
        (status, Json(json!({"status": message}))).into_response()
    }
}

/// The answer to a request whose handler panicked: a 500 in the shape of its route's errors
/// (`{"status": ...}` for `/order`, an empty object for the rest).
pub fn internal(uri: &axum::http::Uri) -> Response {
    let body = if uri.path() == "/order" {
        json!({"status": "Internal Server Error"})
    } else {
        json!({})
    };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn a_panic_is_answered_500_in_the_shape_of_its_route() {
        let placing = internal(&"/order".parse().expect("uri"));
        assert_eq!(placing.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body(placing).await,
            json!({"status": "Internal Server Error"})
        );

        let reading = internal(&"/order/0192".parse().expect("uri"));
        assert_eq!(reading.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body(reading).await, json!({}));
    }
}
