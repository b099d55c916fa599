//! The order saga on NATS: storing placed orders and asking for their verdicts, recording the
//! verdicts in any order, settling each decided order (outcome event, compensation), and
//! handing outcomes to the HTTP requests waiting for them.

use std::{collections::HashMap, sync::Mutex};

use futures::StreamExt;
use kit::{
    jetstream::{Delivery, Worker},
    nats::{HandlerError, Handlers},
};
use shared::{
    order::{GetOrder, GetPurchased, OrderReply, Purchased},
    saga::{
        OrderOutcome, OrderState, PlaceOrder, StockOutcome, StockRequest, StockVerdict,
        UserVerdict, ValidateUser, message_id,
    },
    stream, subject,
};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::{AppState, Error, db};

/// Registers the `order` service with its queries (`nats micro ls` lists it with the others).
pub async fn start_queries(state: AppState) -> anyhow::Result<Handlers> {
    let mut handlers = Handlers::start(
        &state.nats,
        "order",
        "Orders: placed through a saga on JetStream (order.cmd.place); looked up here",
        state.database.clone(),
        state.metrics.clone(),
    )
    .await?;
    let s = state.clone();
    handlers
        .add(
            "get",
            subject::ORDER_GET,
            "One order by id, in any state",
            move |query, _| get(s.clone(), query),
        )
        .await?;
    handlers
        .add(
            "purchased",
            subject::ORDER_PURCHASED,
            "Units bought per product over a user's confirmed orders",
            move |query, _| purchased(state.clone(), query),
        )
        .await?;
    Ok(handlers)
}

async fn get(state: AppState, query: GetOrder) -> Result<OrderReply, HandlerError> {
    let order = db::find(&state.pool, query.id).await.map_err(Error::from)?;
    Ok(order.map_or(OrderReply::NotFound, |order| OrderReply::Ok {
        order: order.view(),
    }))
}

async fn purchased(state: AppState, query: GetPurchased) -> Result<Purchased, HandlerError> {
    let totals = db::purchased(&state.pool, query.user_id)
        .await
        .map_err(Error::from)?;
    Ok(Purchased {
        units: totals
            .into_iter()
            .map(|(product_id, units)| (product_id.to_string(), units))
            .collect(),
    })
}

/// Creates the order streams and starts the three saga workers.
pub async fn start_saga(state: AppState) -> anyhow::Result<Vec<Worker>> {
    kit::jetstream::ensure_stream(&state.js, &stream::ORDER_SAGA).await?;
    kit::jetstream::ensure_stream(&state.js, &stream::ORDER_EVENTS).await?;
    let place_consumer = kit::jetstream::consumer(&state.js, &stream::ORDER_PLACE).await?;
    let users = kit::jetstream::consumer(&state.js, &stream::ORDER_USER_VERDICTS).await?;
    let stock = kit::jetstream::consumer(&state.js, &stream::ORDER_STOCK_VERDICTS).await?;
    let (js, metrics) = (state.js.clone(), state.metrics.clone());
    let (s1, s2, s3) = (state.clone(), state.clone(), state);
    Ok(vec![
        Worker::spawn(&js, place_consumer, &metrics, move |delivery| {
            place(s1.clone(), delivery)
        }),
        Worker::spawn(&js, users, &metrics, move |delivery| {
            user_verdict(s2.clone(), delivery)
        }),
        Worker::spawn(&js, stock, &metrics, move |delivery| {
            stock_verdict(s3.clone(), delivery)
        }),
    ])
}

/// `order.cmd.place`: store the order as pending, then ask for both verdicts at once. A
/// redelivery of a still-pending order asks again (both commands are idempotent downstream).
async fn place(state: AppState, delivery: Delivery<PlaceOrder>) -> Result<(), HandlerError> {
    let order = delivery.payload;
    if order.quantity < 1 {
        return Err(HandlerError::bad_request("quantity must be at least 1"));
    }
    let stored = db::insert_pending(&state.pool, &order)
        .await
        .map_err(Error::from)?;
    if stored.state != OrderState::Pending.as_str() {
        return settle(&state, &stored).await;
    }
    let validate = ValidateUser {
        order_id: order.order_id,
        user_id: order.user_id,
    };
    let reserve = StockRequest {
        order_id: order.order_id,
        product_id: order.product_id,
        quantity: order.quantity,
    };
    let (validate_id, reserve_id) = (
        message_id("validate", order.order_id),
        message_id("reserve", order.order_id),
    );
    let (validated, reserved) = tokio::join!(
        kit::jetstream::publish(&state.js, subject::USER_VALIDATE, &validate_id, &validate),
        kit::jetstream::publish(&state.js, subject::PRODUCT_RESERVE, &reserve_id, &reserve),
    );

    validated.and(reserved).map_err(Error::from)?;
    Ok(())
}

/// `user.evt.validated|rejected`.
async fn user_verdict(
    state: AppState,
    delivery: Delivery<UserVerdict>,
) -> Result<(), HandlerError> {
    let verdict = delivery.payload;
    match db::record_user_verdict(&state.pool, verdict.order_id, verdict.valid)
        .await
        .map_err(Error::from)?
    {
        Some(order) => decided(&state, &order).await,
        None => resettle(&state, verdict.order_id, None).await,
    }
}

/// `product.evt.reserved|rejected|released`.
async fn stock_verdict(
    state: AppState,
    delivery: Delivery<StockVerdict>,
) -> Result<(), HandlerError> {
    let verdict = delivery.payload;
    let stock = match (verdict.outcome, verdict.reason) {
        (StockOutcome::Released, _) => {
            db::mark_released(&state.pool, verdict.order_id)
                .await
                .map_err(Error::from)?;
            return Ok(());
        }
        (StockOutcome::Reserved, _) => "reserved",
        (StockOutcome::Rejected, Some(reason)) => reason.as_str(),
        (StockOutcome::Rejected, None) => {
            return Err(HandlerError::bad_request("rejected without a reason"));
        }
    };
    let reserved = (verdict.outcome == StockOutcome::Reserved).then_some(StockRequest {
        order_id: verdict.order_id,
        product_id: verdict.product_id,
        quantity: verdict.quantity,
    });
    match db::record_stock_verdict(&state.pool, verdict.order_id, stock)
        .await
        .map_err(Error::from)?
    {
        Some(order) => decided(&state, &order).await,
        None => resettle(&state, verdict.order_id, reserved).await,
    }
}

/// A verdict was recorded: count the order if that decided it, and settle it.
async fn decided(state: &AppState, order: &db::Order) -> Result<(), HandlerError> {
    state.saga.decided(order);
    settle(state, order).await
}

/// A verdict that recorded nothing: a repeat, or one for an order already decided. The first
/// time round may have died between committing the decision and publishing it, so publish it
/// again (JetStream drops the duplicate). Stock `reserved` for an order that was rejected
/// meanwhile, or that this service does not know, is given back.
async fn resettle(
    state: &AppState,
    order_id: Uuid,
    reserved: Option<StockRequest>,
) -> Result<(), HandlerError> {
    let Some(order) = db::find(&state.pool, order_id).await.map_err(Error::from)? else {
        if let Some(request) = reserved {
            tracing::warn!(%order_id, "stock reserved for an unknown order; releasing it");
            release(state, request).await?;
        }
        return Ok(());
    };
    if reserved.is_some() && order.state == OrderState::Rejected.as_str() {
        release(state, order.stock_request()).await?;
    }
    settle(state, &order).await
}

/// Publishes a decided order's outcome, and releases its stock if it was rejected holding some.
async fn settle(state: &AppState, order: &db::Order) -> Result<(), HandlerError> {
    let Some(outcome) = order.outcome() else {
        return Ok(());
    };
    if outcome.state == OrderState::Rejected && order.stock.as_deref() == Some("reserved") {
        release(state, order.stock_request()).await?;
    }
    let subject = subject::order_outcome(order.id, outcome.state);
    kit::jetstream::publish(
        &state.js,
        &subject,
        &message_id("outcome", order.id),
        &outcome,
    )
    .await
    .map_err(|error| Error::from(error).into())
}

async fn release(state: &AppState, request: StockRequest) -> Result<(), HandlerError> {
    kit::jetstream::publish(
        &state.js,
        subject::PRODUCT_RELEASE,
        &message_id("release", request.order_id),
        &request,
    )
    .await
    .map_err(|error| Error::from(error).into())
}

/// HTTP requests waiting for their order's outcome, by order id; one order may have several
/// (repeats of an `Idempotency-Key`).
#[derive(Default)]
pub struct Waiters(Mutex<HashMap<Uuid, Vec<oneshot::Sender<OrderOutcome>>>>);

impl Waiters {
    /// Registers interest in `order_id`'s outcome; must happen before the order is published.
    pub fn register(&self, order_id: Uuid) -> oneshot::Receiver<OrderOutcome> {
        let (sender, receiver) = oneshot::channel();
        self.lock().entry(order_id).or_default().push(sender);
        receiver
    }

    /// Forgets the waits on `order_id` whose receiver is gone (timed out, client went away).
    pub fn forget(&self, order_id: Uuid) {
        let mut waiters = self.lock();
        if let Some(senders) = waiters.get_mut(&order_id) {
            senders.retain(|sender| !sender.is_closed());
            if senders.is_empty() {
                waiters.remove(&order_id);
            }
        }
    }

    fn resolve(&self, outcome: OrderOutcome) {
        let senders = self.lock().remove(&outcome.order_id);
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(outcome);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<oneshot::Sender<OrderOutcome>>>> {
        // A panic while holding this lock cannot leave the map inconsistent; keep using it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Subscribes to every order outcome and wakes the request waiting for it, if it waits here.
/// Each replica sees every outcome; the one that holds the waiter answers.
pub async fn listen_outcomes(state: &AppState) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut outcomes = state.nats.subscribe(subject::ORDER_OUTCOMES).await?;
    if let Err(error) = kit::nats::round_trip(&state.nats).await {
        tracing::warn!(%error, "could not confirm the outcome subscription with the NATS server");
    }

    let waiters = state.waiters.clone();
    Ok(tokio::spawn(async move {
        while let Some(message) = outcomes.next().await {
            match serde_json::from_slice::<OrderOutcome>(&message.payload) {
                Ok(outcome) => waiters.resolve(outcome),
                Err(error) => {
                    tracing::warn!(subject = %message.subject, %error, "undecodable order outcome")
                }
            }
        }
    }))
}

/// Operator reset: pending placements and recorded outcomes go, then every order.
pub async fn reset(state: AppState) -> anyhow::Result<()> {
    kit::admin::purge(
        &state.js,
        &[stream::ORDER_SAGA.name, stream::ORDER_EVENTS.name],
    )
    .await?;
    Ok(db::delete_everything(&state.pool).await?)
}
