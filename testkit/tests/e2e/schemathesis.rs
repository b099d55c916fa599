//! schemathesis, the standard OpenAPI fuzzer, holds the stack to `api/openapi.json` with every
//! check it has: through Nginx for the public paths (admin ones with the token, but for the
//! shutdown, which would end the run), and against
//! every replica for the paths each replica serves on its own (`/health`, `/ready`, `/metrics`).
//!
//! `./stack test` installs it (a pinned version, from PyPI) and names it in `SCHEMATHESIS`.
//! Settings that the command line cannot say are in `api/schemathesis.toml`.

use std::{path::PathBuf, process::Command};

use testkit::stack::Stack;

/// The schemathesis program: `SCHEMATHESIS`, or `schemathesis` on the PATH.
fn program() -> PathBuf {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("schemathesis"))
        .find(|candidate| candidate.is_file())
        .expect("schemathesis not found: run ./stack test, which installs it, or set SCHEMATHESIS")
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `schemathesis run` with every check and `args`, panicking with its report when any
/// check fails. `SCHEMATHESIS_SEED` repeats a run (each report prints its seed).
fn run(what: &str, args: &[&str]) {
    let mut command = Command::new(program());
    command
        .current_dir(repository())
        .args([
            "--no-color",
            "--config-file",
            "api/schemathesis.toml",
            "run",
        ])
        .args(["--checks", "all"])
        .args(args);
    if let Ok(seed) = std::env::var("SCHEMATHESIS_SEED") {
        command.args(["--seed", &seed]);
    }
    let output = command.output().expect("running schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found {what} disagreeing with api/openapi.json (each failure's crash file, \
         for `schemathesis replay`, is in target/schemathesis-cache/crashes):\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_server_and_its_openapi_document_agree_on_every_case_schemathesis_tries() {
    let stack = Stack::up();
    let token = format!("Authorization: Bearer {}", stack.secret("admin_token"));
    let served = format!("{}/openapi.json", stack.url());

    run(
        "the public paths",
        &[
            &served,
            "-H",
            &token,
            "--exclude-path-regex",
            "^/(health|ready|metrics)$",
            "--exclude-path",
            "/admin/shutdown",
        ],
    );
    // Without the token: a request schemathesis takes for valid would stop the stack. Its
    // answer with the token is checked by `openapi`, last of its requests.
    run(
        "POST /admin/shutdown without the token",
        &[
            &served,
            "--include-path",
            "/admin/shutdown",
            "--phases",
            "examples,coverage,fuzzing",
        ],
    );
    let stopped: Vec<_> = stack
        .readiness()
        .await
        .into_iter()
        .filter(|(_, status, _)| *status != 200)
        .collect();
    assert!(stopped.is_empty(), "a refused shutdown stopped {stopped:?}");

    for service in ["user", "product", "order"] {
        for replica in 1..=2 {
            let url = format!("http://{}", stack.replica(service, replica));
            run(
                &format!("{service} replica {replica}"),
                &[
                    "api/openapi.json",
                    "--url",
                    &url,
                    "--include-path-regex",
                    "^/(health|ready|metrics)$",
                    "--phases",
                    "examples,coverage,fuzzing",
                ],
            );
        }
    }
}
