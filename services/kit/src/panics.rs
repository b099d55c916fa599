//! Panics: one in a handler fails what it was handling; one anywhere else ends the process.
//!
//! A handler's panic (HTTP, services API, saga, a sweep or pruning pass, an operator's reset) is
//! caught where it is called ([`caught`]): that request, batch or pass fails, and the task
//! serving the next ones goes on. Anywhere else on the service's own threads (the loop of a
//! background task, a worker's pull loop, the plumbing around the handlers), tokio would end
//! just that task and the process would go on without it, serving but no longer pulling or
//! listening, with nothing to say so but one log line. So there a panic ends the process
//! ([`end_process_when_uncaught`]): its supervisor starts it afresh (compose's restart policy;
//! natively, the next `./stack up`), which every guarantee already survives (the chaos runs
//! kill processes at random).

use std::{
    any::Any,
    cell::Cell,
    future::Future,
    panic::{AssertUnwindSafe, PanicHookInfo},
    pin::Pin,
    task::{Context, Poll},
};

thread_local! {
    /// How many [`caught`] futures this thread is polling or dropping, one within another.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    /// Whether this thread is one of the service's own (see [`runtime`]).
    static SERVING: Cell<bool> = const { Cell::new(false) };
}

/// The output of `future`, or, when it panics, what the panic said. The panic is logged. If
/// the future is dropped unfinished (its client went away), a panic in its destructors is
/// caught and logged too.
pub async fn caught<T>(future: impl Future<Output = T>) -> Result<T, String> {
    Caught(Some(Box::pin(future))).await.map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        tracing::error!(panic = %what, "panicked; only what it was handling fails");
        what
    })
}

/// The future of [`caught`]: polls and drops the inner one with the thread marked as catching.
struct Caught<F>(Option<Pin<Box<F>>>);

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.0.as_mut() else {
            return Poll::Pending;
        };
        let polled = {
            let _catching = Catching::enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(context)))
        };
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                discard(self.0.take());
                Poll::Ready(Ok(output))
            }
            Err(panic) => {
                discard(self.0.take());
                Poll::Ready(Err(panic))
            }
        }
    }
}

impl<F> Drop for Caught<F> {
    fn drop(&mut self) {
        discard(self.0.take());
    }
}

/// Drops `inner` with the thread marked as catching, and a panic in its destructors logged.
fn discard<F>(inner: Option<Pin<Box<F>>>) {
    let Some(inner) = inner else { return };
    let _catching = Catching::enter();
    if std::panic::catch_unwind(AssertUnwindSafe(move || drop(inner))).is_err() {
        tracing::error!("panicked while dropping a handler's state");
    }
}

/// Marks the thread as catching while it lives (unwinding included).
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

/// The service's runtime: tokio's multi-thread runtime (`TOKIO_WORKER_THREADS` threads, as
/// `Runtime::new`), its threads and the calling one (which runs its `block_on`) marked as the
/// service's own, where a panic no [`caught`] is around ends the process once
/// [`end_process_when_uncaught`] is installed. Threads of other libraries (the trace
/// exporter's) are not: a panic there ends only that thread, as Rust's default does.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    SERVING.with(|serving| serving.set(true));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(|| SERVING.with(|serving| serving.set(true)))
        .build()
}

/// Installs a panic hook that reports every panic as Rust does, then, for one on a thread of
/// [`runtime`] that no [`caught`] is around, aborts the process (the spans not yet exported
/// are lost, as with SIGKILL). Called once by [`crate::serve::process`]; tests that run a
/// service in their own process do not install it.
pub fn end_process_when_uncaught() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        report(info);
        if SERVING.with(Cell::get) && !catching() {
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
    use std::task::Waker;

    use super::*;

    fn poll<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_panic_within_caught_is_returned_with_its_message() {
        let outcome = poll(std::pin::pin!(caught(async { panic!("broken invariant") })));
        assert_eq!(outcome, Poll::Ready(Err("broken invariant".to_owned())));
        assert!(!catching(), "the mark goes with the unwinding");
    }

    #[test]
    fn the_thread_counts_as_catching_only_while_a_caught_future_is_polled() {
        let mut first = true;
        let inner = std::future::poll_fn(move |_| {
            if std::mem::take(&mut first) {
                assert!(catching());
                Poll::Pending
            } else {
                Poll::Ready(catching())
            }
        });
        let mut outer = std::pin::pin!(caught(caught(inner)));

        assert!(!catching());
        assert_eq!(poll(outer.as_mut()), Poll::Pending);
        assert!(!catching(), "not between two polls");
        assert_eq!(poll(outer.as_mut()), Poll::Ready(Ok(Ok(true))));
        assert!(!catching());
    }

    /// Panics when dropped, as a buggy destructor would.
    struct PanicsWhenDropped;

    impl Drop for PanicsWhenDropped {
        fn drop(&mut self) {
            panic!("a destructor's bug");
        }
    }

    #[test]
    fn a_caught_future_dropped_unfinished_keeps_its_destructors_panic_to_itself() {
        let inner = async {
            let _held = PanicsWhenDropped;
            std::future::pending::<()>().await;
        };
        let mut outer = Box::pin(caught(inner));
        assert_eq!(poll(outer.as_mut()), Poll::Pending);

        drop(outer);

        assert!(!catching());
    }
}
