//! The product service's NATS side: `product.cmd.create|update|delete`, `product.query.get`, and the
//! saga worker that reserves and releases stock (`product.cmd.reserve|release` on JetStream).

use kit::{
    jetstream::{Delivery, Outbox, Worker},
    nats::{HandlerError, Handlers},
};
use shared::{
    product::{DeleteProduct, GetProduct, Product, ProductReply, UpdateProduct},
    saga::{RejectReason, StockOutcome, StockRequest, StockVerdict, message_id},
    stream, subject,
};

use uuid::Uuid;

use crate::{AppState, Error, db, stock};

/// Registers the `product` service and its endpoints.
pub async fn start(state: AppState) -> anyhow::Result<Handlers> {
    let mut handlers = Handlers::start(
        &state.nats,
        "product",
        "Products and stock: create, update, delete, look up",
        state.database.clone(),
        state.metrics.clone(),
    )
    .await?;
    let s = state.clone();
    handlers
        .add(
            "create",
            subject::PRODUCT_CREATE,
            "Create a product (id, name, description, price, quantity)",
            move |cmd, id| create(s.clone(), cmd, id),
        )
        .await?;
    let s = state.clone();
    handlers
        .add(
            "update",
            subject::PRODUCT_UPDATE,
            "Change some fields of a product",
            move |cmd, id| update(s.clone(), cmd, id),
        )
        .await?;
    let s = state.clone();
    handlers
        .add(
            "delete",
            subject::PRODUCT_DELETE,
            "Delete a product whose fields match",
            move |cmd, id| delete(s.clone(), cmd, id),
        )
        .await?;
    handlers
        .add(
            "get",
            subject::PRODUCT_GET,
            "One product by id",
            move |query, _| get(state.clone(), query),
        )
        .await?;
    Ok(handlers)
}

fn found(product: Option<Product>) -> ProductReply {
    product.map_or(ProductReply::NotFound, |product| ProductReply::Ok {
        product,
    })
}

/// What a command that did nothing answers: a repeat answers what it answered the first time.
async fn earlier(state: &AppState, command_id: Uuid) -> Result<Option<String>, Error> {
    Ok(db::outcome(&state.pool, command_id).await?)
}

async fn create(
    state: AppState,
    new: Product,
    command_id: Uuid,
) -> Result<ProductReply, HandlerError> {
    if let Some(product) = db::insert(&state.pool, &new, command_id)
        .await
        .map_err(Error::from)?
    {
        return Ok(ProductReply::Ok { product });
    }
    Ok(match earlier(&state, command_id).await?.as_deref() {
        // A repeat of a create that succeeded: it stored exactly these fields.
        Some("ok") => ProductReply::Ok { product: new },
        _ => ProductReply::Conflict,
    })
}

async fn update(
    state: AppState,
    change: UpdateProduct,
    command_id: Uuid,
) -> Result<ProductReply, HandlerError> {
    if let Some(product) = db::update(&state.pool, &change, command_id)
        .await
        .map_err(Error::from)?
    {
        return Ok(ProductReply::Ok { product });
    }
    Ok(match earlier(&state, command_id).await?.as_deref() {
        Some("ok") => found(
            db::find(&state.pool, change.id)
                .await
                .map_err(Error::from)?,
        ),
        _ => ProductReply::NotFound,
    })
}

async fn delete(
    state: AppState,
    old: DeleteProduct,
    command_id: Uuid,
) -> Result<ProductReply, HandlerError> {
    if db::delete_matching(&state.pool, &old, command_id)
        .await
        .map_err(Error::from)?
    {
        return Ok(ProductReply::Deleted);
    }
    Ok(match earlier(&state, command_id).await?.as_deref() {
        Some("deleted") => ProductReply::Deleted,
        _ => ProductReply::NotFound,
    })
}

async fn get(state: AppState, query: GetProduct) -> Result<ProductReply, HandlerError> {
    Ok(found(
        db::find(&state.pool, query.id).await.map_err(Error::from)?,
    ))
}

/// Starts the `product-stock` saga worker: reserves and releases stock for orders.
pub async fn start_saga(state: AppState) -> anyhow::Result<Worker> {
    kit::jetstream::ensure_stream(&state.js, &stream::PRODUCT_SAGA).await?;
    let consumer = kit::jetstream::consumer(&state.js, &stream::PRODUCT_STOCK).await?;
    let js = state.js.clone();
    Ok(Worker::spawn(
        &js,
        consumer,
        &state.metrics.clone(),
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
    let mut tx = state.pool.begin().await?;
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
        return Ok(Some(verdicts));
    }
    let inserted = db::write_batch(&mut tx, &created, released, &stock).await?;
    if inserted.len() < created.len() {
        return Ok(None);
    }
    tx.commit().await?;
    tracing::debug!(requests = batch.len(), "stock batch committed");
    Ok(Some(verdicts))
}

/// Operator reset: pending stock requests go, then every product and reservation.
pub async fn reset(state: AppState) -> anyhow::Result<()> {
    kit::admin::purge(&state.js, &[stream::PRODUCT_SAGA.name]).await?;
    Ok(db::delete_everything(&state.pool).await?)
}
