//! `mix`: a blend of reads, creates, updates, deletes and orders over a seeded data set; and
//! `read`: reads of products only. Which operation a request performs, and on which ids,
//! follows from its sequence number, so a run is reproducible.

use std::{
    ops::Range,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicI32, Ordering},
    },
};

use serde_json::json;

use super::{Ctx, order, pick, prepare, product, scramble, user};
use crate::{
    client::Request,
    engine::{self, Shape, Source},
    report::{Check, Summary},
};

/// Stock of seeded products: enough that orders in a mix never run out.
const PLENTY: i32 = 1_000_000_000;
/// Ids of users and products the run creates start here, above the seeded ones.
const CREATED_BASE: i32 = 1_000_000;
/// A created user is deleted only once this many more have been created, so that its create
/// has long been answered.
const DELETE_LAG: i32 = 64;

/// Relative weights of the operations in a mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blend {
    pub read: u32,
    pub create: u32,
    pub update: u32,
    pub delete: u32,
    pub order: u32,
}

impl Default for Blend {
    /// 40 % reads, 60 % writes, like the original project's mixed run.
    fn default() -> Self {
        Self {
            read: 40,
            create: 15,
            update: 25,
            delete: 5,
            order: 15,
        }
    }
}

impl FromStr for Blend {
    type Err = String;

    /// `read=40,create=15,update=25,delete=5,order=15`; operations left out weigh 0.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut blend = Self {
            read: 0,
            create: 0,
            update: 0,
            delete: 0,
            order: 0,
        };
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=weight"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: weight is not a number"))?;
            match name.trim() {
                "read" => blend.read = weight,
                "create" => blend.create = weight,
                "update" => blend.update = weight,
                "delete" => blend.delete = weight,
                "order" => blend.order = weight,
                other => return Err(format!("unknown operation {other:?}")),
            }
        }
        if blend.total() == 0 {
            return Err("the weights add up to zero".into());
        }
        Ok(blend)
    }
}

impl std::fmt::Display for Blend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            read,
            create,
            update,
            delete,
            order,
        } = self;
        write!(
            f,
            "read={read},create={create},update={update},delete={delete},order={order}"
        )
    }
}

impl Blend {
    fn total(&self) -> u32 {
        self.read + self.create + self.update + self.delete + self.order
    }
}

/// The request a mix sends as its `n`-th.
fn next(
    n: u64,
    blend: &Blend,
    users: &Range<i32>,
    products: &Range<i32>,
    created: &AtomicI32,
    deleted: &AtomicI32,
) -> Request {
    let roll = scramble(n);
    let mut slot = u32::try_from(roll % u64::from(blend.total())).unwrap_or(0);
    let detail = roll >> 32;
    let (user_id, product_id) = (pick(detail, users), pick(detail >> 8, products));
    if slot < blend.read {
        return if detail.is_multiple_of(2) {
            Request::get(format!("/user/{user_id}"))
        } else {
            Request::get(format!("/product/{product_id}"))
        };
    }
    slot -= blend.read;
    if slot < blend.create {
        let id = CREATED_BASE + created.fetch_add(1, Ordering::Relaxed);
        return if id % 2 == 0 {
            Request::post("/user", &user(id))
        } else {
            Request::post("/product", &product(id, PLENTY))
        };
    }
    slot -= blend.create;
    if slot < blend.update {
        return if detail.is_multiple_of(2) {
            Request::post(
                "/user",
                &json!({"command": "update", "id": user_id, "email": format!("u{n}@example.com")}),
            )
        } else {
            let price = f64::from(u32::try_from(detail % 1000).unwrap_or(0)) / 4.0;
            Request::post(
                "/product",
                &json!({"command": "update", "id": product_id, "price": price}),
            )
        };
    }
    slot -= blend.update;
    if slot < blend.delete {
        // Delete a user this run created, long enough ago; created user ids are even.
        let cursor = deleted.load(Ordering::Relaxed);
        if 2 * cursor + DELETE_LAG < created.load(Ordering::Relaxed)
            && deleted
                .compare_exchange(cursor, cursor + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let id = CREATED_BASE + 2 * cursor;
            let mut body = user(id);
            body["command"] = json!("delete");
            return Request::post("/user", &body);
        }
        return Request::get(format!("/user/{user_id}"));
    }
    Request::post("/order", &order(user_id, product_id, 1))
}

/// Seeds `users` and `products`, then runs the blend.
pub async fn run(
    ctx: &Ctx,
    shape: &Shape,
    users: i32,
    products: i32,
    blend: Blend,
    load: String,
) -> anyhow::Result<Summary> {
    super::fresh_start(ctx).await?;
    let (user_ids, product_ids) = (1..users.max(1) + 1, 1..products.max(1) + 1);
    let prepared = prepare(ctx, user_ids.clone(), product_ids.clone(), PLENTY).await?;
    let (created, deleted) = (Arc::new(AtomicI32::new(0)), Arc::new(AtomicI32::new(0)));
    let source: Source =
        Arc::new(move |n| Some(next(n, &blend, &user_ids, &product_ids, &created, &deleted)));
    let recording = engine::run(&ctx.targets, source, shape, ctx.label("mix")).await;
    let workload = format!("mix ({blend}; {users} users, {products} products)");
    let mut summary = Summary::new(workload, load, ctx.targets.describe(), recording);
    summary.preparation = Some(prepared);
    summary.checks.push(no_server_errors(&summary));
    Ok(summary)
}

/// Seeds `products`, then reads them at random.
pub async fn run_reads(
    ctx: &Ctx,
    shape: &Shape,
    products: i32,
    load: String,
) -> anyhow::Result<Summary> {
    super::fresh_start(ctx).await?;
    let ids = 1..products.max(1) + 1;
    let prepared = prepare(ctx, 0..0, ids.clone(), 1000).await?;
    let source: Source = Arc::new(move |n| {
        Some(Request::get(format!(
            "/product/{}",
            pick(scramble(n), &ids)
        )))
    });
    let recording = engine::run(&ctx.targets, source, shape, ctx.label("read")).await;
    let mut summary = Summary::new(
        format!("read ({products} products)"),
        load,
        ctx.targets.describe(),
        recording,
    );
    summary.preparation = Some(prepared);
    summary.checks.push(no_server_errors(&summary));
    Ok(summary)
}

/// Every request was answered, none with a 5xx.
pub fn no_server_errors(summary: &Summary) -> Check {
    Check {
        what: "no server errors and no unanswered requests".into(),
        passed: summary.errors() == 0,
        detail: format!("{} of {}", summary.errors(), summary.requests),
    }
}

#[cfg(test)]
mod tests {
    use hyper::Method;

    use super::*;

    #[test]
    fn a_blend_parses_from_name_weight_pairs_and_prints_back() {
        let blend: Blend = "read=40,create=15,update=25,delete=5,order=15"
            .parse()
            .unwrap();
        assert_eq!(blend, Blend::default());
        assert_eq!(blend.to_string().parse::<Blend>().unwrap(), blend);
        assert_eq!("order=1".parse::<Blend>().unwrap().total(), 1);
        for bad in ["", "read=0", "read", "read=x", "buy=3"] {
            assert!(bad.parse::<Blend>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_operations_follow_the_weights() {
        let blend = Blend::default();
        let (created, deleted) = (AtomicI32::new(0), AtomicI32::new(0));
        let requests: Vec<Request> = (0..20_000)
            .map(|n| next(n, &blend, &(1..101), &(1..101), &created, &deleted))
            .collect();
        let share = |pred: &dyn Fn(&Request) -> bool| {
            requests.iter().filter(|r| pred(r)).count() as f64 / 20_000.0
        };
        let body = |r: &Request| {
            r.body
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let reads = share(&|r| r.method == Method::GET);
        let orders = share(&|r| r.path == "/order");
        let creates = share(&|r| body(r).contains("\"create\""));
        assert!((reads - 0.40).abs() < 0.02, "reads {reads}");
        assert!((orders - 0.15).abs() < 0.02, "orders {orders}");
        assert!((creates - 0.15).abs() < 0.02, "creates {creates}");
        assert!(
            share(&|r| body(r).contains("\"delete\"")) > 0.04,
            "deletes happen once users exist"
        );
    }
}
