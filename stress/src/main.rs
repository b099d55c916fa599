//! `stress`: see `stress --help`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = stress::cli::Cli::parse();
    let plot = cli.global.plot.clone();
    let passed = stress::run(cli).await?;
    if let Some(path) = plot {
        eprintln!("stress: plot written to {}", path.display());
    }
    Ok(if passed {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
