//! The `/user` routes: writes become commands on NATS, reads come from `user_db`.

use std::fmt::Write;

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State, rejection::PathRejection},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use kit::{body::Rejection, health::Dependencies};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use shared::{
    subject,
    user::{UpdateUser, User, UserReply},
};
use tower_http::trace::TraceLayer;

use crate::{AppState, Error, db};

/// The service's whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let dependencies = Dependencies {
        pool: state.pool.clone(),
        nats: state.nats.clone(),
    };
    Router::new()
        .route("/user", post(command))
        .route("/user/{id}", get(read))
        .merge(kit::health::routes(dependencies))
        .merge(kit::admin::routes(state.admin.clone()))
        .merge(kit::metrics::routes(
            state.metrics.clone(),
            state.database.clone(),
        ))
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .fallback(|| async { Error::NotFound })
        .layer(axum::middleware::from_fn_with_state(
            crate::error::internal as fn(&_) -> _,
            kit::serve::catch_panic,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            kit::metrics::track,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(kit::serve::request_span))
        .with_state(state)
}

/// A user as the REST contract shows it: the password field carries the hash.
#[derive(Serialize)]
struct Record<'a> {
    id: i32,
    username: &'a str,
    email: &'a str,
    password: &'a str,
}

fn record(user: &User) -> Response {
    let record = Record {
        id: user.id,
        username: &user.username,
        email: &user.email,
        password: &user.password_sha256,
    };
    Json(record).into_response()
}

/// The contract's unsalted hash: SHA-256 as 64 upper-case hex digits.
fn password_hash(password: &str) -> String {
    Sha256::digest(password.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02X}");
            hex
        })
}

async fn read(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Error> {
    let Path(raw) = id.map_err(|error| Rejection::Invalid(error.to_string()))?;
    let id = kit::body::path_id(&raw)?;
    state.database.check()?;
    let user = db::find(&state.pool, id).await?.ok_or(Error::NotFound)?;
    Ok(record(&user))
}

/// `POST /user`: the whole body is validated first (400 wins), then sent as a command.
async fn command(State(state): State<AppState>, body: Body) -> Result<Response, Error> {
    let fields = kit::body::read_object(body, state.limits).await?;
    let nats = &state.nats;
    let reply: UserReply = match fields.command()? {
        "create" => {
            let user = User {
                id: fields.id("id")?,
                username: fields.text("username")?,
                email: fields.text("email")?,
                password_sha256: password_hash(&fields.text("password")?),
            };
            kit::nats::request(nats, subject::USER_CREATE, &user, state.timing).await?
        }
        "update" => {
            let change = UpdateUser {
                id: fields.id("id")?,
                username: fields.opt_text("username")?,
                email: fields.opt_text("email")?,
                password_sha256: fields.opt_text("password")?.as_deref().map(password_hash),
            };
            kit::nats::request(nats, subject::USER_UPDATE, &change, state.timing).await?
        }
        "delete" => {
            let old = User {
                id: fields.id("id")?,
                username: fields.text("username")?,
                email: fields.text("email")?,
                password_sha256: password_hash(&fields.text("password")?),
            };
            kit::nats::request(nats, subject::USER_DELETE, &old, state.timing).await?
        }
        other => return Err(Rejection::Invalid(format!("unknown command {other:?}")).into()),
    };
    match reply {
        UserReply::Ok { user } => Ok(record(&user)),
        UserReply::Deleted => Ok(Json(json!({})).into_response()),
        UserReply::NotFound => Err(Error::NotFound),
        UserReply::Conflict => Err(Error::Conflict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_hash_is_upper_case_hex_sha256() {
        assert_eq!(
            password_hash("abc"),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        );
    }
}
