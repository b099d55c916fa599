//! Child servers under a guardian, and finding the programs to run.

use std::{
    fs::File,
    io::Write,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Runs the server in the background, waits for its stdin (our pipe) to close, then signals it,
/// waits for it and removes its directory. The pipe closes when the test process goes away.
const GUARDIAN: &str = r#"dir="$1"; sig="$2"; shift 2
"$@" </dev/null & child=$!
read -r _ignored
kill -s "$sig" "$child" 2>/dev/null
wait "$child"
if [ -n "$dir" ]; then rm -rf "$dir"; fi"#;

/// A server process under a guardian; dropping it stops the server.
pub struct Guarded {
    guardian: Child,
}

impl Guarded {
    /// Starts `program args` with output appended to `log`. `stop_signal` is what stops it
    /// (`TERM`, or `INT` for PostgreSQL's fast shutdown); `cleanup` is removed afterwards.
    pub fn spawn(
        command: &[String],
        log: &Path,
        stop_signal: &str,
        cleanup: Option<&Path>,
    ) -> Self {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("opening server log");
        let guardian = Command::new("sh")
            .arg("-c")
            .arg(GUARDIAN)
            .arg("guardian")
            .arg(cleanup.map(Path::as_os_str).unwrap_or_default())
            .arg(stop_signal)
            .args(command)
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().expect("cloning log handle"))
            .stderr(log_file)
            .spawn()
            .expect("starting guardian shell");
        Self { guardian }
    }

    /// Stops the server and waits until it has exited.
    pub fn stop(mut self) {
        self.stop_in_place();
    }

    fn stop_in_place(&mut self) {
        if let Some(mut stdin) = self.guardian.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.guardian.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop_in_place();
    }
}

/// True when this process runs as root (uid 0), which PostgreSQL refuses.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|meta| meta.uid() == 0)
        .unwrap_or(false)
}

/// The command prefix that runs a program as the `postgres` user when we are root.
pub fn as_postgres_user() -> Vec<String> {
    if is_root() {
        [
            "setpriv",
            "--reuid=postgres",
            "--regid=postgres",
            "--clear-groups",
            "--",
        ]
        .map(String::from)
        .to_vec()
    } else {
        Vec::new()
    }
}

/// Gives `path` to the `postgres` user when we are root.
pub fn give_to_postgres_user(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(path)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "chown postgres {path:?} failed: is PostgreSQL installed?"
        );
    }
}

/// Finds `program` on PATH or in the given extra directories.
pub fn find_program(program: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().cloned())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Runs a command to completion, panicking with its output when it fails.
pub fn run(command: &[String]) -> String {
    let output = Command::new(&command[0])
        .args(&command[1..])
        .output()
        .expect("running command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `ready` every 20 ms until it holds, panicking with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what} not ready after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
