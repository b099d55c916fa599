//! The stress tool: drives the system through its REST contract and reports throughput and
//! latency honestly (see `engine` on coordinated omission), replays workload files, and runs
//! the benchmark set behind `BENCHMARKS.md`.

pub mod bench;
pub mod chaos;
pub mod cli;
pub mod client;
pub mod engine;
pub mod plot;
pub mod report;
pub mod workload;

use std::{io::IsTerminal, path::Path};

use cli::{Cli, Global, Workload};
use client::Targets;
use engine::Shape;
use report::Summary;
use workload::{Ctx, orders};

/// Runs the command line; returns whether every check held.
pub async fn run(cli: Cli) -> anyhow::Result<bool> {
    let ctx = context(&cli.global)?;
    if let Workload::Bench {
        out,
        runs,
        versions,
    } = &cli.workload
    {
        bench::run(&ctx, &cli.global, out, *runs, versions).await?;
        return Ok(true);
    }
    if let Workload::Chaos { .. } = &cli.workload {
        let (stack, plan) = chaos_plan(&cli.global, &cli.workload)?;
        eprintln!("stress: chaos run, seed {}", plan.seed);
        let report = chaos::run(&ctx, &stack, &plan).await?;
        if cli.global.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.table());
        }
        return Ok(report.passed());
    }
    let shape = shape(&cli.global);
    let finite = matches!(
        cli.workload,
        Workload::Seed { .. } | Workload::Replay { .. }
    );
    let load = match &cli.workload {
        Workload::Replay { .. } => describe(&Shape {
            connections: 1,
            duration: None,
            requests: None,
            ..shape.clone()
        }),
        _ if finite => describe(&Shape {
            duration: None,
            requests: None,
            ..shape.clone()
        }),
        _ => describe(&shape),
    };
    let summary = run_workload(&ctx, &shape, &cli.workload, load).await?;
    if cli.global.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.table());
    }
    if let Some(path) = &cli.global.plot {
        plot::draw(&summary, path)?;
    }
    Ok(summary.checks_passed())
}

/// Runs one workload and returns its summary (and draws its plot when asked).
pub async fn run_workload(
    ctx: &Ctx,
    shape: &Shape,
    workload: &Workload,
    load: String,
) -> anyhow::Result<Summary> {
    match workload {
        Workload::Seed { ids, first_id } => {
            workload::seed::run(ctx, shape, *first_id, *ids, load).await
        }
        Workload::Mix {
            users,
            products,
            mix,
        } => workload::mix::run(ctx, shape, *users, *products, *mix, load).await,
        Workload::Orders {
            users,
            products,
            stock,
            quantity,
        } => {
            let params = orders::Params {
                users: *users,
                products: *products,
                stock: *stock,
                quantity: *quantity,
            };
            orders::run(ctx, shape, params, load).await
        }
        Workload::Read { products } => workload::mix::run_reads(ctx, shape, *products, load).await,
        Workload::Replay { file, verbose } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            workload::replay::run(ctx, shape, workload::replay::parse(&text), *verbose, load).await
        }
        Workload::Bench { .. } | Workload::Chaos { .. } => {
            anyhow::bail!("bench and chaos are not single workloads")
        }
    }
}

/// The stack and the plan of `stress chaos`.
fn chaos_plan(global: &Global, workload: &Workload) -> anyhow::Result<(chaos::Stack, chaos::Plan)> {
    let Workload::Chaos {
        stack,
        seed,
        users,
        products,
        stock,
        kill,
        in_order,
        calm,
        down,
        settle,
    } = workload
    else {
        anyhow::bail!("not a chaos run");
    };
    let kinds = kill
        .iter()
        .filter(|name| !name.is_empty())
        .map(|name| {
            chaos::Kind::parse(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "--kill {name}? user, product, order, nats, postgres, nginx, or on several hosts host, wipe, leader"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stack = chaos::Stack::new(stack, Vec::new())?;
    if let Some(kind) = kinds.iter().find(|kind| kind.needs_hosts()) {
        anyhow::ensure!(
            stack.hosts > 1,
            "--kill {}: only on a stack of several hosts (STACK_HOSTS=3)",
            kind.name()
        );
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            % 1_000_000
    });
    let plan = chaos::Plan {
        seed,
        duration: global.duration,
        clients: global.connections,
        users: *users,
        products: *products,
        stock: *stock,
        kinds,
        in_order: *in_order,
        calm: (*calm / 5, *calm),
        down: (std::time::Duration::from_millis(100), *down),
        settle: *settle,
    };
    Ok((stack, plan))
}

/// Where requests go, the admin token, and whether to show progress.
pub fn context(global: &Global) -> anyhow::Result<Ctx> {
    let targets = match (
        &global.direct_user,
        &global.direct_product,
        &global.direct_order,
    ) {
        (Some(user), Some(product), Some(order)) => {
            Targets::direct(&global.url, user, product, order)?
        }
        _ => Targets::through(&global.url)?,
    };
    let admin_token = global.admin_token.clone().or_else(|| {
        let dir = std::env::var_os("STACK_DIR").unwrap_or_else(|| ".stack".into());
        let file = Path::new(&dir).join("secrets/admin_token");
        std::fs::read_to_string(file)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    });
    Ok(Ctx {
        targets,
        admin_token,
        timeout: global.timeout,
        progress: !global.json && std::io::stderr().is_terminal(),
    })
}

/// The load shape the options ask for.
pub fn shape(global: &Global) -> Shape {
    let (duration, warmup) = match global.requests {
        Some(_) => (None, std::time::Duration::ZERO),
        None => (Some(global.duration), global.warmup),
    };
    Shape {
        connections: global.connections,
        rate: global.rate,
        duration,
        requests: global.requests,
        warmup,
        timeout: global.timeout,
        keep_responses: false,
    }
}

/// `closed loop, 32 connections, 10 s after 2 s warm-up`.
pub fn describe(shape: &Shape) -> String {
    let mode = match shape.rate {
        Some(rate) => format!("open loop at {rate:.0} req/s"),
        None => "closed loop".to_owned(),
    };
    let length = match (shape.duration, shape.requests) {
        (_, Some(n)) => format!("{n} requests"),
        (Some(d), None) => format!(
            "{:.0} s after {:.0} s warm-up",
            d.as_secs_f64(),
            shape.warmup.as_secs_f64()
        ),
        (None, None) => "until done".to_owned(),
    };
    format!("{mode}, {} connections, {length}", shape.connections)
}
