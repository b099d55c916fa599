//! The order saga on JetStream, a batch at a time: storing placed orders and asking for their
//! verdicts, recording the verdicts in whatever order they come, and settling each decided
//! order: compensation, its outcome event, and word to the replica waiting for it.

use std::collections::{HashMap, HashSet};

use kit::{
    jetstream::{Delivery, Outbox, Worker},
    nats::{HandlerError, Rank},
};
use shared::{
    saga::{
        OrderOutcome, OrderState, PlaceOrder, StockOutcome, StockRequest, StockVerdict,
        UserVerdict, ValidateUser, message_id,
    },
    stream, subject,
};
use uuid::Uuid;

use crate::{AppState, Error, db};

/// Creates the order streams and starts the three saga workers, pulling at `rank`.
/// Streams it creates get `replicas` copies (`STREAM_REPLICAS`).
pub async fn start(state: AppState, replicas: usize, rank: &Rank) -> anyhow::Result<Vec<Worker>> {
    let js = &state.js;
    kit::jetstream::ensure_stream(js, &stream::ORDER_SAGA, replicas).await?;
    kit::jetstream::ensure_stream(js, &stream::ORDER_EVENTS, replicas).await?;
    let place_consumer = kit::jetstream::consumer(js, &stream::ORDER_PLACE, replicas).await?;
    let users = kit::jetstream::consumer(js, &stream::ORDER_USER_VERDICTS, replicas).await?;
    let stock = kit::jetstream::consumer(js, &stream::ORDER_STOCK_VERDICTS, replicas).await?;
    let (js, metrics) = (state.js.clone(), state.metrics.clone());
    let (s1, s2, s3) = (state.clone(), state.clone(), state);
    Ok(vec![
        Worker::spawn(&js, place_consumer, &metrics, rank, move |batch| {
            place(s1.clone(), batch)
        }),
        Worker::spawn(&js, users, &metrics, rank, move |batch| {
            user_verdicts(s2.clone(), batch)
        }),
        Worker::spawn(&js, stock, &metrics, rank, move |batch| {
            stock_verdicts(s3.clone(), batch)
        }),
    ])
}

/// `order.cmd.place`, a batch at a time: store the orders as pending in one statement, then ask
/// for both verdicts of each at once. A redelivery of a still-pending order asks again (both
/// commands are idempotent downstream); one of a decided order publishes its outcome again.
async fn place(state: AppState, batch: Vec<Delivery<PlaceOrder>>) -> Result<(), HandlerError> {
    if batch.iter().any(|delivery| delivery.payload.quantity < 1) {
        return Err(HandlerError::bad_request("quantity must be at least 1"));
    }
    let orders: Vec<PlaceOrder> = unique(&batch, |order| order.order_id)
        .map(|delivery| delivery.payload.clone())
        .collect();
    let stored: HashMap<Uuid, db::Order> = db::insert_pending(&state.pool, &orders)
        .await
        .map_err(Error::from)?
        .into_iter()
        .map(|order| (order.id, order))
        .collect();
    let mut outbox = Outbox::new(&state.js);
    for delivery in unique(&batch, |order| order.order_id) {
        let Some(order) = stored.get(&delivery.payload.order_id) else {
            continue;
        };
        if order.state != OrderState::Pending.as_str() {
            settle(&state, &mut outbox, &delivery.span, order).await;
            continue;
        }
        let validate = ValidateUser {
            order_id: order.id,
            user_id: order.user_id,
        };
        let (validate_id, reserve_id) = (
            message_id("validate", order.id),
            message_id("reserve", order.id),
        );
        let span = &delivery.span;
        outbox
            .send(span, subject::USER_VALIDATE, &validate_id, &validate)
            .await;
        outbox
            .send(
                span,
                subject::PRODUCT_RESERVE,
                &reserve_id,
                &order.stock_request(),
            )
            .await;
    }
    Ok(outbox.stored().await.map_err(Error::from)?)
}

/// `user.evt.validated|rejected`, a batch at a time.
async fn user_verdicts(
    state: AppState,
    batch: Vec<Delivery<UserVerdict>>,
) -> Result<(), HandlerError> {
    let verdicts: Vec<(Uuid, bool)> = unique(&batch, |verdict| verdict.order_id)
        .map(|delivery| (delivery.payload.order_id, delivery.payload.valid))
        .collect();
    let recorded = db::record_user_verdicts(&state.pool, &verdicts)
        .await
        .map_err(Error::from)?;
    let spans = batch.iter().map(|d| (d.payload.order_id, &d.span));
    conclude(&state, recorded, spans.collect(), &HashMap::new()).await
}

/// `product.evt.reserved|rejected|released`, a batch at a time.
async fn stock_verdicts(
    state: AppState,
    batch: Vec<Delivery<StockVerdict>>,
) -> Result<(), HandlerError> {
    let mut released = Vec::new();
    let mut verdicts = Vec::new();
    let mut reserved = HashMap::new();
    for delivery in unique(&batch, |verdict| verdict.order_id) {
        let verdict = delivery.payload;
        match (verdict.outcome, verdict.reason) {
            (StockOutcome::Released, _) => released.push(verdict.order_id),
            (StockOutcome::Reserved, _) => {
                let request = StockRequest {
                    order_id: verdict.order_id,
                    product_id: verdict.product_id,
                    quantity: verdict.quantity,
                };
                reserved.insert(verdict.order_id, request);
                verdicts.push((verdict.order_id, "reserved"));
            }
            (StockOutcome::Rejected, Some(reason)) => {
                verdicts.push((verdict.order_id, reason.as_str()));
            }
            (StockOutcome::Rejected, None) => {
                return Err(HandlerError::bad_request("rejected without a reason"));
            }
        }
    }
    if !released.is_empty() {
        db::mark_released(&state.pool, &released)
            .await
            .map_err(Error::from)?;
    }
    let recorded = db::record_stock_verdicts(&state.pool, &verdicts)
        .await
        .map_err(Error::from)?;
    let spans = batch
        .iter()
        .filter(|d| d.payload.outcome != StockOutcome::Released)
        .map(|d| (d.payload.order_id, &d.span));
    conclude(&state, recorded, spans.collect(), &reserved).await
}

/// After a batch of verdicts was recorded: settle the orders they decided, and settle again
/// those whose verdict recorded nothing (a repeat, or one for an order already decided: the
/// first time round may have died between committing the decision and publishing it, and
/// JetStream drops the duplicate). Stock `reserved` for an order that was rejected meanwhile,
/// or that this service does not know, is given back.
async fn conclude(
    state: &AppState,
    recorded: Vec<db::Order>,
    spans: HashMap<Uuid, &tracing::Span>,
    reserved: &HashMap<Uuid, StockRequest>,
) -> Result<(), HandlerError> {
    let mut outbox = Outbox::new(&state.js);
    let mut settled = HashSet::new();
    for order in &recorded {
        settled.insert(order.id);
        if order.state != OrderState::Pending.as_str() {
            state.saga.decided(order);
        }
        if let Some(span) = spans.get(&order.id) {
            settle(state, &mut outbox, span, order).await;
        }
    }
    let again: Vec<Uuid> = spans
        .keys()
        .filter(|id| !settled.contains(id))
        .copied()
        .collect();
    if !again.is_empty() {
        let found: HashMap<Uuid, db::Order> = db::find_many(&state.pool, &again)
            .await
            .map_err(Error::from)?
            .into_iter()
            .map(|order| (order.id, order))
            .collect();
        for id in again {
            let Some(span) = spans.get(&id) else { continue };
            match found.get(&id) {
                Some(order) => {
                    if reserved.contains_key(&id) && order.state == OrderState::Rejected.as_str() {
                        release(&mut outbox, span, order.stock_request()).await;
                    }
                    settle(state, &mut outbox, span, order).await;
                }
                None => {
                    if let Some(request) = reserved.get(&id) {
                        tracing::warn!(order_id = %id, "stock reserved for an unknown order; releasing it");
                        release(&mut outbox, span, *request).await;
                    }
                }
            }
        }
    }
    Ok(outbox.stored().await.map_err(Error::from)?)
}

/// Sends what a decided order's end takes: its stock back if it was rejected holding some, its
/// outcome event, and word to the replica waiting for it. Nothing for a pending order.
async fn settle(state: &AppState, outbox: &mut Outbox, span: &tracing::Span, order: &db::Order) {
    let Some(outcome) = order.outcome() else {
        return;
    };
    if outcome.state == OrderState::Rejected && order.stock.as_deref() == Some("reserved") {
        release(outbox, span, order.stock_request()).await;
    }
    let subject = subject::order_outcome(outcome.state);
    outbox
        .send(span, subject, &message_id("outcome", order.id), &outcome)
        .await;
    if let Some(waiting) = &order.notify {
        notify(state, span, waiting, &outcome).await;
    }
}

/// Tells the replica that placed an order how it ended (core NATS: if nobody listens any more,
/// nobody waits either; a waiter that hears nothing looks the order up when its wait ends).
pub async fn notify(state: &AppState, span: &tracing::Span, subject: &str, outcome: &OrderOutcome) {
    let Ok(body) = serde_json::to_vec(outcome) else {
        return;
    };
    let mut headers = async_nats::HeaderMap::new();
    span.in_scope(|| kit::telemetry::inject(&mut headers));
    if let Err(error) = state
        .nats
        .publish_with_headers(subject.to_owned(), headers, body.into())
        .await
    {
        tracing::debug!(%error, subject, "could not tell the waiting replica an outcome");
    }
}

async fn release(outbox: &mut Outbox, span: &tracing::Span, request: StockRequest) {
    let id = message_id("release", request.order_id);
    outbox
        .send(span, subject::PRODUCT_RELEASE, &id, &request)
        .await;
}

/// The deliveries of `batch` with one per key (the first): a batch may hold a message and its
/// redelivery, which need doing once.
fn unique<T, K: std::hash::Hash + Eq>(
    batch: &[Delivery<T>],
    key: fn(&T) -> K,
) -> impl Iterator<Item = &Delivery<T>> {
    let mut seen = HashSet::new();
    batch
        .iter()
        .filter(move |delivery| seen.insert(key(&delivery.payload)))
}
