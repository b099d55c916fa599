//! The faults of a chaos run: one component at a time is killed with SIGKILL (`./stack kill`),
//! left down a moment, and restarted (`./stack up`, which returns once everything is ready).

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use serde::Serialize;

use super::{Plan, Rng, Stack};

/// What can be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A replica of the user service.
    User,
    /// A replica of the product service.
    Product,
    /// A replica of the order service.
    Order,
    /// nats-server (with JetStream).
    Nats,
    /// PostgreSQL, the postmaster and every backend at once.
    Postgres,
    /// Nginx.
    Nginx,
    /// On several hosts: a whole host at once, its NATS node and its replica of each service.
    Host,
    /// On several hosts: a whole host, and its JetStream store deleted (a lost disk).
    Wipe,
    /// On several hosts: the NATS node that leads the `ORDER_SAGA` stream, on purpose.
    Leader,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 9] = [
        Kind::User,
        Kind::Product,
        Kind::Order,
        Kind::Nats,
        Kind::Postgres,
        Kind::Nginx,
        Kind::Host,
        Kind::Wipe,
        Kind::Leader,
    ];

    /// The name `./stack kill` knows it by (a service without its replica number).
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Product => "product",
            Kind::Order => "order",
            Kind::Nats => "nats",
            Kind::Postgres => "postgres",
            Kind::Nginx => "nginx",
            Kind::Host => "host",
            Kind::Wipe => "wipe",
            Kind::Leader => "leader",
        }
    }

    /// The inverse of [`Kind::name`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether it needs a stack of several hosts.
    pub fn needs_hosts(self) -> bool {
        matches!(self, Kind::Host | Kind::Wipe | Kind::Leader)
    }
}

/// One kill.
#[derive(Debug, Clone, Serialize)]
pub struct Kill {
    /// What.
    pub kind: Kind,
    /// The component, as `./stack kill` names it (`order-2`).
    pub target: String,
    /// Seconds into the run.
    pub at: f64,
    /// Seconds from the kill until `./stack up` had everything ready again.
    pub down: f64,
}

/// Kills and restarts components until `plan.duration` is over. Every kind is killed once in
/// each round, in an order the seed shuffles; a service's replica is drawn too.
pub async fn inject(stack: &Stack, plan: &Plan) -> anyhow::Result<Vec<Kill>> {
    let mut rng = Rng::new(plan.seed ^ 0x6b69_6c6c);
    let started = Instant::now();
    let mut kills = Vec::new();
    let mut round: Vec<Kind> = Vec::new();
    let mut last_host = None;
    loop {
        tokio::time::sleep(rng.between(plan.calm)).await;
        if started.elapsed() >= plan.duration || plan.kinds.is_empty() {
            return Ok(kills);
        }
        if round.is_empty() {
            round = plan.kinds.clone();
            if plan.in_order {
                // Popped from the end: reversed, it is the order given.
                round.reverse();
            } else {
                // Fisher-Yates, seeded.
                for i in (1..round.len()).rev() {
                    let j = usize::try_from(rng.draw() % (i as u64 + 1)).unwrap_or(0);
                    round.swap(i, j);
                }
            }
        }
        let Some(kind) = round.pop() else { continue };
        let hosts = u64::from(stack.hosts.max(1));
        let (command, target) = match kind {
            Kind::User | Kind::Product | Kind::Order => {
                let replica = rng.draw() % u64::from(stack.replicas.max(1)) + 1;
                ("kill", format!("{}-{replica}", kind.name()))
            }
            Kind::Nats if hosts > 1 => ("kill", format!("nats-{}", rng.draw() % hosts + 1)),
            Kind::Host | Kind::Wipe => {
                // Another host than the last one a host fault took.
                let mut node = rng.draw() % hosts + 1;
                if Some(node) == last_host {
                    node = node % hosts + 1;
                }
                last_host = Some(node);
                let command = if kind == Kind::Host { "kill" } else { "wipe" };
                (command, format!("host-{node}"))
            }
            Kind::Leader => (
                "kill",
                super::verify::stream_leader(stack, "ORDER_SAGA").await?,
            ),
            Kind::Nats | Kind::Postgres | Kind::Nginx => ("kill", kind.name().to_owned()),
        };
        let at = started.elapsed();
        stack.run(&[command, &target]).await?;
        tokio::time::sleep(rng.between(plan.down)).await;
        stack.run(&["up"]).await?;
        kills.push(Kill {
            kind,
            target,
            at: at.as_secs_f64(),
            down: (started.elapsed() - at).as_secs_f64(),
        });
    }
}

/// Where a log file ended when the run began, to read only what the run added.
#[derive(Debug, Clone)]
pub struct LogMark {
    path: PathBuf,
    offset: u64,
}

impl LogMark {
    /// Marks the current end of `path`.
    pub fn new(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map_or(0, |m| m.len());
        Self {
            path: path.to_owned(),
            offset,
        }
    }

    /// The lines written since, that contain `needle`.
    pub fn lines_since(&self, needle: &str) -> Vec<String> {
        let Ok(text) = std::fs::read(&self.path) else {
            return Vec::new();
        };
        let start = usize::try_from(self.offset).unwrap_or(0).min(text.len());
        String::from_utf8_lossy(&text[start..])
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}
