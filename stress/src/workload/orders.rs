//! `orders`: order placement concentrated on a few products (contention on their stock rows),
//! then a check that stock was conserved: for every product, the initial stock equals what is
//! left plus what the purchase histories show as bought.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use super::{Ctx, order, pick, prepare, scramble};
use crate::{
    client::Request,
    engine::{self, Shape, Source},
    report::{Check, Summary},
};

/// The shape of an orders run.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Buyers.
    pub users: i32,
    /// Products ordered (all orders go to these).
    pub products: i32,
    /// Initial stock of each.
    pub stock: i32,
    /// Units per order.
    pub quantity: i32,
}

/// Seeds, runs the orders, and checks conservation once the sagas are quiet.
pub async fn run(
    ctx: &Ctx,
    shape: &Shape,
    params: Params,
    load: String,
) -> anyhow::Result<Summary> {
    super::fresh_start(ctx).await?;
    let (users, products) = (1..params.users.max(1) + 1, 1..params.products.max(1) + 1);
    let prepared = prepare(ctx, users.clone(), products.clone(), params.stock).await?;
    let (buyers, hot, quantity) = (users.clone(), products.clone(), params.quantity);
    let source: Source = Arc::new(move |n| {
        let roll = scramble(n);
        Some(Request::post(
            "/order",
            &order(pick(roll, &buyers), pick(roll >> 32, &hot), quantity),
        ))
    });
    let recording = engine::run(&ctx.targets, source, shape, ctx.label("orders")).await;
    let workload = format!(
        "orders ({} users, {} products of {} units, {} per order)",
        params.users, params.products, params.stock, params.quantity
    );
    let mut summary = Summary::new(workload, load, ctx.targets.describe(), recording);
    summary.preparation = Some(prepared);
    summary.checks.push(super::mix::no_server_errors(&summary));
    summary
        .checks
        .push(conservation(ctx, &params, &summary).await?);
    Ok(summary)
}

/// Stock left and bought per product, read back through the API.
async fn ledger(
    ctx: &Ctx,
    params: &Params,
) -> anyhow::Result<(BTreeMap<i32, i64>, BTreeMap<i32, i64>)> {
    let mut left = BTreeMap::new();
    for product in 1..=params.products.max(1) {
        let (status, body) = ctx
            .call(&Request::get(format!("/product/{product}")))
            .await?;
        anyhow::ensure!(status == 200, "GET /product/{product} answered {status}");
        left.insert(product, body["quantity"].as_i64().unwrap_or(-1));
    }
    let mut bought = BTreeMap::new();
    for user in 1..=params.users.max(1) {
        let (status, body) = ctx
            .call(&Request::get(format!("/user/purchased/{user}")))
            .await?;
        anyhow::ensure!(
            status == 200,
            "GET /user/purchased/{user} answered {status}"
        );
        for (product, units) in body.as_object().into_iter().flatten() {
            *bought.entry(product.parse().unwrap_or(0)).or_default() += units.as_i64().unwrap_or(0);
        }
    }
    Ok((left, bought))
}

/// Waits (up to 30 s, for orders answered 202 to settle) until stock is conserved.
async fn conservation(ctx: &Ctx, params: &Params, summary: &Summary) -> anyhow::Result<Check> {
    let initial = i64::from(params.stock);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (left, bought) = ledger(ctx, params).await?;
        let holds = left.iter().all(|(product, remaining)| {
            initial == remaining + bought.get(product).copied().unwrap_or(0)
        });
        let confirmed: i64 = bought.values().sum();
        // Orders answered during the warm-up were not measured but were placed all the same.
        let recording = &summary.recording;
        let answered = |status| {
            let measured = recording.statuses.get(&status).copied().unwrap_or(0);
            measured + recording.warmup_statuses.get(&status).copied().unwrap_or(0)
        };
        let answered_200 = i64::try_from(answered(200)).unwrap_or(0);
        let late = answered(202);
        // Every 200 is bought; orders answered 202 may add to that.
        let agrees = confirmed == answered_200 * i64::from(params.quantity)
            || (late > 0 && confirmed >= answered_200);
        if (holds && agrees) || tokio::time::Instant::now() >= deadline {
            let detail = left
                .iter()
                .map(|(p, remaining)| {
                    format!(
                        "#{p}: {initial} = {remaining} left + {} bought",
                        bought.get(p).copied().unwrap_or(0)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Ok(Check {
                what: "stock conserved: initial = left + bought, and every 200 is bought".into(),
                passed: holds && agrees,
                detail: format!(
                    "{detail}; {confirmed} units bought, {answered_200} orders answered 200 (warm-up included)"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
