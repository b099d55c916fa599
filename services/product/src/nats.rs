//! The product service's NATS side: `product.cmd.create|update|delete`, `product.query.get`, and the
//! saga worker that reserves and releases stock (`product.cmd.reserve|release` on JetStream).

use kit::{
    jetstream::{Delivery, Worker},
    nats::{HandlerError, Handlers},
};
use shared::{
    product::{DeleteProduct, GetProduct, Product, ProductReply, UpdateProduct},
    saga::{RejectReason, StockOutcome, StockRequest, StockVerdict, message_id},
    stream, subject,
};

use uuid::Uuid;

use crate::{AppState, Error, db};

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
        move |delivery| stock(state.clone(), delivery),
    ))
}

/// `product.cmd.reserve` or `product.cmd.release`: act, then publish the verdict. The reply is
/// published after the transaction commits; a redelivery finds the recorded answer and repeats it.
async fn stock(state: AppState, delivery: Delivery<StockRequest>) -> Result<(), HandlerError> {
    let request = delivery.payload;
    let (outcome, reason, kind) = match delivery.subject.as_str() {
        subject::PRODUCT_RESERVE => {
            let (outcome, reason) = reserve(&state, &request).await?;
            (outcome, reason, "stock-verdict")
        }
        subject::PRODUCT_RELEASE => {
            let mut tx = state.pool.begin().await.map_err(Error::from)?;
            db::release_tombstone(&mut tx, &request)
                .await
                .map_err(Error::from)?;
            let released = db::release(&mut tx, request.order_id)
                .await
                .map_err(Error::from)?;
            tx.commit().await.map_err(Error::from)?;
            tracing::debug!(order_id = %request.order_id, released, "release");
            (StockOutcome::Released, None, "release-verdict")
        }
        other => {
            return Err(HandlerError::bad_request(format!(
                "unexpected subject {other}"
            )));
        }
    };
    let verdict = StockVerdict {
        order_id: request.order_id,
        product_id: request.product_id,
        quantity: request.quantity,
        outcome,
        reason,
    };
    let id = message_id(kind, request.order_id);
    kit::jetstream::publish(&state.js, subject::stock_verdict(outcome), &id, &verdict)
        .await
        .map_err(|error| HandlerError::unavailable(error.to_string()))
}

async fn reserve(
    state: &AppState,
    request: &StockRequest,
) -> Result<(StockOutcome, Option<RejectReason>), Error> {
    match db::reserve(&state.pool, request).await {
        Ok(Some(_)) => return Ok((StockOutcome::Reserved, None)),
        Ok(None) => {}
        // An earlier attempt for this order already answered; its answer stands.
        Err(error) if kit::db::violated_constraint(&error) == Some("reservations_pkey") => {}
        Err(error) => return Err(error.into()),
    }
    let recorded = match db::record_rejection(&state.pool, request).await? {
        Some(recorded) => recorded,
        None => db::reservation(&state.pool, request.order_id)
            .await?
            .ok_or(Error::NotFound)?,
    };
    Ok(answer(recorded))
}

fn answer((state, reason): db::Reservation) -> (StockOutcome, Option<RejectReason>) {
    match state.as_str() {
        "reserved" => (StockOutcome::Reserved, None),
        "released" => (StockOutcome::Released, None),
        _ => (
            StockOutcome::Rejected,
            reason.as_deref().and_then(RejectReason::parse),
        ),
    }
}

/// Operator reset: pending stock requests go, then every product and reservation.
pub async fn reset(state: AppState) -> anyhow::Result<()> {
    kit::admin::purge(&state.js, &[stream::PRODUCT_SAGA.name]).await?;
    Ok(db::delete_everything(&state.pool).await?)
}
