//! `seed`: the original project's own request list, in its order, so that results compare with
//! its figures. For every id: create user, create product; then for every id: read the user,
//! update it, read the product, update it; then for every id: delete the user, read it, delete
//! the product, read it. Ten requests per id, four of them reads (40 %); the phases run one after
//! the other, each as fast as the load shape allows. Nothing is left behind.

use std::sync::Arc;

use serde_json::json;

use super::{Ctx, price, product, user};
use crate::{
    client::Request,
    engine::{self, Recording, Shape, Source},
    report::{Check, Summary},
};

/// Units of stock each seeded product starts with, and has after its update.
const STOCK: i32 = 9;
const UPDATED_STOCK: i32 = 7;

fn updated_email(id: i32) -> String {
    format!("user{id}@updated.example.com")
}

fn updated_price(id: i32) -> f64 {
    price(id) + 1.0
}

/// The three phases of requests for ids `first..first + ids`.
pub fn phases(first: i32, ids: i32) -> [Vec<Request>; 3] {
    let range = first..first.saturating_add(ids);
    let create = range.clone().flat_map(|id| {
        [
            Request::post("/user", &user(id)),
            Request::post("/product", &product(id, STOCK)),
        ]
    });
    let touch = range.clone().flat_map(|id| {
        [
            Request::get(format!("/user/{id}")),
            Request::post("/user", &json!({"command": "update", "id": id, "email": updated_email(id)})),
            Request::get(format!("/product/{id}")),
            Request::post(
                "/product",
                &json!({"command": "update", "id": id, "price": updated_price(id), "quantity": UPDATED_STOCK}),
            ),
        ]
    });
    let remove = range.flat_map(|id| {
        [
            Request::post(
                "/user",
                &json!({"command": "delete", "id": id, "username": format!("user{id}"), "email": updated_email(id), "password": format!("pw{id}")}),
            ),
            Request::get(format!("/user/{id}")),
            Request::post(
                "/product",
                &json!({"command": "delete", "id": id, "name": format!("product{id}"), "price": updated_price(id), "quantity": UPDATED_STOCK}),
            ),
            Request::get(format!("/product/{id}")),
        ]
    });
    [create.collect(), touch.collect(), remove.collect()]
}

/// Runs the list and checks the statuses it should get on fresh data, and that it left nothing.
pub async fn run(
    ctx: &Ctx,
    shape: &Shape,
    first: i32,
    ids: i32,
    load: String,
) -> anyhow::Result<Summary> {
    super::fresh_start(ctx).await?;
    let mut total: Option<Recording> = None;
    let mut measured = std::time::Duration::ZERO;
    let mut unexpected = 0;
    for (phase, requests) in phases(first, ids).into_iter().enumerate() {
        let requests = Arc::new(requests);
        let source: Source = Arc::new(move |n| requests.get(usize::try_from(n).ok()?).cloned());
        let shape = Shape {
            duration: None,
            requests: None,
            warmup: std::time::Duration::ZERO,
            keep_responses: true,
            ..shape.clone()
        };
        let label = format!("seed phase {}", phase + 1);
        let recording = engine::run(&ctx.targets, source, &shape, ctx.label(&label)).await;
        measured += recording.measured;
        unexpected += recording
            .responses
            .iter()
            .filter(|(n, outcome)| {
                // Only a read of the last phase may find nothing: with several connections it
                // can overtake the delete before it.
                let read_after_delete = phase == 2 && n % 2 == 1;
                let expected = matches!(outcome, Ok((200, _)))
                    || (read_after_delete && matches!(outcome, Ok((404, _))));
                !expected
            })
            .count();
        match &mut total {
            Some(total) => total.merge(recording),
            None => total = Some(recording),
        }
    }
    let mut recording = total.ok_or_else(|| anyhow::anyhow!("no phases"))?;
    recording.measured = measured;

    let workload = format!(
        "seed ({} ids from {first}, {} requests)",
        ids,
        10 * i64::from(ids)
    );
    let mut summary = Summary::new(workload, load, ctx.targets.describe(), recording);
    summary.checks.push(Check {
        what:
            "every create, read, update and delete answered 200 (a read after a delete: 200 or 404)"
                .into(),
        passed: unexpected == 0,
        detail: format!(
            "{unexpected} other answers; statuses {:?}",
            summary.statuses
        ),
    });
    let last = first.saturating_add(ids) - 1;
    let (user_left, _) = ctx.call(&Request::get(format!("/user/{last}"))).await?;
    let (product_left, _) = ctx.call(&Request::get(format!("/product/{last}"))).await?;
    summary.checks.push(Check {
        what: "nothing left behind".into(),
        passed: user_left == 404 && product_left == 404,
        detail: format!("GET /user/{last}: {user_left}, GET /product/{last}: {product_left}"),
    });
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use hyper::Method;

    use super::*;

    #[test]
    fn the_list_has_ten_requests_per_id_forty_percent_reads_in_the_original_order() {
        let [create, touch, remove] = phases(1, 200);
        let all: Vec<&Request> = create.iter().chain(&touch).chain(&remove).collect();
        assert_eq!(all.len(), 2000);
        let reads = all.iter().filter(|r| r.method == Method::GET).count();
        assert_eq!(reads, 800);
        assert_eq!((create.len(), touch.len(), remove.len()), (400, 800, 800));
        let paths: Vec<&str> = touch[..4].iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/user/1", "/user", "/product/1", "/product"]);
    }

    #[test]
    fn deletes_name_the_values_the_updates_set() {
        let [_, touch, remove] = phases(5, 1);
        let body = |r: &Request| {
            serde_json::from_slice::<serde_json::Value>(r.body.as_ref().unwrap()).unwrap()
        };
        assert_eq!(body(&touch[1])["email"], body(&remove[0])["email"]);
        assert_eq!(body(&touch[3])["price"], body(&remove[2])["price"]);
        assert_eq!(body(&touch[3])["quantity"], body(&remove[2])["quantity"]);
    }
}
