//! The order routes: `POST /order` (places an order through the saga and waits for its
//! outcome), `GET /order/{id}`, and `GET /user/purchased/{user_id}`.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State, rejection::PathRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use kit::{body::Rejection, health::Dependencies};
use serde_json::{Map, Value, json};
use shared::{
    saga::{OrderOutcome, OrderState, PlaceOrder, RejectReason, message_id},
    subject,
    user::{GetUser, UserReply},
};
use tokio::sync::oneshot;
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use crate::{AppState, Error, db, error::Placing, nats::Waiters};

/// The service's whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let dependencies = Dependencies {
        pool: state.pool.clone(),
        nats: state.nats.clone(),
    };
    Router::new()
        .route(
            "/order",
            post(place).fallback(|| async { Placing(Error::MethodNotAllowed) }),
        )
        .route("/order/{id}", get(status))
        .route("/user/purchased/{user_id}", get(purchased))
        .merge(kit::health::routes(dependencies))
        .merge(kit::admin::routes(state.admin.clone()))
        .route("/metrics", get(metrics))
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

/// `POST /order`: validate (400 first), hand the order to the saga, and wait a bounded time
/// for its outcome; past the bound, or with `Prefer: respond-async`, answer 202 at once.
///
/// With an `Idempotency-Key`, the first request claims the key for its order, and a repeat with
/// the same order answers what the first answered: 202 again if that was 202, otherwise the
/// order's outcome (placing it again under the same id if the first placement never reached the
/// saga, say after a 503). A repeat with another order is 422.
async fn place(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Placing> {
    let order = parse_order(body, &state).await?;
    let key = idempotency_key(&headers)?;
    // Without its database the saga cannot store the order: refuse it now rather than accept
    // it and keep the client waiting.
    state.database.check().map_err(Error::from)?;
    // `claimed`: this request is the key's first, whose answer repeats will give.
    let (order, claimed, repeat) = match key {
        None => (order, None, false),
        Some(key) => match db::claim_key(&state.pool, key, &order).await? {
            db::Claim::Taken => (order, Some(key), false),
            db::Claim::Held {
                order: first,
                accepted,
            } if same_order(&first, &order) => {
                if accepted {
                    return accepted_again(&state, &first).await;
                }
                (first, None, true)
            }
            db::Claim::Held { .. } => return Err(Error::KeyReused.into()),
        },
    };
    let answered = hand_over(&state, order, repeat, prefers_async(&headers)).await;
    if let Some(key) = claimed {
        // A 5xx is not an answer to repeat: a repeat after one places the order.
        let first = match &answered {
            Ok(response) => Some(response.status() == StatusCode::ACCEPTED),
            Err(Placing(Error::UnknownParty | Error::OutOfStock)) => Some(false),
            Err(_) => None,
        };
        if let Some(accepted) = first
            && let Err(error) = db::record_first_answer(&state.pool, key, accepted).await
        {
            // A repeat then answers the outcome instead of 202: the order is no worse off.
            tracing::warn!(%error, "cannot record the first answer of an Idempotency-Key");
        }
    }
    answered
}

/// A repeat of a key whose first answer was 202: 202 again. Should the order never have been
/// stored (its `order.cmd.place` lost, say to a purge), it is placed again under its id first.
async fn accepted_again(state: &AppState, order: &PlaceOrder) -> Result<Response, Placing> {
    if db::find(&state.pool, order.order_id).await?.is_none() {
        let id = message_id("place", order.order_id);
        kit::jetstream::publish(&state.js, subject::ORDER_PLACE, &id, order).await?;
    }
    Ok(accepted(order.order_id))
}

/// Publishes `order` to the saga (unless it is a `repeat` already decided) and answers its
/// outcome, or 202 past the wait bound or when the client prefers to be answered at once.
async fn hand_over(
    state: &AppState,
    order: PlaceOrder,
    repeat: bool,
    respond_async: bool,
) -> Result<Response, Placing> {
    // Registered before the order is looked up or published, so that no outcome is missed.
    let waiter = (!respond_async).then(|| Waiter::new(&state.waiters, order.order_id));
    if repeat
        && let Some(outcome) = db::find(&state.pool, order.order_id)
            .await?
            .and_then(|stored| stored.outcome())
    {
        return answer(&outcome);
    }
    let order = PlaceOrder {
        notify: waiter.as_ref().map(|_| state.outcomes.clone()),
        ..order
    };
    let id = message_id("place", order.order_id);
    kit::jetstream::publish(&state.js, subject::ORDER_PLACE, &id, &order).await?;
    let Some(waiter) = waiter else {
        return Ok(accepted(order.order_id));
    };
    if let Some(outcome) = waiter.outcome(state.order_wait).await {
        return answer(&outcome);
    }
    // No word within the bound. The order may be decided all the same: the word was lost, or
    // went to the replica that placed the order first (a repeat of its Idempotency-Key).
    match db::find(&state.pool, order.order_id).await {
        Ok(Some(stored)) => match stored.outcome() {
            Some(outcome) => answer(&outcome),
            None => Ok(accepted(order.order_id)),
        },
        _ => Ok(accepted(order.order_id)),
    }
}

/// Whether two placements order the same thing (their ids differ: each request allocates one).
fn same_order(a: &PlaceOrder, b: &PlaceOrder) -> bool {
    (a.user_id, a.product_id, a.quantity) == (b.user_id, b.product_id, b.quantity)
}

/// The `Idempotency-Key` header, if sent: one value of 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Rejection> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |why: &str| Rejection::Invalid(format!("Idempotency-Key {why}"));
    if values.next().is_some() {
        return Err(invalid("sent more than once"));
    }
    let key = value
        .to_str()
        .map_err(|_| invalid("is not visible ASCII"))?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(invalid("must be 1 to 255 visible ASCII characters"));
    }
    Ok(Some(key))
}

async fn parse_order(body: Body, state: &AppState) -> Result<PlaceOrder, Rejection> {
    let fields = kit::body::read_object(body, state.limits).await?;
    if fields.command()? != "place order" {
        return Err(Rejection::Invalid("command is not \"place order\"".into()));
    }
    Ok(PlaceOrder {
        order_id: Uuid::now_v7(),
        user_id: fields.id("user_id")?,
        product_id: fields.id("product_id")?,
        quantity: fields.int("quantity", 1)?,
        notify: None,
    })
}

fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| preference.trim().eq_ignore_ascii_case("respond-async"))
}

fn answer(outcome: &OrderOutcome) -> Result<Response, Placing> {
    match (outcome.state, outcome.reason) {
        (OrderState::Confirmed, _) => Ok(Json(json!({
            "id": outcome.order_id,
            "product_id": outcome.product_id,
            "user_id": outcome.user_id,
            "quantity": outcome.quantity,
            "status": "Success",
        }))
        .into_response()),
        (_, Some(RejectReason::InsufficientStock)) => Err(Error::OutOfStock.into()),
        (_, Some(_)) => Err(Error::UnknownParty.into()),
        // Rejected without a reason: the saga could not decide it before its final deadline.
        (_, None) => Err(Error::Undecided.into()),
    }
}

fn accepted(order_id: Uuid) -> Response {
    let location = HeaderValue::from_str(&format!("/order/{order_id}")).ok();
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({"id": order_id, "state": "pending"})),
    )
        .into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A registered wait for one order's outcome; dropping it (the client went away, the wait
/// timed out) unregisters it.
struct Waiter {
    waiters: Arc<Waiters>,
    order_id: Uuid,
    receiver: Option<oneshot::Receiver<OrderOutcome>>,
}

impl Waiter {
    fn new(waiters: &Arc<Waiters>, order_id: Uuid) -> Self {
        let receiver = Some(waiters.register(order_id));
        Self {
            waiters: waiters.clone(),
            order_id,
            receiver,
        }
    }

    async fn outcome(mut self, bound: Duration) -> Option<OrderOutcome> {
        let receiver = self.receiver.take()?;
        tokio::time::timeout(bound, receiver).await.ok()?.ok()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // Closed first, so that `forget` sees this wait as over and leaves the others.
        drop(self.receiver.take());
        self.waiters.forget(self.order_id);
    }
}

/// `GET /order/{id}`: the order as stored, in any state (as `order.query.get` answers it).
async fn status(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Error> {
    let Ok(Path(raw)) = id else {
        return Err(Error::NotFound);
    };
    let id = Uuid::parse_str(&raw).map_err(|_| Error::NotFound)?;
    state.database.check()?;
    let order = db::find(&state.pool, id).await?.ok_or(Error::NotFound)?;
    Ok(Json(order.view()).into_response())
}

/// `GET /user/purchased/{user_id}`: the user must exist (asked over NATS, the user service owns
/// users); then the units of each product over the user's confirmed orders.
async fn purchased(
    State(state): State<AppState>,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<Response, Error> {
    let Path(raw) = user_id.map_err(|error| Rejection::Invalid(error.to_string()))?;
    let user_id = kit::body::path_id(&raw)?;
    state.database.check()?;
    let reply: UserReply = kit::nats::request(
        &state.nats,
        subject::USER_GET,
        &GetUser { id: user_id },
        state.timing,
    )
    .await?;
    if !matches!(reply, UserReply::Ok { .. }) {
        return Err(Error::NotFound);
    }
    let totals: Map<String, Value> = db::purchased(&state.pool, user_id)
        .await?
        .into_iter()
        .map(|(product_id, units)| (product_id.to_string(), Value::from(units)))
        .collect();
    Ok(Json(totals).into_response())
}

/// `GET /metrics`, with the number of pending orders counted at the scrape.
/// While the database is down, `orders_pending` keeps its last count (`database_up` says 0).
async fn metrics(State(state): State<AppState>) -> Response {
    if state.database.is_up() {
        match db::count_pending(&state.pool).await {
            Ok(pending) => {
                state.saga.pending.set(pending);
            }
            Err(error) => tracing::warn!(%error, "cannot count pending orders for /metrics"),
        }
    }
    state.metrics.render(state.database.is_up())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respond_async_is_found_among_other_preferences_in_any_case() {
        let mut headers = HeaderMap::new();
        assert!(!prefers_async(&headers));
        headers.append(
            "prefer",
            HeaderValue::from_static("return=minimal, Respond-Async"),
        );
        assert!(prefers_async(&headers));
        let mut wait = HeaderMap::new();
        wait.append("prefer", HeaderValue::from_static("wait=5"));
        assert!(!prefers_async(&wait));
    }
}
