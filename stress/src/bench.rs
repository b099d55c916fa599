//! `stress bench`: the standard benchmark set, written to `BENCHMARKS.md`. Each workload runs at
//! saturation (closed loop) and at a fixed offered rate of 80 % of the saturated throughput
//! (open loop), through Nginx and straight to one replica of each service; every configuration
//! runs several times and the median is reported, with the command that reproduces it.

use std::{fmt::Write, path::Path};

use crate::{
    cli::{Global, Workload},
    describe,
    report::{Summary, group, millis},
    run_workload, shape,
    workload::{Ctx, mix::Blend},
};

/// The workloads of the set, with the arguments that reproduce them.
fn set() -> Vec<(Workload, &'static str)> {
    vec![
        (Workload::Read { products: 1000 }, "read --products 1000"),
        (
            Workload::Seed {
                ids: 2000,
                first_id: 1,
            },
            "seed --ids 2000",
        ),
        (
            Workload::Mix {
                users: 1000,
                products: 1000,
                mix: Blend::default(),
            },
            "mix",
        ),
        (
            Workload::Orders {
                users: 100,
                products: 3,
                stock: 100_000_000,
                quantity: 1,
            },
            "orders --stock 100000000",
        ),
    ]
}

/// One table row: the median of several runs.
struct Row {
    workload: String,
    target: &'static str,
    load: String,
    throughput: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    errors: u64,
    command: String,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn row(
    workload: &str,
    target: &'static str,
    load: String,
    runs: &[Summary],
    command: String,
) -> Row {
    let pick = |f: fn(&Summary) -> f64| median(runs.iter().map(f).collect());
    Row {
        workload: workload.to_owned(),
        target,
        load,
        throughput: pick(|s| s.throughput),
        p50: pick(|s| s.latency_ms.p50),
        p90: pick(|s| s.latency_ms.p90),
        p99: pick(|s| s.latency_ms.p99),
        p999: pick(|s| s.latency_ms.p999),
        errors: runs.iter().map(Summary::errors).sum(),
        command,
    }
}

/// Runs the set and writes the report to `out`.
pub async fn run(
    ctx: &Ctx,
    global: &Global,
    out: &Path,
    runs: usize,
    versions: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        global.direct_user.is_some(),
        "bench compares Nginx with direct access: pass --direct-user, --direct-product and --direct-order"
    );
    let runs = runs.max(1);
    let direct = format!(
        "--direct-user {} --direct-product {} --direct-order {}",
        global.direct_user.clone().unwrap_or_default(),
        global.direct_product.clone().unwrap_or_default(),
        global.direct_order.clone().unwrap_or_default()
    );
    let through = Ctx {
        targets: crate::client::Targets::through(&global.url)?,
        ..ctx.clone()
    };
    let mut rows = Vec::new();
    for (workload, args) in set() {
        for (target, context, flags) in [
            ("nginx", &through, String::new()),
            ("direct", ctx, format!("{direct} ")),
        ] {
            let saturation = shape(global);
            let mut saturated = Vec::new();
            for run in 1..=runs {
                eprintln!("bench: {args} via {target} at saturation, run {run}/{runs}");
                saturated.push(
                    run_workload(context, &saturation, &workload, describe(&saturation)).await?,
                );
            }
            let base = format!(
                "stress --url {} {flags}-c {} -d {}s --warmup {}s",
                global.url,
                saturation.connections,
                saturation.duration.map_or(0, |d| d.as_secs()),
                saturation.warmup.as_secs()
            );
            let name = saturated[0].workload.clone();
            let peak = row(
                &name,
                target,
                "saturation".into(),
                &saturated,
                format!("{base} {args}"),
            );
            let rate = (peak.throughput * 0.8).round().max(1.0);
            let offered = crate::engine::Shape {
                rate: Some(rate),
                connections: saturation.connections * 2,
                ..saturation.clone()
            };
            let mut paced = Vec::new();
            for run in 1..=runs {
                eprintln!("bench: {args} via {target} at {rate} req/s, run {run}/{runs}");
                paced.push(run_workload(context, &offered, &workload, describe(&offered)).await?);
            }
            let command = format!("{base} -c {} --rate {rate} {args}", offered.connections);
            rows.push(peak);
            rows.push(row(
                &name,
                target,
                format!("{} req/s (80 %)", group(rate as u64)),
                &paced,
                command,
            ));
        }
    }
    // Hand-written notes (from a `## Notes` heading on) survive a new run.
    let notes = std::fs::read_to_string(out)
        .ok()
        .and_then(|old| old.find("\n## Notes").map(|at| old[at..].to_owned()))
        .unwrap_or_default();
    std::fs::write(out, render(&rows, runs, global, versions) + &notes)?;
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}

fn render(rows: &[Row], runs: usize, global: &Global, versions: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `./stack bench` (`stress bench`); every figure is the median of {runs} runs."
    );
    let _ = writeln!(
        md,
        "Saturation is a closed loop of {} keep-alive connections; the paced rows offer 80 % of",
        global.connections
    );
    let _ = writeln!(
        md,
        "the saturated throughput in an open loop (latency counted from each request's intended send"
    );
    let _ = writeln!(
        md,
        "time, or from when it was sent if that was earlier, so stalls show in the tail). Each run"
    );
    let _ = writeln!(
        md,
        "measures {} s after a {} s warm-up, on data reset and seeded before it. `direct` sends each",
        global.duration.as_secs(),
        global.warmup.as_secs()
    );
    let _ = writeln!(
        md,
        "path straight to one replica of its service; the ratio of the two is what Nginx costs. The"
    );
    let _ = writeln!(md, "load generator runs on the same machine.\n");
    let _ = writeln!(md, "## Machine\n\n{}", machine(versions));
    let _ = writeln!(md, "## Results\n");
    let _ = writeln!(
        md,
        "| workload | via | load | throughput (req/s) | p50 | p90 | p99 | p99.9 | errors |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.target,
            r.load,
            group(r.throughput.round() as u64),
            millis(r.p50),
            millis(r.p90),
            millis(r.p99),
            millis(r.p999),
            r.errors
        );
    }
    let _ = writeln!(md, "\n## What Nginx costs\n");
    let _ = writeln!(
        md,
        "| workload | via Nginx | direct | ratio |\n| --- | ---: | ---: | ---: |"
    );
    for pair in rows.chunks(4) {
        if let [nginx, _, direct, _] = pair {
            let ratio = if direct.throughput > 0.0 {
                nginx.throughput / direct.throughput
            } else {
                0.0
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {ratio:.2} |",
                nginx.workload,
                group(nginx.throughput as u64),
                group(direct.throughput as u64)
            );
        }
    }
    let _ = writeln!(
        md,
        "\n## Commands\n\nEach row, reproduced (against `./stack up`, replicas on their default ports):\n\n```sh"
    );
    for r in rows {
        let _ = writeln!(md, "{}", r.command);
    }
    let _ = writeln!(md, "```");
    md
}

/// CPU, cores, memory, kernel and OS of this machine, and the server versions given.
fn machine(versions: &str) -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_default();
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let mut text =
        format!("- CPU: {cpu}, {cores} cores\n- memory: {memory}\n- OS: {os}, Linux {kernel}\n");
    if !versions.is_empty() {
        let _ = writeln!(text, "- servers: {versions}");
    }
    text
}
