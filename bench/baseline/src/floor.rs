//! The architecture's floor (`NATS_URL` set): the HTTP handlers of writes and orders send each
//! request over NATS to this same process, which answers it as the plain baseline would; an
//! order goes through the smallest saga. What a write and an order cannot cost less than when
//! they travel as NATS commands with replies (bench/floor.sh).

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use sqlx::PgPool;

use crate::{Order, empty, failed, order_error, post_product, post_user};

/// `POST /user`, `/product` and `/order`, each forwarded as a NATS request to [`serve`].
pub fn routes(client: async_nats::Client) -> Router {
    let to = |subject: &'static str| {
        post(
            move |State(client): State<async_nats::Client>, bytes: Bytes| async move {
                forward(&client, subject, bytes).await
            },
        )
    };
    Router::new()
        .route("/user", to("baseline.user"))
        .route("/product", to("baseline.product"))
        .route("/order", to("baseline.order"))
        .with_state(client)
}

/// Serves `baseline.*` (queue group `baseline`): the writes and orders the HTTP handlers of
/// [`routes`] send, and the saga's steps, each request in a task of its own.
pub async fn serve(client: async_nats::Client, db: PgPool) -> anyhow::Result<()> {
    use futures::StreamExt;
    let mut requests = client
        .queue_subscribe("baseline.*", "baseline".to_owned())
        .await?;
    while let Some(request) = requests.next().await {
        let (client, db) = (client.clone(), db.clone());
        tokio::spawn(async move {
            let Some(reply) = request.reply else { return };
            let body = request.payload.clone();
            let response = match request.subject.as_str() {
                "baseline.user" => post_user(State(db), body).await,
                "baseline.product" => post_product(State(db), body).await,
                "baseline.order" => saga(&client, &db, body).await,
                "baseline.validate" => step(validate(&db, &body).await),
                _ => step(reserve(&db, &body).await),
            };
            let status = response.status().as_u16();
            let Ok(bytes) = axum::body::to_bytes(response.into_body(), usize::MAX).await else {
                return;
            };
            let mut payload = status.to_be_bytes().to_vec();
            payload.extend_from_slice(&bytes);
            let _ = client.publish(reply, payload.into()).await;
        });
    }
    Ok(())
}

async fn forward(client: &async_nats::Client, subject: &'static str, bytes: Bytes) -> Response {
    match client.request(subject, bytes).await {
        Ok(reply) if reply.payload.len() >= 2 => {
            let status = u16::from_be_bytes([reply.payload[0], reply.payload[1]]);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                status,
                [("content-type", "application/json")],
                reply.payload.slice(2..),
            )
                .into_response()
        }
        _ => empty(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// A saga step's answer: 200 with `"ok"` or `"no"`.
fn step(outcome: sqlx::Result<&'static str>) -> Response {
    match outcome {
        Ok(answer) => answer.into_response(),
        Err(error) => failed(error),
    }
}

fn ints(body: &[u8]) -> Vec<i32> {
    std::str::from_utf8(body)
        .unwrap_or_default()
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Saga step: does the user exist?
async fn validate(db: &PgPool, body: &[u8]) -> sqlx::Result<&'static str> {
    let found = sqlx::query("select 1 from users where id = $1")
        .bind(ints(body).first().copied().unwrap_or_default())
        .fetch_optional(db)
        .await?;
    Ok(if found.is_some() { "ok" } else { "no" })
}

/// Saga step: take `quantity` of the product's stock (`product,quantity`), or put it back
/// (a negative quantity).
async fn reserve(db: &PgPool, body: &[u8]) -> sqlx::Result<&'static str> {
    let [product_id, quantity] = ints(body)[..] else {
        return Ok("no");
    };
    let taken = sqlx::query(
        "update products set quantity = quantity - $2 where id = $1 and quantity >= $2 returning quantity",
    )
    .bind(product_id)
    .bind(quantity)
    .fetch_optional(db)
    .await?;
    Ok(if taken.is_some() { "ok" } else { "no" })
}

async fn ask(client: &async_nats::Client, subject: &'static str, body: String) -> Option<bool> {
    let reply = client.request(subject, body.into()).await.ok()?;
    Some(reply.payload.get(2..) == Some(b"ok".as_slice()))
}

/// The order as the smallest saga would place it: stored pending (a commit), the user checked
/// and the stock taken by two NATS requests at once (a commit), then confirmed and added to the
/// purchase history, or the stock put back (a commit).
async fn saga(client: &async_nats::Client, db: &PgPool, bytes: Bytes) -> Response {
    let Some(order) = Order::parse(&bytes) else {
        return order_error(StatusCode::BAD_REQUEST, "Invalid Request");
    };
    let Order(user_id, product_id, quantity) = order;
    let id = uuid::Uuid::new_v4();
    let pending = sqlx::query("insert into pending_orders values ($1, $2, $3, $4, 'pending')")
        .bind(id)
        .bind(user_id)
        .bind(product_id)
        .bind(quantity)
        .execute(db)
        .await;
    if let Err(error) = pending {
        return failed(error);
    }
    let (user, stock) = tokio::join!(
        ask(client, "baseline.validate", user_id.to_string()),
        ask(
            client,
            "baseline.reserve",
            format!("{product_id},{quantity}")
        ),
    );
    let confirmed = user == Some(true) && stock == Some(true);
    if !confirmed && stock == Some(true) {
        ask(
            client,
            "baseline.reserve",
            format!("{product_id},{}", -quantity),
        )
        .await;
    }
    let decided = async {
        let mut tx = db.begin().await?;
        sqlx::query("update pending_orders set state = $2 where id = $1")
            .bind(id)
            .bind(if confirmed { "confirmed" } else { "rejected" })
            .execute(&mut *tx)
            .await?;
        if confirmed {
            order.store(&mut tx, id).await?;
        }
        tx.commit().await
    };
    if let Err(error) = decided.await {
        return failed(error);
    }
    match (user, stock) {
        (Some(true), Some(true)) => order.placed(id),
        (Some(false), _) => order_error(StatusCode::NOT_FOUND, "Invalid Request"),
        (_, Some(false)) => order_error(StatusCode::CONFLICT, "Exceeded quantity limit"),
        _ => empty(StatusCode::SERVICE_UNAVAILABLE),
    }
}
