//! Panics: one in a handler fails what it was handling; one anywhere else ends the process.
//!
//! A handler's panic (HTTP, services API, saga) is caught where it is called ([`caught`]): that
//! request or batch fails, and the task serving the next ones goes on. Anywhere else (a
//! background task: the order sweeper, the pruning, the outcome listener, a worker's pull
//! loop), tokio would end just that task and the process would go on without it, serving but
//! no longer sweeping or listening, with nothing to say so but one log line. So a panic no
//! [`caught`] is around ends the process ([`end_process_when_uncaught`]): its supervisor
//! starts it afresh (compose's restart policy; natively, the next `./stack up`), which every
//! guarantee already survives (the chaos runs kill processes at random).

use std::{
    cell::Cell,
    future::Future,
    panic::{AssertUnwindSafe, PanicHookInfo},
};

use futures::FutureExt;

thread_local! {
    /// How many [`caught`] futures this thread is polling, one within another.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
}

/// The output of `future`, or, when it panics, what the panic said. The panic is logged.
pub async fn caught<T>(future: impl Future<Output = T>) -> Result<T, String> {
    let mut future = std::pin::pin!(AssertUnwindSafe(future).catch_unwind());
    let outcome = std::future::poll_fn(|context| {
        let _catching = Catching::enter();
        future.as_mut().poll(context)
    })
    .await;
    outcome.map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        tracing::error!(panic = %what, "handler panicked");
        what
    })
}

/// Marks the thread as polling a [`caught`] future while it lives (unwinding included).
struct Catching;

impl Catching {
    fn enter() -> Self {
        CATCHING.with(|depth| depth.set(depth.get() + 1));
        Self
    }
}

impl Drop for Catching {
    fn drop(&mut self) {
        CATCHING.with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

/// Whether a panic on this thread now would be caught by a [`caught`] around it.
fn catching() -> bool {
    CATCHING.with(Cell::get) > 0
}

/// Installs a panic hook that reports every panic as Rust does, then, for one that no
/// [`caught`] is around, aborts the process. Called once by [`crate::serve::process`], before
/// the runtime starts; tests that run a service in their own process do not install it.
pub fn end_process_when_uncaught() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        report(info);
        if !catching() {
            tracing::error!(
                panic = %info,
                "panicked outside any request or message; the process ends so that it is restarted"
            );
            std::process::abort();
        }
    }));
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Polls `future` once: its output, or `None` when it is still pending.
    fn now<T>(future: impl Future<Output = T>) -> Option<T> {
        match std::pin::pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }

    #[test]
    fn a_panic_within_caught_is_returned_with_its_message() {
        let outcome = now(caught(async { panic!("broken invariant") }));
        assert_eq!(outcome, Some(Err("broken invariant".to_owned())));
        assert!(!catching(), "the mark goes with the unwinding");
    }

    #[test]
    fn the_thread_counts_as_catching_only_while_a_caught_future_is_polled() {
        assert!(!catching());
        let inside = now(caught(async { catching() }));
        assert_eq!(inside, Some(Ok(true)));
        let nested = now(caught(caught(async { catching() })));
        assert_eq!(nested, Some(Ok(Ok(true))));
        assert!(!catching());
    }
}
