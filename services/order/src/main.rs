//! The order service process: read the configuration, bind, run until SIGTERM.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kit::telemetry::init();
    let config = order::Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.common.http_addr)
        .await
        .with_context(|| format!("binding {}", config.common.http_addr))?;
    order::run(config, listener, kit::serve::on_signal()).await
}
