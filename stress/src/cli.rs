//! The command line.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::workload::mix::Blend;

/// Load generator and workload replay for the commerce system.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub workload: Workload,
}

/// Options every workload takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Where to send requests (Nginx).
    #[arg(
        long,
        env = "STRESS_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Send /user straight to this replica (with --direct-product and --direct-order): no Nginx.
    #[arg(long, global = true, requires_all = ["direct_product", "direct_order"])]
    pub direct_user: Option<String>,
    /// Send /product straight to this replica.
    #[arg(long, global = true, requires_all = ["direct_user", "direct_order"])]
    pub direct_product: Option<String>,
    /// Send /order and /user/purchased straight to this replica.
    #[arg(long, global = true, requires_all = ["direct_user", "direct_product"])]
    pub direct_order: Option<String>,
    /// Concurrent keep-alive connections.
    #[arg(short, long, default_value_t = 32, global = true)]
    pub connections: usize,
    /// Offered load in requests per second (open loop); without it, a closed loop.
    #[arg(long, global = true)]
    pub rate: Option<f64>,
    /// How long to measure, after the warm-up (e.g. 30s, 2m, 500ms).
    #[arg(short, long, value_parser = parse_duration, default_value = "10s", global = true)]
    pub duration: Duration,
    /// Send this many requests instead of running for a duration.
    #[arg(short = 'n', long, global = true)]
    pub requests: Option<u64>,
    /// Load applied first and not recorded.
    #[arg(long, value_parser = parse_duration, default_value = "2s", global = true)]
    pub warmup: Duration,
    /// Per request.
    #[arg(long, value_parser = parse_duration, default_value = "10s", global = true)]
    pub timeout: Duration,
    /// The operator token for resets and replayed shutdowns; defaults to ADMIN_TOKEN, then to
    /// the token ./stack generated (.stack/secrets/admin_token).
    #[arg(long, env = "ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Print the summary as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Draw throughput and latency over time and the latency percentile curve into this SVG.
    #[arg(long, global = true)]
    pub plot: Option<PathBuf>,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Workload {
    /// The original project's request list, in its order (10 per id, 40 % reads).
    Seed {
        /// Ids to run through (10 requests each).
        #[arg(long, default_value_t = 200)]
        ids: i32,
        /// First id.
        #[arg(long, default_value_t = 1)]
        first_id: i32,
    },
    /// A blend of reads, creates, updates, deletes and orders over seeded data.
    Mix {
        /// Users seeded.
        #[arg(long, default_value_t = 1000)]
        users: i32,
        /// Products seeded.
        #[arg(long, default_value_t = 1000)]
        products: i32,
        /// Weights, e.g. read=40,create=15,update=25,delete=5,order=15.
        #[arg(long, default_value_t = Blend::default())]
        mix: Blend,
    },
    /// Orders concentrated on a few products; checks stock conservation afterwards.
    Orders {
        /// Buyers.
        #[arg(long, default_value_t = 100)]
        users: i32,
        /// Products ordered.
        #[arg(long, default_value_t = 3)]
        products: i32,
        /// Initial stock of each.
        #[arg(long, default_value_t = 1_000_000)]
        stock: i32,
        /// Units per order.
        #[arg(long, default_value_t = 1)]
        quantity: i32,
    },
    /// Reads of products only.
    Read {
        /// Products seeded.
        #[arg(long, default_value_t = 1000)]
        products: i32,
    },
    /// Replays a workload file of the assignment (see the README).
    Replay {
        /// The file.
        file: PathBuf,
        /// Print every command with its answer.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Fault injection: orders with Idempotency-Keys on a few products while components of the
    /// stack are killed and restarted, then the guarantees checked (-c clients, -d duration).
    Chaos {
        /// The `stack` script that kills and restarts components (its STACK_* settings come
        /// from the environment, as `./stack chaos` sets them).
        #[arg(long, default_value = "./stack")]
        stack: PathBuf,
        /// Seeds the orders and the kills; random when not given (it is printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Buyers.
        #[arg(long, default_value_t = 20)]
        users: i32,
        /// Contended products.
        #[arg(long, default_value_t = 3)]
        products: i32,
        /// Initial stock of each: enough for about two minutes of orders on this machine, so
        /// that the last orders of such a run find none left.
        #[arg(long, default_value_t = 25_000)]
        stock: i32,
        /// What to kill: user, product, order (a random replica), nats (on several hosts, a
        /// random node), postgres, nginx; on several hosts also host (a whole host), wipe (a
        /// host and its JetStream store) and leader (the node leading ORDER_SAGA).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "user,product,order,nats,postgres,nginx"
        )]
        kill: Vec<String>,
        /// Kill in the order --kill names them, round after round, instead of an order the
        /// seed shuffles each round.
        #[arg(long)]
        in_order: bool,
        /// Longest calm between a restart and the next kill (the shortest is a fifth of it).
        #[arg(long, value_parser = parse_duration, default_value = "4s")]
        calm: Duration,
        /// Longest time a killed component stays down before it is restarted.
        #[arg(long, value_parser = parse_duration, default_value = "2s")]
        down: Duration,
        /// How long to wait for every order to be decided once the load stops (beyond the
        /// order service's final deadline, ORDER_REJECT_AFTER_MS).
        #[arg(long, value_parser = parse_duration, default_value = "90s")]
        settle: Duration,
    },
    /// Runs the standard benchmark set and writes it as Markdown (needs --direct-*).
    Bench {
        /// Where to write.
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        /// Runs per configuration; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// A line naming the versions of the servers, for the record.
        #[arg(long, default_value = "")]
        versions: String,
    },
}

/// `10`, `10s`, `500ms`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unit must be ms, s or m")),
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_or_without_a_unit() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        for bad in ["", "x", "5h", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_command_line_parses_global_options_after_the_workload() {
        let cli = Cli::try_parse_from([
            "stress",
            "orders",
            "--products",
            "2",
            "--rate",
            "500",
            "-c",
            "8",
        ])
        .unwrap();
        assert_eq!(cli.global.rate, Some(500.0));
        assert_eq!(cli.global.connections, 8);
        assert!(matches!(cli.workload, Workload::Orders { products: 2, .. }));
        assert!(
            Cli::try_parse_from(["stress", "read", "--direct-user", "http://x:1"]).is_err(),
            "all three or none"
        );
    }
}
