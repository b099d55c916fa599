//! The workloads, and what they share: the deterministic data set (every field derives from
//! the id, so any request can be rebuilt), resetting and seeding the system, and single
//! requests for checks.

pub mod mix;
pub mod orders;
pub mod replay;
pub mod seed;

use std::{ops::Range, sync::Arc, time::Duration};

use serde_json::{Value, json};

use crate::{
    client::{Connection, Request, Targets},
    engine::{self, Shape, Source},
    report::group,
};

/// What every workload runs with.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Where requests go.
    pub targets: Targets,
    /// The operator token, for resets and replayed shutdowns.
    pub admin_token: Option<String>,
    /// Per request.
    pub timeout: Duration,
    /// Show progress on stderr.
    pub progress: bool,
}

impl Ctx {
    /// The progress label, if progress is shown.
    pub fn label<'a>(&self, label: &'a str) -> Option<&'a str> {
        self.progress.then_some(label)
    }

    /// Sends one request through the default target and returns its status and JSON body.
    pub async fn call(&self, request: &Request) -> anyhow::Result<(u16, Value)> {
        let addr = self.targets.addr(self.targets.route(&request.path));
        let mut connection = Connection::open(addr, self.timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{addr}: {e:?}"))?;
        let (status, body) = connection
            .send(request, self.timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", request.path))?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// `POST /admin/<command>` with the operator token.
    pub async fn admin(&self, command: &str) -> anyhow::Result<()> {
        let token = self.admin_token.as_deref().ok_or_else(|| {
            anyhow::anyhow!("no admin token: pass --admin-token or ADMIN_TOKEN (./stack keeps one in .stack/secrets/admin_token)")
        })?;
        let request = Request::post(format!("/admin/{command}"), &json!({}))
            .with_header("authorization", format!("Bearer {token}"));
        let addr = self.targets.addr(0);
        let mut connection = Connection::open(addr, self.timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{addr}: {e:?}"))?;
        let (status, body) = connection
            .send(&request, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("/admin/{command}: {e:?}"))?;
        anyhow::ensure!(
            status == 200,
            "/admin/{command} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(())
    }
}

/// The create command of user `id`.
pub fn user(id: i32) -> Value {
    json!({"command": "create", "id": id, "username": format!("user{id}"), "email": format!("user{id}@example.com"), "password": format!("pw{id}")})
}

/// The create command of product `id` with `stock` units.
pub fn product(id: i32, stock: i32) -> Value {
    json!({"command": "create", "id": id, "name": format!("product{id}"), "description": format!("product number {id}"), "price": price(id), "quantity": stock})
}

/// Product `id`'s price: a float, sometimes a whole one.
pub fn price(id: i32) -> f64 {
    1.0 + f64::from(id.rem_euclid(400)) * 0.25
}

/// An order.
pub fn order(user_id: i32, product_id: i32, quantity: i32) -> Value {
    json!({"command": "place order", "user_id": user_id, "product_id": product_id, "quantity": quantity})
}

/// A deterministic pseudo-random number for sequence `n` (splitmix64), so that workloads need
/// no shared random state.
pub fn scramble(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number in `range` picked by `seed`.
pub fn pick(seed: u64, range: &Range<i32>) -> i32 {
    let span = u64::try_from(range.end - range.start).unwrap_or(1).max(1);
    range.start + i32::try_from(seed % span).unwrap_or(0)
}

/// Creates `users` and `products` (with `stock` units each) as fast as the system takes them,
/// and describes how long that took. Every create must answer 200.
pub async fn prepare(
    ctx: &Ctx,
    users: Range<i32>,
    products: Range<i32>,
    stock: i32,
) -> anyhow::Result<String> {
    let creates: Arc<Vec<Request>> = Arc::new(
        users
            .clone()
            .map(|id| Request::post("/user", &user(id)))
            .chain(
                products
                    .clone()
                    .map(|id| Request::post("/product", &product(id, stock))),
            )
            .collect(),
    );
    let list = creates.clone();
    let source: Source = Arc::new(move |n| list.get(usize::try_from(n).ok()?).cloned());
    let recording = engine::run(
        &ctx.targets,
        source,
        &Shape::finite(32, ctx.timeout),
        ctx.label("seeding"),
    )
    .await;
    let created = recording.statuses.get(&200).copied().unwrap_or(0);
    anyhow::ensure!(
        created == creates.len() as u64,
        "seeding: {created} of {} creates answered 200 ({:?}, {:?}); is the data fresh? (an admin token makes workloads reset first)",
        creates.len(),
        recording.statuses,
        recording.failures
    );
    let seconds = recording.measured.as_secs_f64();
    Ok(format!(
        "{} users and {} products in {seconds:.2} s ({} req/s)",
        group(users.len() as u64),
        group(products.len() as u64),
        group((creates.len() as f64 / seconds.max(1e-9)) as u64)
    ))
}

/// Resets the system when a token is at hand, so each run starts from the same data.
pub async fn fresh_start(ctx: &Ctx) -> anyhow::Result<()> {
    if ctx.admin_token.is_some() {
        ctx.admin("reset").await
    } else {
        eprintln!("stress: no admin token, so no reset: the data must be fresh");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_stay_in_range_and_spread_over_it() {
        let range = 10..20;
        let mut seen = [false; 10];
        for n in 0..1000 {
            let value = pick(scramble(n), &range);
            assert!(range.contains(&value));
            seen[usize::try_from(value - 10).unwrap()] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn prices_are_floats_that_are_sometimes_whole() {
        assert_eq!(price(0), 1.0);
        assert_eq!(price(2), 1.5);
        assert_eq!(product(4, 9)["price"], json!(2.0));
    }
}
