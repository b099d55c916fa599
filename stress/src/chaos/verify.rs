//! The guarantees of a chaos run, checked once the system is quiet: against both databases (as
//! the services' own roles), the API, JetStream's monitoring and nats-server's log.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use sqlx::{PgPool, postgres::PgPoolOptions};

use super::{Plan, Stack, clients::Ledger, faults::LogMark};
use crate::{
    client::{Connection, Request},
    report::Check,
    workload::Ctx,
};

/// How long after the last order is decided the checks may take to hold (a release in flight).
const GRACE: Duration = Duration::from_secs(30);

/// An order as stored, with the key it was placed under.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Order {
    id: String,
    user_id: i32,
    product_id: i32,
    quantity: i32,
    state: String,
    reason: Option<String>,
    key: Option<String>,
}

/// Both databases, read at one quiet moment.
struct Snapshot {
    orders: Vec<Order>,
    /// Stock left, by product.
    stock: BTreeMap<i32, i64>,
    /// Reservations still holding stock: order id → (product, quantity).
    held: BTreeMap<String, (i32, i32)>,
}

impl Snapshot {
    async fn read(orders: &PgPool, products: &PgPool) -> anyhow::Result<Self> {
        let orders_list = sqlx::query_as::<_, Order>(
            "select o.id::text as id, o.user_id, o.product_id, o.quantity, o.state, o.reason, k.key
             from orders o left join idempotency_keys k on k.order_id = o.id",
        )
        .fetch_all(orders)
        .await?;
        let stock = sqlx::query_as::<_, (i32, i32)>("select id, quantity from products")
            .fetch_all(products)
            .await?
            .into_iter()
            .map(|(id, quantity)| (id, i64::from(quantity)))
            .collect();
        let held = sqlx::query_as::<_, (String, i32, i32)>(
            "select order_id::text, product_id, quantity from reservations where state = 'reserved'",
        )
        .fetch_all(products)
        .await?
        .into_iter()
        .map(|(order, product, quantity)| (order, (product, quantity)))
        .collect();
        Ok(Self {
            orders: orders_list,
            stock,
            held,
        })
    }

    /// Orders by state, rejections by reason.
    fn states(&self) -> BTreeMap<String, u64> {
        let mut states = BTreeMap::new();
        for order in &self.orders {
            let name = match &order.reason {
                Some(reason) => format!("{} ({reason})", order.state),
                None => order.state.clone(),
            };
            *states.entry(name).or_default() += 1;
        }
        states
    }
}

/// Every stream as nats-server's monitoring endpoint describes it (`/jsz`), from the first
/// node (on several hosts, every node holds a replica of every stream).
async fn streams(stack: &Stack) -> anyhow::Result<Vec<serde_json::Value>> {
    let addr = format!("{}:{}", stack.host_addr(1), stack.nats_monitor_port);
    let mut connection = Connection::open(&addr, Duration::from_secs(5))
        .await
        .map_err(|e| anyhow::anyhow!("nats-server monitoring at {addr}: {e:?}"))?;
    let (_, body) = connection
        .send(
            &Request::get("/jsz?accounts=true&streams=true"),
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| anyhow::anyhow!("GET /jsz: {e:?}"))?;
    let jsz: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten())
        .cloned()
        .collect())
}

/// DEAD_LETTERS' message count.
pub async fn dead_letters(stack: &Stack) -> anyhow::Result<u64> {
    Ok(streams(stack)
        .await?
        .iter()
        .filter(|stream| stream["name"] == "DEAD_LETTERS")
        .filter_map(|stream| stream["state"]["messages"].as_u64())
        .sum())
}

/// The NATS node (`nats-2`) that leads `stream`, on a stack of several hosts.
pub async fn stream_leader(stack: &Stack, stream: &str) -> anyhow::Result<String> {
    streams(stack)
        .await?
        .iter()
        .find(|s| s["name"] == stream)
        .and_then(|s| s["cluster"]["leader"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("{stream} has no leader (is the stack on several hosts?)"))
}

/// What the run left behind before the checks: where the logs and counters stood.
pub struct Before {
    /// Every NATS node's log at the start.
    pub nats_logs: Vec<LogMark>,
    /// DEAD_LETTERS' count at the start.
    pub dead_letters: u64,
}

/// Waits for quiet (no order pending, up to `plan.settle`), then checks until every check
/// holds or [`GRACE`] has passed. Returns the orders by state and the checks.
pub async fn run(
    ctx: &Ctx,
    stack: &Stack,
    plan: &Plan,
    ledger: &Ledger,
    before: &Before,
) -> anyhow::Result<(BTreeMap<String, u64>, Vec<Check>)> {
    let connect = |service: &'static str| async move {
        let url = stack.database_url(service)?;
        anyhow::Ok(
            PgPoolOptions::new()
                .max_connections(2)
                .connect(&url)
                .await?,
        )
    };
    let (orders, products) = (connect("order").await?, connect("product").await?);
    let quiet_by = Instant::now() + plan.settle;
    while pending(&orders).await? > 0 && Instant::now() < quiet_by {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let grace_until = Instant::now() + GRACE;
    loop {
        let snapshot = Snapshot::read(&orders, &products).await?;
        let mut checks = vec![
            stock_conserved(plan, &snapshot),
            reservations_match(&snapshot),
            nothing_pending(&snapshot),
            answers_match(ledger, &snapshot),
            one_order_per_key(ledger, &snapshot),
            purchase_history(ctx, plan, &snapshot).await?,
        ];
        checks.push(quiet_broker(stack, before).await?);
        checks.push(no_internal_errors(ledger));
        if checks.iter().all(|c| c.passed) || Instant::now() >= grace_until {
            return Ok((snapshot.states(), checks));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn pending(orders: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("select count(*) from orders where state = 'pending'")
            .fetch_one(orders)
            .await?,
    )
}

fn check(what: &str, passed: bool, detail: String) -> Check {
    Check {
        what: what.to_owned(),
        passed,
        detail,
    }
}

fn stock_conserved(plan: &Plan, snapshot: &Snapshot) -> Check {
    let mut confirmed = BTreeMap::<i32, i64>::new();
    for order in snapshot.orders.iter().filter(|o| o.state == "confirmed") {
        *confirmed.entry(order.product_id).or_default() += i64::from(order.quantity);
    }
    let initial = i64::from(plan.stock);
    let mut holds = true;
    let detail: Vec<String> = (1..=plan.products)
        .map(|product| {
            let left = snapshot.stock.get(&product).copied().unwrap_or(-1);
            let bought = confirmed.get(&product).copied().unwrap_or(0);
            holds &= initial == left + bought;
            format!("#{product}: {initial} = {left} left + {bought} confirmed")
        })
        .collect();
    check(
        "per product, initial stock = current stock + confirmed quantities",
        holds,
        detail.join("; "),
    )
}

fn reservations_match(snapshot: &Snapshot) -> Check {
    let by_id: BTreeMap<&str, &Order> =
        snapshot.orders.iter().map(|o| (o.id.as_str(), o)).collect();
    let mut stray = Vec::new();
    for (order_id, (product, quantity)) in &snapshot.held {
        match by_id.get(order_id.as_str()) {
            Some(o)
                if o.state == "confirmed"
                    && (o.product_id, o.quantity) == (*product, *quantity) => {}
            Some(o) => stray.push(format!("{order_id} ({})", o.state)),
            None => stray.push(format!("{order_id} (no such order)")),
        }
    }
    let unheld = snapshot
        .orders
        .iter()
        .filter(|o| o.state == "confirmed" && !snapshot.held.contains_key(&o.id))
        .count();
    check(
        "no reservation held by a rejected or unknown order; each confirmed order holds its own",
        stray.is_empty() && unheld == 0,
        format!(
            "{} held; held by others than confirmed orders: {stray:?}; confirmed holding none: {unheld}",
            snapshot.held.len()
        ),
    )
}

fn nothing_pending(snapshot: &Snapshot) -> Check {
    let pending = snapshot
        .orders
        .iter()
        .filter(|o| o.state == "pending")
        .count();
    check(
        "no order still pending after the final deadline",
        pending == 0,
        format!("{pending} pending"),
    )
}

/// Every settled answer agrees with the order it was about: 200 is confirmed, 404 and 409 are
/// rejected for the reason they name, 202 was decided since.
fn answers_match(ledger: &Ledger, snapshot: &Snapshot) -> Check {
    let by_key: BTreeMap<&str, &Order> = snapshot
        .orders
        .iter()
        .filter_map(|o| Some((o.key.as_deref()?, o)))
        .collect();
    let mut wrong = Vec::new();
    let mut answered = 0;
    for placed in &ledger.placed {
        let Some(status) = placed.last() else {
            continue;
        };
        answered += 1;
        let stored = by_key.get(placed.key.as_str());
        if let Some(order) = stored
            && (order.user_id, order.product_id, order.quantity) != placed.order
        {
            wrong.push(format!("{} stored as another order: {order:?}", placed.key));
        }
        let state = stored.map(|o| (o.state.as_str(), o.reason.as_deref()));
        let agrees = match (status, state) {
            (200, Some(("confirmed", _))) => true,
            (202, Some((state, _))) => state != "pending",
            (404, Some(("rejected", Some("user_not_found" | "product_not_found")))) => true,
            (409, Some(("rejected", Some("insufficient_stock")))) => true,
            _ => false,
        };
        if !agrees {
            wrong.push(format!(
                "{} answered {status}, stored {state:?}",
                placed.key
            ));
        }
    }
    check(
        "every answered order is stored as ordered and answered (200 confirmed, 404/409 rejected for that reason, 202 decided)",
        wrong.is_empty(),
        format!("{answered} answered orders; disagreeing: {wrong:?}"),
    )
}

fn one_order_per_key(ledger: &Ledger, snapshot: &Snapshot) -> Check {
    let stored: BTreeMap<&str, &str> = snapshot
        .orders
        .iter()
        .filter_map(|o| Some((o.key.as_deref()?, o.id.as_str())))
        .collect();
    let keyless = snapshot.orders.iter().filter(|o| o.key.is_none()).count();
    let mut split = Vec::new();
    for placed in &ledger.placed {
        let ids: BTreeSet<&str> = placed.ids.iter().map(String::as_str).collect();
        let agrees = ids.len() <= 1
            && ids
                .iter()
                .all(|id| stored.get(placed.key.as_str()) == Some(id));
        if !agrees {
            split.push(format!(
                "{}: answered {ids:?}, stored {:?}",
                placed.key,
                stored.get(placed.key.as_str())
            ));
        }
    }
    check(
        "no order placed twice for one Idempotency-Key",
        split.is_empty() && keyless == 0,
        format!(
            "{} orders for {} keys; orders without a key: {keyless}; keys answered with another order: {split:?}",
            snapshot.orders.len(),
            stored.len()
        ),
    )
}

async fn purchase_history(ctx: &Ctx, plan: &Plan, snapshot: &Snapshot) -> anyhow::Result<Check> {
    let mut expected = BTreeMap::<i32, BTreeMap<String, i64>>::new();
    for order in snapshot.orders.iter().filter(|o| o.state == "confirmed") {
        *expected
            .entry(order.user_id)
            .or_default()
            .entry(order.product_id.to_string())
            .or_default() += i64::from(order.quantity);
    }
    let mut wrong = Vec::new();
    for user in 1..=plan.users {
        let (status, body) = ctx
            .call(&Request::get(format!("/user/purchased/{user}")))
            .await?;
        let shown: BTreeMap<String, i64> = body
            .as_object()
            .into_iter()
            .flatten()
            .map(|(product, units)| (product.clone(), units.as_i64().unwrap_or(-1)))
            .collect();
        let want = expected.remove(&user).unwrap_or_default();
        if status != 200 || shown != want {
            wrong.push(format!(
                "user {user}: {status} {shown:?}, confirmed {want:?}"
            ));
        }
    }
    Ok(check(
        "every buyer's purchase history is the sum of their confirmed orders",
        wrong.is_empty(),
        format!("{} buyers; wrong: {wrong:?}", plan.users),
    ))
}

async fn quiet_broker(stack: &Stack, before: &Before) -> anyhow::Result<Check> {
    let dead = dead_letters(stack)
        .await?
        .saturating_sub(before.dead_letters);
    let violations: Vec<String> = before
        .nats_logs
        .iter()
        .flat_map(|log| log.lines_since("Violation"))
        .collect();
    Ok(check(
        "nothing dead-lettered, no NATS permission refused",
        dead == 0 && violations.is_empty(),
        format!(
            "{dead} new dead letters; permission violations: {:?}",
            violations.iter().take(3).collect::<Vec<_>>()
        ),
    ))
}

fn no_internal_errors(ledger: &Ledger) -> Check {
    let tally = ledger.summary();
    check(
        "no 500 (internal fault) answered, and every order settled",
        tally.internal == 0 && tally.gave_up == 0,
        format!(
            "{} answered 500; {} orders given up after a minute of failures",
            tally.internal, tally.gave_up
        ),
    )
}
