//! The user service process: read the configuration, bind, run until SIGTERM; or, as
//! `user healthcheck`, ask a running one whether it is ready.

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let config = user::Config::from_env()?;
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return kit::health::probe(config.common.http_addr);
    }
    let telemetry = kit::telemetry::init("user");
    let outcome = tokio::runtime::Runtime::new()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.common.http_addr)
            .await
            .with_context(|| format!("binding {}", config.common.http_addr))?;
        user::run(config, listener, kit::serve::on_signal()).await
    });
    telemetry.shutdown();
    outcome
}
