//! The clients of a chaos run: each places orders one after another, every order with its own
//! `Idempotency-Key`, and sends the same order with the same key again after a 5xx or a broken
//! connection (with backoff), until it gets an answer that settles it or a minute has passed.

use std::{
    ops::Range,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{Plan, Rng};
use crate::{
    client::{Connection, Failure, Request},
    workload::{self, Ctx, pick, scramble},
};

/// How long a client keeps trying one order.
const PATIENCE: Duration = Duration::from_secs(60);

/// One order as its client saw it.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The Idempotency-Key.
    pub key: String,
    /// (user, product, quantity).
    pub order: (i32, i32, i32),
    /// Every answer's status, in order (0 for no answer).
    pub statuses: Vec<u16>,
    /// The order ids the answers carried (all must be one).
    pub ids: Vec<String>,
}

impl Placed {
    /// The status that settled it, if any did.
    pub fn last(&self) -> Option<u16> {
        self.statuses.last().copied().filter(|s| settles(*s))
    }
}

/// Whether an answer settles an order for its client (anything but 5xx and no answer).
fn settles(status: u16) -> bool {
    !(status == 0 || status >= 500)
}

/// Counts over every order of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Orders (distinct keys) attempted, each until it was settled or given up on.
    pub orders: u64,
    /// Requests sent, retries included.
    pub requests: u64,
    /// Orders settled by 200.
    pub ok: u64,
    /// By 202 (accepted, decided later).
    pub accepted: u64,
    /// By 404.
    pub not_found: u64,
    /// By 409.
    pub conflict: u64,
    /// Settled by anything else (400, 422: wrong).
    pub other: u64,
    /// Orders the client gave up on after a minute of failures.
    pub gave_up: u64,
    /// Answers with a 5xx status, retries included.
    pub server_errors: u64,
    /// Of which 503.
    pub unavailable: u64,
    /// Of which 500: a fault of ours, never acceptable.
    pub internal: u64,
    /// Requests that got no answer: connection refused, broken, or timed out.
    pub connect: u64,
    pub io: u64,
    pub timeout: u64,
}

impl Tally {
    /// Requests with no answer.
    pub fn unanswered(&self) -> u64 {
        self.connect + self.io + self.timeout
    }
}

/// What the clients recorded.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every order.
    pub placed: Vec<Placed>,
    counts: Tally,
}

impl Ledger {
    /// The counts.
    pub fn summary(&self) -> Tally {
        self.counts.clone()
    }
}

/// Clients placing orders in the background.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Placed>>>,
    counts: Arc<Mutex<Tally>>,
}

impl Load {
    /// Starts `plan.clients` clients.
    pub fn start(ctx: &Ctx, plan: &Plan) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(0));
        let counts = Arc::new(Mutex::new(Tally::default()));
        let tasks = (0..plan.clients)
            .map(|_| {
                let client = Client {
                    addr: ctx.targets.addr(ctx.targets.route("/order")).to_owned(),
                    timeout: ctx.timeout,
                    seed: plan.seed,
                    users: 1..plan.users + 1,
                    products: 1..plan.products + 1,
                    counts: counts.clone(),
                };
                tokio::spawn(client.run(stop.clone(), next.clone()))
            })
            .collect();
        Self {
            stop,
            tasks,
            counts,
        }
    }

    /// Stops placing new orders, lets each client settle the one it is on, and returns all.
    pub async fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        let mut placed = Vec::new();
        for task in self.tasks {
            placed.extend(task.await.unwrap_or_default());
        }
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        counts.orders = placed.len() as u64;
        Ledger { placed, counts }
    }
}

struct Client {
    addr: String,
    timeout: Duration,
    seed: u64,
    users: Range<i32>,
    products: Range<i32>,
    counts: Arc<Mutex<Tally>>,
}

impl Client {
    async fn run(self, stop: Arc<AtomicBool>, next: Arc<AtomicU64>) -> Vec<Placed> {
        let mut connection = None;
        let mut placed = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let order = self.order(n);
            placed.push(self.place(&mut connection, n, order).await);
        }
        placed
    }

    /// Order `n`: mostly real buyers and products, one in twenty for a user and one in twenty
    /// for a product that does not exist; 1 to 3 units.
    fn order(&self, n: u64) -> (i32, i32, i32) {
        let roll = scramble(self.seed ^ scramble(n));
        let user = match roll % 20 {
            0 => self.users.end + 1000,
            _ => pick(roll >> 8, &self.users),
        };
        let product = match (roll >> 5) % 20 {
            0 => self.products.end + 1000,
            _ => pick(roll >> 24, &self.products),
        };
        (user, product, pick(roll >> 40, &(1..4)))
    }

    async fn place(
        &self,
        connection: &mut Option<Connection>,
        n: u64,
        order: (i32, i32, i32),
    ) -> Placed {
        let key = format!("chaos-{}-{n}", self.seed);
        let body = workload::order(order.0, order.1, order.2);
        let request = Request::post("/order", &body).with_header("idempotency-key", key.clone());
        let mut placed = Placed {
            key,
            order,
            statuses: Vec::new(),
            ids: Vec::new(),
        };
        let started = Instant::now();
        let mut backoff = Rng::new(scramble(self.seed ^ n));
        for attempt in 0u32.. {
            let (status, failure) = match self.send(connection, &request).await {
                Ok((status, body)) => {
                    if let Some(id) = body["id"].as_str() {
                        placed.ids.push(id.to_owned());
                    }
                    (status, None)
                }
                Err(failure) => (0, Some(failure)),
            };
            self.count(status, failure);
            placed.statuses.push(status);
            if settles(status) {
                break;
            }
            if started.elapsed() > PATIENCE {
                self.lock().gave_up += 1;
                break;
            }
            let ceiling = Duration::from_millis(100 * 2u64.pow(attempt.min(4)));
            tokio::time::sleep(backoff.between((ceiling / 2, ceiling))).await;
        }
        placed
    }

    async fn send(
        &self,
        connection: &mut Option<Connection>,
        request: &Request,
    ) -> Result<(u16, serde_json::Value), Failure> {
        if connection.as_ref().is_none_or(Connection::is_closed) {
            *connection = Some(Connection::open(&self.addr, self.timeout).await?);
        }
        let Some(open) = connection.as_mut() else {
            return Err(Failure::Connect);
        };
        match open.send(request, self.timeout).await {
            Ok((status, body)) => Ok((
                status,
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            )),
            Err(failure) => {
                *connection = None;
                Err(failure)
            }
        }
    }

    fn count(&self, status: u16, failure: Option<Failure>) {
        let mut counts = self.lock();
        counts.requests += 1;
        match (status, failure) {
            (_, Some(Failure::Connect)) => counts.connect += 1,
            (_, Some(Failure::Io)) => counts.io += 1,
            (_, Some(Failure::Timeout)) => counts.timeout += 1,
            (200, _) => counts.ok += 1,
            (202, _) => counts.accepted += 1,
            (404, _) => counts.not_found += 1,
            (409, _) => counts.conflict += 1,
            (503, _) => {
                counts.server_errors += 1;
                counts.unavailable += 1;
            }
            (500, _) => {
                counts.server_errors += 1;
                counts.internal += 1;
            }
            (500.., _) => counts.server_errors += 1,
            _ => counts.other += 1,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
