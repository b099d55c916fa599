//! The product service process: read the configuration, bind, run until SIGTERM; or, as
//! `product healthcheck`, ask a running one whether it is ready.

fn main() -> anyhow::Result<()> {
    kit::serve::process(
        "product",
        product::Config::from_env(),
        |c| &c.common,
        product::run,
    )
}
