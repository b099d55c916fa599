//! The order service's NATS side besides the saga: its queries (`order.query.*`), and the
//! outcomes this replica hears of the orders it placed, handed to the requests waiting for them.

use std::{collections::HashMap, sync::Mutex};

use futures::StreamExt;
use kit::nats::{HandlerError, Handlers};
use shared::{
    order::{GetOrder, GetPurchased, OrderReply, Purchased},
    saga::OrderOutcome,
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

/// Subscribes to this replica's outcome subject (`order.outcome.<replica>`, named in the orders
/// it places) and wakes the request waiting for each outcome.
pub async fn listen_outcomes(state: &AppState) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut outcomes = state.nats.subscribe(state.outcomes.clone()).await?;
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
