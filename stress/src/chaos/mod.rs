//! `chaos`: the fault-injection run. Many clients place orders on a few contended products,
//! each with an `Idempotency-Key` and retrying as a careful client does, while service
//! replicas, nats-server, PostgreSQL and Nginx are killed with SIGKILL at random moments and
//! restarted. Once the system is quiet, the guarantees of DESIGN.md are checked against the
//! databases and the API (see [`verify`]).

mod clients;
mod faults;
mod verify;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::Serialize;

pub use faults::Kind;

use crate::{report::Check, workload::Ctx};

/// What a chaos run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Seeds the orders, the kill schedule and the targets.
    pub seed: u64,
    /// How long orders are placed and processes killed.
    pub duration: Duration,
    /// Clients placing orders at once.
    pub clients: usize,
    /// Buyers (orders also go to a few users and products that do not exist).
    pub users: i32,
    /// Contended products.
    pub products: i32,
    /// Initial stock of each product.
    pub stock: i32,
    /// What may be killed.
    pub kinds: Vec<Kind>,
    /// Kill the kinds in their order, round after round, instead of shuffled each round.
    pub in_order: bool,
    /// Time between a restart and the next kill, drawn between these bounds.
    pub calm: (Duration, Duration),
    /// Time a killed component stays down before `./stack up`, drawn between these bounds.
    pub down: (Duration, Duration),
    /// How long to wait, after the load stops, for every order to be decided (the order
    /// service's final deadline, and some).
    pub settle: Duration,
}

/// The native stack under test, driven through its own script (`./stack kill`, `./stack up`).
#[derive(Debug, Clone)]
pub struct Stack {
    /// The `stack` script.
    pub script: PathBuf,
    /// Extra environment for the script; the rest is inherited.
    pub env: Vec<(String, String)>,
    /// Its state directory (`STACK_DIR`).
    pub dir: PathBuf,
    /// PostgreSQL's port (`STACK_PG_PORT`).
    pub pg_port: u16,
    /// nats-server's monitoring port (`STACK_NATS_MONITOR_PORT`).
    pub nats_monitor_port: u16,
    /// Replicas per service (`STACK_REPLICAS`, 1 unless set, as in the script; `./stack chaos`
    /// sets 2; on several hosts, one a host).
    pub replicas: u16,
    /// Hosts (`STACK_HOSTS`): on several, each runs a NATS node and a replica of each service.
    pub hosts: u16,
}

impl Stack {
    /// The stack `script` runs with the settings of this process's environment (as `./stack
    /// chaos` sets them), with `env` on top.
    pub fn new(script: &Path, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let setting = |name: &str| {
            env.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(name).ok())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str, default: u16| -> anyhow::Result<u16> {
            setting(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| anyhow::anyhow!("{name}={v} is not a number"))
            })
        };
        let root = script.parent().unwrap_or(Path::new("."));
        Ok(Self {
            dir: setting("STACK_DIR").map_or_else(|| root.join(".stack"), PathBuf::from),
            pg_port: number("STACK_PG_PORT", 5433)?,
            nats_monitor_port: number("STACK_NATS_MONITOR_PORT", 8222)?,
            replicas: match number("STACK_HOSTS", 1)? {
                1 => number("STACK_REPLICAS", 1)?,
                hosts => hosts,
            },
            hosts: number("STACK_HOSTS", 1)?,
            script: script.to_owned(),
            env,
        })
    }

    /// Runs `./stack <args>`; fails with its output when it fails.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = tokio::process::Command::new(&self.script)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .await?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        anyhow::ensure!(output.status.success(), "./stack {args:?} failed:\n{text}");
        Ok(text)
    }

    /// A secret the script generated.
    fn secret(&self, name: &str) -> anyhow::Result<String> {
        let path = self.dir.join("secrets").join(name);
        Ok(std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            .trim()
            .to_owned())
    }

    /// The URL of `service`'s database, as its own role: where `./stack` puts it (`pg_servers`),
    /// one server for all on one host, one server per service on the database host after the
    /// hosts.
    fn database_url(&self, service: &str) -> anyhow::Result<String> {
        let password = self.secret(&format!("{service}_db_password"))?;
        let address = if self.hosts > 1 {
            let index = ["user", "product", "order"]
                .iter()
                .position(|s| *s == service)
                .ok_or_else(|| anyhow::anyhow!("no service {service}"))?;
            format!(
                "{}:{}",
                self.host_addr(self.hosts + 1),
                self.pg_port + u16::try_from(index)?
            )
        } else {
            format!("127.0.0.1:{}", self.pg_port)
        };
        Ok(format!(
            "postgres://{service}_svc:{password}@{address}/{service}_db"
        ))
    }

    /// Host `n`'s address: 127.0.0.1 on one host, 127.0.0.(n+1) on several.
    fn host_addr(&self, n: u16) -> String {
        if self.hosts > 1 {
            format!("127.0.0.{}", n + 1)
        } else {
            "127.0.0.1".to_owned()
        }
    }

    /// Every NATS node's log, as `./stack` names them.
    fn nats_logs(&self) -> Vec<PathBuf> {
        if self.hosts > 1 {
            (1..=self.hosts)
                .map(|n| self.dir.join(format!("logs/nats-{n}.log")))
                .collect()
        } else {
            vec![self.dir.join("logs/nats.log")]
        }
    }
}

/// What a chaos run saw and concluded.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The seed, to run it again.
    pub seed: u64,
    /// Seconds of load and kills.
    pub seconds: f64,
    /// What the clients did and were answered.
    pub clients: clients::Tally,
    /// Each kill.
    pub kills: Vec<faults::Kill>,
    /// Orders in the database once quiet, by state (and reason).
    pub orders: std::collections::BTreeMap<String, u64>,
    /// The guarantees, checked.
    pub checks: Vec<Check>,
}

impl Report {
    /// True when every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }

    /// The report for people.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let t = &self.clients;
        let _ = writeln!(out, "chaos run, seed {}, {:.0} s", self.seed, self.seconds);
        let _ = writeln!(
            out,
            "  orders attempted {} (requests {}), answered 200: {}, 202: {}, 404: {}, 409: {}",
            t.orders, t.requests, t.ok, t.accepted, t.not_found, t.conflict
        );
        let _ = writeln!(
            out,
            "  answered 5xx {} (of which 503: {}), unanswered {} (connect {}, io {}, timeout {}), gave up {}, other {}",
            t.server_errors,
            t.unavailable,
            t.unanswered(),
            t.connect,
            t.io,
            t.timeout,
            t.gave_up,
            t.other
        );
        let states: Vec<String> = self
            .orders
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        let _ = writeln!(out, "  in the database: {}", states.join(", "));
        let mut by_kind = std::collections::BTreeMap::<&str, usize>::new();
        for kill in &self.kills {
            *by_kind.entry(kill.kind.name()).or_default() += 1;
        }
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "  kills {}: {}", self.kills.len(), kinds.join(", "));
        for check in &self.checks {
            let mark = if check.passed { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "  {mark} {}: {}", check.what, check.detail);
        }
        out
    }
}

/// Runs the plan against `stack`, whose Nginx `ctx` talks to. Resets and seeds the data first
/// (it needs the admin token).
pub async fn run(ctx: &Ctx, stack: &Stack, plan: &Plan) -> anyhow::Result<Report> {
    anyhow::ensure!(
        ctx.admin_token.is_some(),
        "chaos resets the data first: it needs the admin token"
    );
    crate::workload::fresh_start(ctx).await?;
    crate::workload::prepare(ctx, 1..plan.users + 1, 1..plan.products + 1, plan.stock).await?;
    let before = verify::Before {
        nats_logs: stack
            .nats_logs()
            .iter()
            .map(|log| faults::LogMark::new(log))
            .collect(),
        dead_letters: verify::dead_letters(stack).await?,
    };

    let started = Instant::now();
    let load = clients::Load::start(ctx, plan);
    let kills = faults::inject(stack, plan).await;
    let ledger = load.finish().await;
    let seconds = started.elapsed().as_secs_f64();
    let kills = kills?;
    // Whatever the last kill was, everything runs again before the checks.
    stack.run(&["up"]).await?;

    let (orders, checks) = verify::run(ctx, stack, plan, &ledger, &before).await?;
    Ok(Report {
        seed: plan.seed,
        seconds,
        clients: ledger.summary(),
        kills,
        orders,
        checks,
    })
}

/// A small deterministic generator (splitmix64 over a counter), so a seed names a run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub fn draw(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        crate::workload::scramble(self.0)
    }

    /// A duration between the bounds.
    pub fn between(&mut self, (low, high): (Duration, Duration)) -> Duration {
        let span = high.saturating_sub(low).as_millis().max(1);
        let offset = u64::try_from(u128::from(self.draw()) % span).unwrap_or(0);
        low + Duration::from_millis(offset)
    }
}
