//! The product service's NATS side: `product.cmd.create|update|delete` and `product.query.get`
//! (the stock saga is in `saga`).

use std::collections::{HashMap, HashSet};

use kit::nats::{Command, HandlerError, Handlers};
use shared::{
    product::{DeleteProduct, GetProduct, Product, ProductReply, UpdateProduct},
    stream, subject,
};
use uuid::Uuid;

use crate::{AppState, Error, db};

/// Registers the `product` service and its endpoints. Commands are handled in batches of those
/// that arrive together, each batch committed at once.
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
        .add_batched(
            "create",
            subject::PRODUCT_CREATE,
            "Create a product (id, name, description, price, quantity)",
            move |batch| create(s.clone(), batch),
        )
        .await?;
    let s = state.clone();
    handlers
        .add_batched(
            "update",
            subject::PRODUCT_UPDATE,
            "Change some fields of a product",
            move |batch| update(s.clone(), batch),
        )
        .await?;
    let s = state.clone();
    handlers
        .add_batched(
            "delete",
            subject::PRODUCT_DELETE,
            "Delete a product whose fields match",
            move |batch| delete(s.clone(), batch),
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

/// What the commands of `commands` not in `done` answered when they first ran, by command id:
/// a command that did nothing is a repeat (or lost a race to its own first copy), and answers
/// what that first run answered.
async fn earlier<T>(
    state: &AppState,
    commands: &[Command<T>],
    done: &HashSet<Uuid>,
) -> Result<HashMap<Uuid, String>, Error> {
    let others: Vec<Uuid> = commands
        .iter()
        .map(|command| command.id)
        .filter(|id| !done.contains(id))
        .collect();
    if others.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(db::outcomes(&state.pool, &others)
        .await?
        .into_iter()
        .collect())
}

async fn create(
    state: AppState,
    batch: Vec<Command<Product>>,
) -> Vec<Result<ProductReply, HandlerError>> {
    kit::nats::answer_each(
        batch,
        |product| product.id,
        |commands| create_each(state.clone(), commands),
    )
    .await
}

async fn create_each(
    state: AppState,
    commands: Vec<Command<Product>>,
) -> Result<Vec<ProductReply>, HandlerError> {
    let rows: Vec<(&Product, Uuid)> = commands.iter().map(|c| (&c.payload, c.id)).collect();
    let created: HashSet<Uuid> = db::insert(&state.pool, &rows)
        .await
        .map_err(Error::from)?
        .into_iter()
        .collect();
    let earlier = earlier(&state, &commands, &created).await?;
    Ok(commands
        .into_iter()
        .map(|command| {
            // A repeat of a create that succeeded: it stored exactly these fields.
            let ok = created.contains(&command.id)
                || earlier.get(&command.id).is_some_and(|o| o == "ok");
            if ok {
                ProductReply::Ok {
                    product: command.payload,
                }
            } else {
                ProductReply::Conflict
            }
        })
        .collect())
}

async fn update(
    state: AppState,
    batch: Vec<Command<UpdateProduct>>,
) -> Vec<Result<ProductReply, HandlerError>> {
    kit::nats::answer_each(
        batch,
        |change| change.id,
        |commands| update_each(state.clone(), commands),
    )
    .await
}

async fn update_each(
    state: AppState,
    commands: Vec<Command<UpdateProduct>>,
) -> Result<Vec<ProductReply>, HandlerError> {
    let rows: Vec<(&UpdateProduct, Uuid)> = commands.iter().map(|c| (&c.payload, c.id)).collect();
    let mut updated: HashMap<Uuid, Product> = db::update(&state.pool, &rows)
        .await
        .map_err(Error::from)?
        .into_iter()
        .collect();
    let earlier = earlier(&state, &commands, &updated.keys().copied().collect()).await?;
    // A repeat of an update that succeeded answers the product as it stands now.
    let repeated =
        |command: &Command<UpdateProduct>| earlier.get(&command.id).is_some_and(|o| o == "ok");
    let again: Vec<i32> = commands
        .iter()
        .filter(|c| repeated(c))
        .map(|c| c.payload.id)
        .collect();
    let mut current: HashMap<i32, Product> = HashMap::new();
    if !again.is_empty() {
        let products = db::find_many(&state.pool, &again)
            .await
            .map_err(Error::from)?;
        current.extend(products.into_iter().map(|product| (product.id, product)));
    }
    Ok(commands
        .iter()
        .map(|command| match updated.remove(&command.id) {
            Some(product) => ProductReply::Ok { product },
            None if repeated(command) => found(current.get(&command.payload.id).cloned()),
            None => ProductReply::NotFound,
        })
        .collect())
}

async fn delete(
    state: AppState,
    batch: Vec<Command<DeleteProduct>>,
) -> Vec<Result<ProductReply, HandlerError>> {
    kit::nats::answer_each(
        batch,
        |old| old.id,
        |commands| delete_each(state.clone(), commands),
    )
    .await
}

async fn delete_each(
    state: AppState,
    commands: Vec<Command<DeleteProduct>>,
) -> Result<Vec<ProductReply>, HandlerError> {
    let rows: Vec<(&DeleteProduct, Uuid)> = commands.iter().map(|c| (&c.payload, c.id)).collect();
    let deleted: HashSet<Uuid> = db::delete_matching(&state.pool, &rows)
        .await
        .map_err(Error::from)?
        .into_iter()
        .collect();
    let earlier = earlier(&state, &commands, &deleted).await?;
    Ok(commands
        .iter()
        .map(|command| {
            let gone = deleted.contains(&command.id)
                || earlier.get(&command.id).is_some_and(|o| o == "deleted");
            if gone {
                ProductReply::Deleted
            } else {
                ProductReply::NotFound
            }
        })
        .collect())
}

async fn get(state: AppState, query: GetProduct) -> Result<ProductReply, HandlerError> {
    Ok(found(
        db::find(&state.pool, query.id).await.map_err(Error::from)?,
    ))
}

/// Operator reset: pending stock requests go, then every product and reservation.
pub async fn reset(state: AppState) -> anyhow::Result<()> {
    kit::admin::purge(&state.js, &[stream::PRODUCT_SAGA.name]).await?;
    Ok(db::delete_everything(&state.pool).await?)
}
