//! The native stack, started by the very script users run (`./stack up`), on free ports and
//! in a temporary directory, with the debug binaries the test run just built.

use std::{
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use tempfile::TempDir;

/// The services a stack runs.
const SERVICES: [&str; 3] = ["user", "product", "order"];

/// What `./stack` needs of the checkout it lies in.
const CHECKOUT: [&str; 4] = ["stack", "nginx", "nats", "api"];

/// A running stack; dropping it runs `./stack clean` (down, then its data deleted).
pub struct Stack {
    /// The state directory (`STACK_DIR`).
    dir: PathBuf,
    /// The checkout whose `stack` script runs it.
    checkout: PathBuf,
    /// Deleted on drop: the temporary state directory, or the private checkout holding it (its
    /// name also names a failed test's kept logs).
    temporary: TempDir,
    env: Vec<(String, String)>,
    nginx_port: u16,
    nats_port: u16,
    service_ports: Vec<(String, u16)>,
    /// `STACK_HOSTS`: on several, host N lies on 127.0.0.(N+1).
    hosts: u16,
}

impl Stack {
    /// Runs `./stack up` and returns once every replica is ready. Nginx's per-client rate limit
    /// is off: tests send much from one address.
    pub fn up() -> Self {
        Self::up_with(&[])
    }

    /// [`Stack::up`] with more `STACK_*` settings (or any environment the services read).
    pub fn up_with(settings: &[(&str, &str)]) -> Self {
        let temporary = tempfile::Builder::new()
            .prefix("testkit-stack-")
            .tempdir()
            .expect("temp dir");
        // The PostgreSQL server runs as the `postgres` user, who may then use it as it is.
        std::fs::set_permissions(temporary.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let dir = temporary.path().to_owned();
        Self::start(temporary, dir, repository(), settings)
    }

    /// `./stack up` run as a new user would: from a copy of the checkout in a folder only its
    /// owner may enter (mode 700, as `/root` or a `mktemp -d`), with the state directory in
    /// the checkout (the default `.stack/`).
    pub fn up_in_private_checkout() -> Self {
        let temporary = tempfile::Builder::new()
            .prefix("testkit-private-")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(temporary.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let checkout = temporary.path().join("commerce");
        let mut copy = Command::new("cp");
        copy.arg("-r")
            .args(CHECKOUT.map(|path| repository().join(path)))
            .arg(&checkout);
        std::fs::create_dir(&checkout).expect("checkout dir");
        assert!(
            copy.status().is_ok_and(|s| s.success()),
            "copying the checkout"
        );
        let dir = checkout.join(".stack");
        Self::start(temporary, dir, checkout, &[])
    }

    fn start(
        temporary: TempDir,
        dir: PathBuf,
        checkout: PathBuf,
        settings: &[(&str, &str)],
    ) -> Self {
        let mut ports = Ports::default();
        let nginx_port = ports.one();
        let nats_port = ports.one();
        let service_ports: Vec<(String, u16)> = SERVICES
            .iter()
            .map(|s| (s.to_string(), ports.pair()))
            .collect();
        let mut env = vec![
            ("STACK_DIR".to_owned(), dir.display().to_string()),
            ("STACK_BIN_DIR".to_owned(), binaries().display().to_string()),
            ("STACK_NGINX_PORT".to_owned(), nginx_port.to_string()),
            (
                "STACK_NGINX_STATUS_PORT".to_owned(),
                ports.one().to_string(),
            ),
            ("STACK_NATS_PORT".to_owned(), nats_port.to_string()),
            (
                "STACK_NATS_CLUSTER_PORT".to_owned(),
                ports.one().to_string(),
            ),
            (
                "STACK_NATS_MONITOR_PORT".to_owned(),
                ports.one().to_string(),
            ),
            ("STACK_PG_PORT".to_owned(), ports.one().to_string()),
            ("STACK_REPLICAS".to_owned(), "2".to_owned()),
            ("STACK_RATE_LIMIT".to_owned(), "off".to_owned()),
        ];
        for (name, value) in settings {
            env.retain(|(existing, _)| existing != name);
            env.push(((*name).to_owned(), (*value).to_owned()));
        }
        drop(ports);
        for (service, port) in &service_ports {
            env.push((
                format!("STACK_{}_PORT", service.to_uppercase()),
                port.to_string(),
            ));
        }
        let hosts = env
            .iter()
            .find(|(name, _)| name == "STACK_HOSTS")
            .map_or(1, |(_, hosts)| hosts.parse().expect("STACK_HOSTS"));
        let stack = Self {
            dir,
            checkout,
            temporary,
            env,
            nginx_port,
            nats_port,
            service_ports,
            hosts,
        };
        stack.run("up");
        stack
    }

    /// Runs `./stack <command>` with this stack's environment, panicking if it fails.
    pub fn run(&self, command: &str) -> String {
        self.run_with(&[command])
    }

    /// Runs `./stack <args...>` with this stack's environment, panicking if it fails.
    pub fn run_with(&self, args: &[&str]) -> String {
        let output = Command::new(self.script())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("running ./stack");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            // What the script printed names the replica that failed, with its log; the broker's
            // own log is often the rest of the story.
            let nats =
                std::fs::read_to_string(self.dir().join(format!("logs/{}.log", self.nats_log())))
                    .unwrap_or_default();
            let tail: Vec<&str> = nats.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "./stack {args:?} failed:\n{text}\nthe end of logs/nats.log:\n{}",
                tail.join("\n")
            );
        }
        text
    }

    /// Kills `component` (`postgres`, `nats`, `nginx`, `order-1`, ...) with SIGKILL, as a crash
    /// would; `run("up")` restarts it.
    pub fn kill(&self, component: &str) {
        self.run_with(&["kill", component]);
    }

    /// The public URL (Nginx).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.nginx_port)
    }

    /// Nginx's `stub_status` page, on its internal address.
    pub fn nginx_status_url(&self) -> String {
        let port = self
            .env
            .iter()
            .find(|(name, _)| name == "STACK_NGINX_STATUS_PORT")
            .map(|(_, port)| port.as_str())
            .unwrap_or("8081");
        format!("http://127.0.0.1:{port}/nginx_status")
    }

    /// The NATS URL (on several hosts, the first node's).
    pub fn nats_url(&self) -> String {
        format!("nats://{}:{}", self.host(1), self.nats_port)
    }

    /// Every NATS node's URL, comma-separated, as `NATS_URL` lists a cluster.
    pub fn nats_urls(&self) -> String {
        (1..=self.hosts)
            .map(|n| format!("nats://{}:{}", self.host(n), self.nats_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Host `n`'s address: 127.0.0.1 on one host, 127.0.0.(n+1) on several.
    pub fn host(&self, n: u16) -> String {
        if self.hosts > 1 {
            format!("127.0.0.{}", n + 1)
        } else {
            "127.0.0.1".to_owned()
        }
    }

    /// The name of the (first) NATS node's log.
    fn nats_log(&self) -> &'static str {
        if self.hosts > 1 { "nats-1" } else { "nats" }
    }

    /// A NATS client logged in as `admin`, the operators' user with no limits.
    pub async fn nats_admin(&self) -> async_nats::Client {
        self.nats_as("admin").await
    }

    /// A NATS client logged in as `user` (`user`, `product`, `order` or `admin`) with the
    /// password `./stack` generated for it.
    pub async fn nats_as(&self, user: &str) -> async_nats::Client {
        self.nats_options_as(user)
            .connect(self.nats_url())
            .await
            .expect("connect to the stack's NATS")
    }

    /// Connection options for NATS user `user`, with its password.
    pub fn nats_options_as(&self, user: &str) -> async_nats::ConnectOptions {
        let password = self.secret(&format!("nats_{user}_password"));
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password)
    }

    /// The URL with which service `role`'s database role (`<role>_svc`, with its password)
    /// connects to `database`: a service's name means its database (`<name>_db`), anything
    /// else is taken as a database name.
    pub fn database_url(&self, role: &str, database: &str) -> String {
        let database = if SERVICES.contains(&database) {
            format!("{database}_db")
        } else {
            database.to_owned()
        };
        let port = self.pg_port();
        let password = self.secret(&format!("{role}_db_password"));
        // On several hosts, each service's database has a server of its own on the database
        // host (after the hosts), at the port after the previous service's.
        let address = match SERVICES.iter().position(|s| format!("{s}_db") == database) {
            Some(index) if self.hosts > 1 => {
                format!("{}:{}", self.host(self.hosts + 1), port + index as u16)
            }
            _ => format!("127.0.0.1:{port}"),
        };
        format!("postgres://{role}_svc:{password}@{address}/{database}")
    }

    /// The port of the stack's PostgreSQL (on several hosts, the user service's server's).
    pub fn pg_port(&self) -> u16 {
        self.env
            .iter()
            .find(|(name, _)| name == "STACK_PG_PORT")
            .map(|(_, port)| port.parse().expect("a port"))
            .expect("the stack's PostgreSQL port")
    }

    /// A secret `./stack` generated (`.stack/secrets/<name>`).
    pub fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir().join("secrets").join(name))
            .unwrap_or_else(|error| panic!("secret {name}: {error}"))
            .trim()
            .to_owned()
    }

    /// The address of replica `replica` (1-based) of `service`.
    pub fn replica(&self, service: &str, replica: u16) -> String {
        let (_, base) = self
            .service_ports
            .iter()
            .find(|(s, _)| s == service)
            .expect("known service");
        format!("{}:{}", self.host(replica), base + replica - 1)
    }

    /// The `STACK_*` settings (and any other environment) this stack's script runs with.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The `stack` script.
    pub fn script(&self) -> PathBuf {
        self.checkout.join("stack")
    }

    /// Every replica's `/ready`, as (replica, status, body): `("order-2", 503, {...})`.
    pub async fn readiness(&self) -> Vec<(String, u16, serde_json::Value)> {
        let mut all = Vec::new();
        for (service, _) in &self.service_ports {
            for replica in 1..=self.hosts.max(2) {
                let http =
                    crate::http::Client::new(format!("http://{}", self.replica(service, replica)));
                let reply = http.get("/ready").await;
                all.push((format!("{service}-{replica}"), reply.status, reply.json));
            }
        }
        all
    }

    /// The last `lines` lines of `logs/<name>.log` (`order-1`, `nats`, ...), to explain a failure.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir().join(format!("logs/{name}.log")))
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().filter(|line| !line.starts_with(' ')).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Every ERROR line the services logged (each request that failed logs its cause chain),
    /// prefixed with its replica: what a test prints when a request failed it did not expect.
    pub fn errors(&self) -> String {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir().join("logs"))
            .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
            .unwrap_or_default();
        logs.sort();
        let mut errors = String::new();
        for log in logs {
            let name = log.file_stem().unwrap_or_default().to_string_lossy();
            if !SERVICES.iter().any(|service| name.starts_with(service)) {
                continue;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            for line in text.lines().filter(|line| line.contains(" ERROR ")) {
                errors.push_str(&format!("{name}: {line}\n"));
            }
        }
        errors
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // A failed test's logs outlive its stack, to read what the assertion could not print.
        if std::thread::panicking() {
            let kept = std::env::temp_dir().join(format!(
                "testkit-failed-{}",
                self.temporary
                    .path()
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            ));
            let copied = Command::new("cp")
                .arg("-r")
                .arg(self.dir.join("logs"))
                .arg(&kept)
                .status();
            if copied.is_ok_and(|status| status.success()) {
                eprintln!("the failed stack's logs: {}", kept.display());
            }
        }
        // `clean`, not just `down`: part of the state may live outside the temporary directory.
        let _ = Command::new(self.script())
            .arg("clean")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
    }
}

/// The repository's top folder.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lies in the repository")
        .to_owned()
}

/// The directory of this test run's binaries (the test executable lives in `<dir>/deps`), with
/// the services freshly built there: a test of one crate does not build the others' binaries,
/// and a stale one would test old code. Built once per test process; cheap when up to date.
fn binaries() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = Command::new(cargo);
            build.args([
                "build", "--quiet", "-p", "user", "-p", "product", "-p", "order",
            ]);
            if dir.ends_with("release") {
                build.arg("--release");
            }
            let status = build
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("running cargo build");
            assert!(status.success(), "building the services failed");
            for service in SERVICES {
                assert!(
                    dir.join(service).is_file(),
                    "no {service} binary in {dir:?}"
                );
            }
            dir
        })
        .clone()
}

/// Free ports, held open until every one is chosen so that no two choices collide.
#[derive(Default)]
struct Ports(Vec<TcpListener>);

impl Ports {
    fn one(&mut self) -> u16 {
        self.claim(0)
    }

    /// A port `p` with `p + 1` free too (a service's two replicas).
    fn pair(&mut self) -> u16 {
        self.claim(1)
    }

    fn claim(&mut self, then: u16) -> u16 {
        let listeners = crate::claim_ports(then);
        let port = listeners[0].local_addr().expect("local addr").port();
        self.0.extend(listeners);
        port
    }
}
