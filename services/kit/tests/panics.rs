//! A panic outside any request or message ends a service process (so that its supervisor
//! restarts it); one inside a handler does not. Each case runs in a child process of its own,
//! this test binary started again on one of the ignored tests below.

use std::{
    os::unix::process::ExitStatusExt,
    process::{Command, Output},
    time::Duration,
};

/// SIGABRT's number on Linux: what `std::process::abort` raises.
const SIGABRT: i32 = 6;

/// Set in a child's environment: the ignored tests act only there, so that
/// `cargo test -- --include-ignored` does not abort this binary.
const CHILD: &str = "KIT_PANICS_TEST_CHILD";

/// Runs the ignored test `name` of this binary in a child process with the panic hook
/// installed, and returns how it ended.
fn child(name: &str) -> Output {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("RUST_BACKTRACE", "0")
        .env(CHILD, "1")
        .output()
        .expect("run the child")
}

#[test]
fn a_panic_in_a_background_task_ends_the_process_with_sigabrt() {
    let output = child("background_task_panics");

    assert_eq!(
        output.status.signal(),
        Some(SIGABRT),
        "the child ended with {:?}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the sweeper broke"), "{stderr}");
}

#[test]
fn a_panic_in_a_handler_or_on_another_librarys_thread_leaves_the_process_running() {
    let output = child("handler_panics");

    assert!(
        output.status.success(),
        "the child ended with {:?}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// In a child process, the hook installed and a service's runtime; `None` elsewhere.
fn as_child() -> Option<tokio::runtime::Runtime> {
    std::env::var_os(CHILD)?;
    kit::panics::end_process_when_uncaught();
    Some(kit::panics::runtime().expect("runtime"))
}

#[test]
#[ignore = "a child process of a_panic_in_a_background_task_ends_the_process_with_sigabrt"]
fn background_task_panics() {
    let Some(runtime) = as_child() else { return };
    runtime.block_on(async {
        tokio::spawn(async { panic!("the sweeper broke") });
        // The process is aborted long before this ends; if it is not, the child exits 0 and
        // the parent test fails.
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
}

#[test]
#[ignore = "a child process of a_panic_in_a_handler_or_on_another_librarys_thread_leaves_the_process_running"]
fn handler_panics() {
    use axum::{Router, http::StatusCode, response::IntoResponse, routing::get};
    use tower::ServiceExt;
    let Some(runtime) = as_child() else { return };
    runtime.block_on(async {
        let caught = tokio::spawn(kit::panics::caught(async { panic!("a bug in a handler") }))
            .await
            .expect("the task ended by itself");
        assert_eq!(caught, Err("a bug in a handler".to_owned()));

        let internal = |_: &axum::http::Uri| StatusCode::INTERNAL_SERVER_ERROR.into_response();
        let router = Router::new()
            .route(
                "/panic",
                get(|| async {
                    if true {
                        panic!("a bug in an HTTP handler");
                    }
                    StatusCode::OK
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                internal as fn(&_) -> _,
                kit::serve::catch_panic,
            ));
        let request = axum::http::Request::get("/panic")
            .body(axum::body::Body::empty())
            .expect("request");
        let answer = tokio::spawn(router.oneshot(request))
            .await
            .expect("the task ended by itself")
            .expect("an answer");
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
    });
    // A thread of another library's (say, the trace exporter's): its panic ends that thread.
    let other = std::thread::spawn(|| panic!("a bug in a library's thread")).join();
    assert!(other.is_err());
}
