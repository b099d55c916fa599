//! The order service process: read the configuration, bind, run until SIGTERM; or, as
//! `order healthcheck`, ask a running one whether it is ready.

fn main() -> anyhow::Result<()> {
    kit::serve::process(
        "order",
        order::Config::from_env(),
        |c| &c.common,
        order::run,
    )
}
