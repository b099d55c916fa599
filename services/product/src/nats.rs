//! The product service's NATS endpoints: `product.cmd.create|update|delete` and `product.query.get`.

use kit::nats::{HandlerError, Handlers};
use shared::{
    product::{DeleteProduct, GetProduct, Product, ProductReply, UpdateProduct},
    subject,
};

use crate::{AppState, Error, db};

/// Registers the `product` service and its endpoints.
pub async fn start(state: AppState) -> anyhow::Result<Handlers> {
    let mut handlers = Handlers::start(
        &state.nats,
        "product",
        "Products and stock: create, update, delete, look up",
    )
    .await?;
    let s = state.clone();
    handlers
        .add("create", subject::PRODUCT_CREATE, move |cmd| {
            create(s.clone(), cmd)
        })
        .await?;
    let s = state.clone();
    handlers
        .add("update", subject::PRODUCT_UPDATE, move |cmd| {
            update(s.clone(), cmd)
        })
        .await?;
    let s = state.clone();
    handlers
        .add("delete", subject::PRODUCT_DELETE, move |cmd| {
            delete(s.clone(), cmd)
        })
        .await?;
    handlers
        .add("get", subject::PRODUCT_GET, move |query| {
            get(state.clone(), query)
        })
        .await?;
    Ok(handlers)
}

fn found(product: Option<Product>) -> ProductReply {
    product.map_or(ProductReply::NotFound, |product| ProductReply::Ok {
        product,
    })
}

async fn create(state: AppState, new: Product) -> Result<ProductReply, HandlerError> {
    let stored = db::insert(&state.pool, &new).await.map_err(Error::from)?;
    Ok(
        stored.map_or(ProductReply::Conflict, |product| ProductReply::Ok {
            product,
        }),
    )
}

async fn update(state: AppState, change: UpdateProduct) -> Result<ProductReply, HandlerError> {
    Ok(found(
        db::update(&state.pool, &change)
            .await
            .map_err(Error::from)?,
    ))
}

async fn delete(state: AppState, old: DeleteProduct) -> Result<ProductReply, HandlerError> {
    let deleted = db::delete_matching(&state.pool, &old)
        .await
        .map_err(Error::from)?;
    Ok(if deleted {
        ProductReply::Deleted
    } else {
        ProductReply::NotFound
    })
}

async fn get(state: AppState, query: GetProduct) -> Result<ProductReply, HandlerError> {
    Ok(found(
        db::find(&state.pool, query.id).await.map_err(Error::from)?,
    ))
}
