//! The baseline: the contract's operations done in one process straight on PostgreSQL, one
//! statement per write and one transaction per order, with no Nginx, no NATS and no saga. It
//! is what the performance targets are ratios of (bench/README.md): it costs what the work
//! itself costs on this machine, so the ratio says what the architecture costs.
//!
//! With `NATS_URL` set it is instead the architecture's floor (bench/floor.sh): each write goes
//! from its HTTP handler to this same process as one NATS request, and each order is placed as
//! the smallest saga (stored, user and stock asked at once over NATS, decided), nothing else.
//!
//! `DATABASE_URL=postgres://... PORT=9090 POOL=8 [NATS_URL=nats://...] baseline`

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row, postgres::PgPoolOptions};

mod floor;

const SCHEMA: [&str; 5] = [
    "create table if not exists users (id int primary key, username text not null, email text not null, password text not null)",
    "create table if not exists products (id int primary key, name text not null, description text not null, price double precision not null, quantity int not null check (quantity >= 0))",
    "create table if not exists orders (id uuid primary key, user_id int not null, product_id int not null, quantity int not null)",
    "create index if not exists orders_by_user on orders (user_id)",
    "create table if not exists pending_orders (id uuid primary key, user_id int not null, product_id int not null, quantity int not null, state text not null)",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url =
        std::env::var("DATABASE_URL").map_err(|_| anyhow::anyhow!("DATABASE_URL is not set"))?;
    let pool_size = std::env::var("POOL")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(8);
    let port = std::env::var("PORT").unwrap_or_else(|_| "9090".into());
    let db = PgPoolOptions::new()
        .max_connections(pool_size)
        .connect(&url)
        .await?;
    for statement in SCHEMA {
        sqlx::query(statement).execute(&db).await?;
    }
    let writes = match std::env::var("NATS_URL") {
        Ok(url) => {
            let client = async_nats::connect(url).await?;
            tokio::spawn(floor::serve(client.clone(), db.clone()));
            floor::routes(client)
        }
        Err(_) => Router::new()
            .route("/user", post(post_user))
            .route("/product", post(post_product))
            .route("/order", post(place_order))
            .with_state(db.clone()),
    };
    let app = Router::new()
        .route("/user/{id}", get(get_user))
        .route("/product/{id}", get(get_product))
        .route("/user/purchased/{id}", get(purchased))
        .route("/admin/reset", post(reset))
        .with_state(db)
        .merge(writes);
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// `POST /admin/reset`: empties every table, as the stack's reset does, so that the stress tool
/// (which resets before each run) measures the baseline the same way as the stack. No token: the
/// baseline listens on 127.0.0.1 only and holds nothing but benchmark data.
async fn reset(State(db): State<PgPool>) -> Response {
    match sqlx::query("truncate users, products, orders, pending_orders")
        .execute(&db)
        .await
    {
        Ok(_) => empty(StatusCode::OK),
        Err(error) => failed(error),
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn empty(status: StatusCode) -> Response {
    answer(status, json!({}))
}

fn order_error(status: StatusCode, text: &str) -> Response {
    answer(status, json!({"status": text}))
}

fn failed(error: sqlx::Error) -> Response {
    eprintln!("database: {error}");
    empty(StatusCode::INTERNAL_SERVER_ERROR)
}

/// What a body says, by the contract's rules (integers in range, non-empty strings).
struct Body(Value);

impl Body {
    fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Value>(bytes)
            .ok()
            .filter(Value::is_object)
            .map(Self)
    }

    fn int(&self, key: &str) -> Option<i32> {
        self.0
            .get(key)?
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.as_str().filter(|text| !text.is_empty())
    }

    fn number(&self, key: &str) -> Option<f64> {
        self.0.get(key)?.as_f64()
    }

    fn command(&self) -> Option<&str> {
        self.0.get("command")?.as_str()
    }
}

fn hash(password: &str) -> String {
    Sha256::digest(password.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect()
}

fn user(id: i32, row: &sqlx::postgres::PgRow) -> Value {
    json!({"id": id, "username": row.get::<String, _>(0), "email": row.get::<String, _>(1), "password": row.get::<String, _>(2)})
}

fn product(row: &sqlx::postgres::PgRow) -> Value {
    json!({
        "id": row.get::<i32, _>(0), "name": row.get::<String, _>(1), "description": row.get::<String, _>(2),
        "price": row.get::<f64, _>(3), "quantity": row.get::<i32, _>(4),
    })
}

async fn get_user(State(db): State<PgPool>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i32>() else {
        return empty(StatusCode::BAD_REQUEST);
    };
    match sqlx::query("select username, email, password from users where id = $1")
        .bind(id)
        .fetch_optional(&db)
        .await
    {
        Ok(Some(row)) => answer(StatusCode::OK, user(id, &row)),
        Ok(None) => empty(StatusCode::NOT_FOUND),
        Err(error) => failed(error),
    }
}

async fn post_user(State(db): State<PgPool>, bytes: Bytes) -> Response {
    let Some(body) = Body::parse(&bytes) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let Some(id) = body.int("id") else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let fields = (
        body.text("username"),
        body.text("email"),
        body.text("password"),
    );
    match (body.command(), fields) {
        (Some("create"), (Some(username), Some(email), Some(password))) => {
            let password = hash(password);
            let inserted = sqlx::query(
                "insert into users (id, username, email, password) values ($1, $2, $3, $4) on conflict do nothing",
            )
            .bind(id)
            .bind(username)
            .bind(email)
            .bind(&password)
            .execute(&db)
            .await;
            match inserted {
                Ok(done) if done.rows_affected() == 1 => answer(
                    StatusCode::OK,
                    json!({"id": id, "username": username, "email": email, "password": password}),
                ),
                Ok(_) => empty(StatusCode::CONFLICT),
                Err(error) => failed(error),
            }
        }
        (Some("update"), (username, email, password)) => {
            let updated = sqlx::query(
                "update users set username = coalesce($2, username), email = coalesce($3, email),
                        password = coalesce($4, password)
                 where id = $1 returning username, email, password",
            )
            .bind(id)
            .bind(username)
            .bind(email)
            .bind(password.map(hash))
            .fetch_optional(&db)
            .await;
            match updated {
                Ok(Some(row)) => answer(StatusCode::OK, user(id, &row)),
                Ok(None) => empty(StatusCode::NOT_FOUND),
                Err(error) => failed(error),
            }
        }
        (Some("delete"), (Some(username), Some(email), Some(password))) => {
            let deleted = sqlx::query(
                "delete from users where id = $1 and username = $2 and email = $3 and password = $4",
            )
            .bind(id)
            .bind(username)
            .bind(email)
            .bind(hash(password))
            .execute(&db)
            .await;
            match deleted {
                Ok(done) if done.rows_affected() == 1 => empty(StatusCode::OK),
                Ok(_) => empty(StatusCode::NOT_FOUND),
                Err(error) => failed(error),
            }
        }
        _ => empty(StatusCode::BAD_REQUEST),
    }
}

async fn get_product(State(db): State<PgPool>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i32>() else {
        return empty(StatusCode::BAD_REQUEST);
    };
    match sqlx::query("select id, name, description, price, quantity from products where id = $1")
        .bind(id)
        .fetch_optional(&db)
        .await
    {
        Ok(Some(row)) => answer(StatusCode::OK, product(&row)),
        Ok(None) => empty(StatusCode::NOT_FOUND),
        Err(error) => failed(error),
    }
}

async fn post_product(State(db): State<PgPool>, bytes: Bytes) -> Response {
    let Some(body) = Body::parse(&bytes) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let Some(id) = body.int("id") else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let (name, description) = (body.text("name"), body.text("description"));
    let (price, quantity) = (body.number("price"), body.int("quantity"));
    let row = match (body.command(), name, description, price, quantity) {
        (Some("create"), Some(name), Some(description), Some(price), Some(quantity)) => {
            sqlx::query(
                "insert into products values ($1, $2, $3, $4, $5) on conflict do nothing
                 returning id, name, description, price, quantity",
            )
            .bind(id)
            .bind(name)
            .bind(description)
            .bind(price)
            .bind(quantity)
            .fetch_optional(&db)
            .await
            .map(|row| (row, StatusCode::CONFLICT))
        }
        (Some("update"), ..) => sqlx::query(
            "update products set name = coalesce($2, name), description = coalesce($3, description),
                    price = coalesce($4, price), quantity = coalesce($5, quantity)
             where id = $1 returning id, name, description, price, quantity",
        )
        .bind(id)
        .bind(name)
        .bind(description)
        .bind(price)
        .bind(quantity)
        .fetch_optional(&db)
        .await
        .map(|row| (row, StatusCode::NOT_FOUND)),
        (Some("delete"), Some(name), _, Some(price), Some(quantity)) => {
            let deleted = sqlx::query(
                "delete from products where id = $1 and name = $2 and price = $3 and quantity = $4",
            )
            .bind(id)
            .bind(name)
            .bind(price)
            .bind(quantity)
            .execute(&db)
            .await;
            return match deleted {
                Ok(done) if done.rows_affected() == 1 => empty(StatusCode::OK),
                Ok(_) => empty(StatusCode::NOT_FOUND),
                Err(error) => failed(error),
            };
        }
        _ => return empty(StatusCode::BAD_REQUEST),
    };
    match row {
        Ok((Some(row), _)) => answer(StatusCode::OK, product(&row)),
        Ok((None, otherwise)) => empty(otherwise),
        Err(error) => failed(error),
    }
}

/// What an order says, by the contract's rules: (user, product, quantity).
#[derive(Clone, Copy)]
struct Order(i32, i32, i32);

impl Order {
    /// The order `bytes` ask for, if they are a valid one (otherwise 400).
    fn parse(bytes: &[u8]) -> Option<Self> {
        let body = Body::parse(bytes).filter(|b| b.command() == Some("place order"))?;
        match (
            body.int("user_id"),
            body.int("product_id"),
            body.int("quantity"),
        ) {
            (Some(user), Some(product), Some(quantity)) if quantity >= 1 => {
                Some(Self(user, product, quantity))
            }
            _ => None,
        }
    }

    /// Adds the order, placed as `id`, to the purchase history.
    async fn store(&self, tx: &mut sqlx::PgConnection, id: uuid::Uuid) -> sqlx::Result<()> {
        let Self(user_id, product_id, quantity) = *self;
        sqlx::query("insert into orders values ($1, $2, $3, $4)")
            .bind(id)
            .bind(user_id)
            .bind(product_id)
            .bind(quantity)
            .execute(tx)
            .await
            .map(drop)
    }

    /// The answer to the order, placed as `id`.
    fn placed(&self, id: uuid::Uuid) -> Response {
        let Self(user_id, product_id, quantity) = *self;
        answer(
            StatusCode::OK,
            json!({"id": id, "product_id": product_id, "user_id": user_id, "quantity": quantity, "status": "Success"}),
        )
    }
}

/// One transaction: the buyer exists, the stock is taken by a conditional decrement, the
/// order is stored.
async fn place_order(State(db): State<PgPool>, bytes: Bytes) -> Response {
    let invalid = |status| order_error(status, "Invalid Request");
    let Some(order) = Order::parse(&bytes) else {
        return invalid(StatusCode::BAD_REQUEST);
    };
    let Order(user_id, product_id, quantity) = order;
    let placed = async {
        let mut tx = db.begin().await?;
        let buyer = sqlx::query("select 1 from users where id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if buyer.is_none() {
            return Ok(Err(invalid(StatusCode::NOT_FOUND)));
        }
        let taken = sqlx::query(
            "update products set quantity = quantity - $2 where id = $1 and quantity >= $2 returning quantity",
        )
        .bind(product_id)
        .bind(quantity)
        .fetch_optional(&mut *tx)
        .await?;
        if taken.is_none() {
            let exists = sqlx::query("select 1 from products where id = $1")
                .bind(product_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Ok(Err(match exists {
                Some(_) => order_error(StatusCode::CONFLICT, "Exceeded quantity limit"),
                None => invalid(StatusCode::NOT_FOUND),
            }));
        }
        let id = uuid::Uuid::new_v4();
        order.store(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Ok(id))
    };
    match placed.await {
        Ok(Ok(id)) => order.placed(id),
        Ok(Err(refused)) => refused,
        Err(error) => failed(error),
    }
}

async fn purchased(State(db): State<PgPool>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i32>() else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let found = async {
        let buyer = sqlx::query("select 1 from users where id = $1")
            .bind(id)
            .fetch_optional(&db)
            .await?;
        if buyer.is_none() {
            return Ok(None);
        }
        sqlx::query("select product_id, sum(quantity)::bigint from orders where user_id = $1 group by product_id")
            .bind(id)
            .fetch_all(&db)
            .await
            .map(Some)
    };
    match found.await {
        Ok(Some(rows)) => answer(
            StatusCode::OK,
            rows.iter()
                .map(|row| {
                    (
                        row.get::<i32, _>(0).to_string(),
                        json!(row.get::<i64, _>(1)),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into(),
        ),
        Ok(None) => empty(StatusCode::NOT_FOUND),
        Err(error) => failed(error),
    }
}
