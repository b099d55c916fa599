//! One throwaway PostgreSQL server per test process, and a fresh database per test.

use std::{
    path::PathBuf,
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::process::{
    Guarded, as_postgres_user, find_program, give_to_postgres_user, run, wait_until,
};

/// A PostgreSQL server in a temporary directory, listening on 127.0.0.1 with trust auth.
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    next_database: AtomicUsize,
    _server: Guarded,
}

impl Postgres {
    /// The server shared by every test in this process, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("testkit-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        give_to_postgres_user(&dir);
        let data = dir.join("data");
        let port = crate::free_port();
        let as_pg = as_postgres_user();
        let exe = |name: &str| bin.join(name).display().to_string();

        let mut initdb = as_pg.clone();
        initdb.extend([exe("initdb"), "-D".into(), data.display().to_string()]);
        initdb.extend(
            [
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
            .map(String::from),
        );
        run(&initdb);

        let mut postgres = as_pg;
        postgres.extend([
            exe("postgres"),
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
        ]);
        postgres.extend(["-k".into(), dir.display().to_string()]);
        // Durability is not what these tests check; speed is welcome.
        for setting in [
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=400",
        ] {
            postgres.extend(["-c".into(), setting.into()]);
        }
        let server = Guarded::spawn(&postgres, &dir.join("postgres.log"), "INT", Some(&dir));
        let isready = exe("pg_isready");
        wait_until("postgres", Duration::from_secs(30), || {
            Command::new(&isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        });
        Self {
            port,
            bin,
            next_database: AtomicUsize::new(0),
            _server: server,
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `sql` in the database at `url` (as that URL's user) and returns psql's unaligned,
    /// tuples-only output: one line per row, columns separated by `|`.
    pub fn query(&self, url: &str, sql: &str) -> String {
        let psql = self.bin.join("psql").display().to_string();
        let command = [
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ];
        run(&std::iter::once(psql)
            .chain(command.map(String::from))
            .collect::<Vec<_>>())
        .trim()
        .to_owned()
    }

    /// Runs `sql` as the superuser in database `database`.
    pub fn execute(&self, database: &str, sql: &str) -> String {
        run(&[
            self.bin.join("psql").display().to_string(),
            "-X".into(),
            "-q".into(),
            "-t".into(),
            "-A".into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
            "-d".into(),
            database.into(),
            "-c".into(),
            sql.into(),
        ])
    }

    /// Creates an empty database and returns its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "test_{}",
            self.next_database.fetch_add(1, Ordering::Relaxed)
        );
        self.execute("postgres", &format!("create database {name}"));
        self.url(&name)
    }

    /// The superuser URL of `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// PostgreSQL's programs: `PG_BIN` if set, else the newest `/usr/lib/postgresql/*/bin`, else PATH.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            Some((
                entry.file_name().to_str()?.parse().ok()?,
                entry.path().join("bin"),
            ))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return dir;
    }
    find_program("initdb", &[])
        .and_then(|initdb| initdb.parent().map(PathBuf::from))
        .expect("PostgreSQL not found: run ./stack test, which installs it, or set PG_BIN")
}
