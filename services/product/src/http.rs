//! The `/product` routes: writes become commands on NATS, reads come from `product_db`.

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State, rejection::PathRejection},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use kit::{body::Rejection, health::Dependencies};
use serde_json::json;
use shared::{
    product::{DeleteProduct, Product, ProductReply, UpdateProduct},
    subject,
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
        .route("/product", post(command))
        .route("/product/{id}", get(read))
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

/// The record shape of the contract is the stored shape; `price` serialises as a float (`157.0`).
fn record(product: Product) -> Response {
    Json(product).into_response()
}

async fn read(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Error> {
    let Path(raw) = id.map_err(|error| Rejection::Invalid(error.to_string()))?;
    let id = kit::body::path_id(&raw)?;
    state.database.check()?;
    let product = db::find(&state.pool, id).await?.ok_or(Error::NotFound)?;
    Ok(record(product))
}

/// `POST /product`: the whole body is validated first (400 wins), then sent as a command.
async fn command(State(state): State<AppState>, body: Body) -> Result<Response, Error> {
    let fields = kit::body::read_object(body, state.limits).await?;
    let nats = &state.nats;
    let reply: ProductReply = match fields.command()? {
        "create" => {
            let product = Product {
                id: fields.id("id")?,
                name: fields.text("name")?,
                description: fields.text("description")?,
                price: fields.price("price")?,
                quantity: fields.int("quantity", 0)?,
            };
            kit::nats::request(nats, subject::PRODUCT_CREATE, &product, state.timing).await?
        }
        "update" => {
            let change = UpdateProduct {
                id: fields.id("id")?,
                name: fields.opt_text("name")?,
                description: fields.opt_text("description")?,
                price: fields.opt_price("price")?,
                quantity: fields.opt_int("quantity", 0)?,
            };
            kit::nats::request(nats, subject::PRODUCT_UPDATE, &change, state.timing).await?
        }
        "delete" => {
            // Description is not required, but when given it must still be a valid one.
            fields.opt_text("description")?;
            let old = DeleteProduct {
                id: fields.id("id")?,
                name: fields.text("name")?,
                price: fields.price("price")?,
                quantity: fields.int("quantity", 0)?,
            };
            kit::nats::request(nats, subject::PRODUCT_DELETE, &old, state.timing).await?
        }
        other => return Err(Rejection::Invalid(format!("unknown command {other:?}")).into()),
    };
    match reply {
        ProductReply::Ok { product } => Ok(record(product)),
        ProductReply::Deleted => Ok(Json(json!({})).into_response()),
        ProductReply::NotFound => Err(Error::NotFound),
        ProductReply::Conflict => Err(Error::Conflict),
    }
}
