//! The stock saga on JetStream: `product.cmd.reserve` and `product.cmd.release`, a batch at a
//! time, decided against locked stock in one transaction, each answered with its verdict.

use kit::{
    jetstream::{Delivery, Outbox, Worker},
    nats::{HandlerError, Rank},
};
use shared::{
    saga::{RejectReason, StockOutcome, StockRequest, StockVerdict, message_id},
    stream, subject,
};
use uuid::Uuid;

use crate::{AppState, Error, db, stock};

/// Starts the `product-stock` saga worker, pulling at `rank`: reserves and releases stock for
/// orders. Streams it creates get `replicas` copies (`STREAM_REPLICAS`).
pub async fn start(state: AppState, replicas: usize, rank: &Rank) -> anyhow::Result<Worker> {
    kit::jetstream::ensure_stream(&state.js, &stream::PRODUCT_SAGA, replicas).await?;
    let consumer = kit::jetstream::consumer(&state.js, &stream::PRODUCT_STOCK, replicas).await?;
    let js = state.js.clone();
    Ok(Worker::spawn(
        &js,
        consumer,
        &state.metrics.clone(),
        rank,
        move |batch| stock(state.clone(), batch),
    ))
}

/// A batch of `product.cmd.reserve` and `product.cmd.release`: decided in one transaction, in
/// the order they came, as if one by one (see [`stock::Ledger`]), then each verdict published.
/// A redelivery finds its order's recorded answer and repeats it.
async fn stock(state: AppState, batch: Vec<Delivery<StockRequest>>) -> Result<(), HandlerError> {
    for delivery in &batch {
        if ![subject::PRODUCT_RESERVE, subject::PRODUCT_RELEASE]
            .contains(&delivery.subject.as_str())
        {
            return Err(HandlerError::bad_request(format!(
                "unexpected subject {}",
                delivery.subject
            )));
        }
        if delivery.payload.quantity < 1 {
            return Err(HandlerError::bad_request("quantity must be at least 1"));
        }
    }
    // A concurrent batch may answer an order of an unknown product first (such orders lock
    // nothing): this one then rolls back and decides again, finding that answer stored.
    let verdicts = loop {
        if let Some(verdicts) = decide(&state, &batch).await.map_err(Error::from)? {
            break verdicts;
        }
    };
    let mut outbox = Outbox::new(&state.js);
    for (delivery, (outcome, reason)) in batch.iter().zip(verdicts) {
        let request = delivery.payload;
        let kind = match delivery.subject.as_str() {
            subject::PRODUCT_RELEASE => "release-verdict",
            _ => "stock-verdict",
        };
        let verdict = StockVerdict {
            order_id: request.order_id,
            product_id: request.product_id,
            quantity: request.quantity,
            outcome,
            reason,
        };
        let id = message_id(kind, request.order_id);
        let subject = subject::stock_verdict(outcome);
        outbox.send(&delivery.span, subject, &id, &verdict).await;
    }
    outbox
        .stored()
        .await
        .map_err(|error| HandlerError::unavailable(error.to_string()))
}

/// The batch's answers, committed; `None` when a concurrent batch stored an answer for one of
/// its orders first (nothing is committed then). The products are locked first: a concurrent
/// batch with a request for the same order (always of the same product) waits, then sees this
/// one's rows.
async fn decide(
    state: &AppState,
    batch: &[Delivery<StockRequest>],
) -> Result<Option<Vec<(StockOutcome, Option<RejectReason>)>>, sqlx::Error> {
    let mut products: Vec<i32> = batch.iter().map(|d| d.payload.product_id).collect();
    products.sort_unstable();
    products.dedup();
    let orders: Vec<Uuid> = batch.iter().map(|d| d.payload.order_id).collect();
    let mut lease = state.pool.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *lease).await?;
    let locked = db::lock_stock(&mut tx, &products).await?;
    let stored = db::reservations(&mut tx, &orders).await?;
    let mut ledger = stock::Ledger::new(locked, stored);
    let verdicts: Vec<_> = batch
        .iter()
        .map(|delivery| match delivery.subject.as_str() {
            subject::PRODUCT_RELEASE => (ledger.release(&delivery.payload), None),
            _ => ledger.reserve(&delivery.payload),
        })
        .collect();
    let (created, released, stock) = (ledger.created(), ledger.released(), ledger.changed_stock());
    if created.is_empty() && released.is_empty() && stock.is_empty() {
        // Repeats only: every answer was stored already.
        tx.commit().await?;
        lease.release();
        return Ok(Some(verdicts));
    }
    let inserted = db::write_batch(&mut tx, &created, released, &stock).await?;
    if inserted.len() < created.len() {
        return Ok(None);
    }
    tx.commit().await?;
    lease.release();
    tracing::debug!(requests = batch.len(), "stock batch committed");
    Ok(Some(verdicts))
}
