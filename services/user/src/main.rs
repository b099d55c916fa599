//! The user service process: read the configuration, bind, run until SIGTERM; or, as
//! `user healthcheck`, ask a running one whether it is ready.

fn main() -> anyhow::Result<()> {
    kit::serve::process("user", user::Config::from_env(), |c| &c.common, user::run)
}
