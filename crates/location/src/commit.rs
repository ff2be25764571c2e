//! [`Commit`]: the promise that a write is durable.

use crate::error::StoreError;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use tokio::sync::oneshot;

/// Resolves when the changes it stands for are durable (fsync'd).
///
/// Dropping it does not cancel the write; it only stops waiting.
#[derive(Debug)]
pub struct Commit {
    state: State,
}

#[derive(Debug)]
enum State {
    Done,
    Failed(StoreError),
    Pending(oneshot::Receiver<Result<(), StoreError>>),
}

impl Commit {
    /// A commit with nothing to wait for.
    pub fn done() -> Self {
        Self { state: State::Done }
    }
    /// A commit that failed before reaching the writer.
    pub(crate) fn failed(e: StoreError) -> Self {
        Self {
            state: State::Failed(e),
        }
    }
    /// A commit the writer thread will answer.
    pub(crate) fn pending(rx: oneshot::Receiver<Result<(), StoreError>>) -> Self {
        Self {
            state: State::Pending(rx),
        }
    }
    /// True when nothing needs to be waited for (no write, or already failed).
    pub fn is_immediate(&self) -> bool {
        !matches!(self.state, State::Pending(_))
    }
    /// Wait until durable. A writer that stopped without answering yields
    /// [`StoreError::WriterGone`].
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.state {
            State::Done => Ok(()),
            State::Failed(e) => Err(e),
            State::Pending(rx) => rx.await.unwrap_or(Err(StoreError::WriterGone)),
        }
    }
    /// Blocking wait (for non-async callers and tests). It parks the calling
    /// thread, so inside an async runtime call it only from
    /// `spawn_blocking`; unlike tokio's `blocking_recv` it does not panic there.
    pub fn wait_blocking(self) -> Result<(), StoreError> {
        block_on(self.wait())
    }
}

/// Wakes a parked thread.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Run a future to completion on the current thread, parking between polls.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_and_failed_resolve_immediately() {
        assert!(Commit::done().wait_blocking().is_ok());
        let c = Commit::failed(StoreError::Unhealthy);
        assert!(c.is_immediate());
        assert!(matches!(c.wait_blocking(), Err(StoreError::Unhealthy)));
    }

    #[test]
    fn pending_resolves_with_the_writer_answer() {
        let (tx, rx) = oneshot::channel();
        let c = Commit::pending(rx);
        assert!(!c.is_immediate());
        let t = std::thread::spawn(move || tx.send(Ok(())));
        assert!(c.wait_blocking().is_ok());
        assert!(t.join().is_ok());
    }

    #[test]
    fn dropped_sender_means_writer_gone() {
        let (tx, rx) = oneshot::channel::<Result<(), StoreError>>();
        drop(tx);
        assert!(matches!(
            Commit::pending(rx).wait_blocking(),
            Err(StoreError::WriterGone)
        ));
    }

    #[tokio::test]
    async fn async_wait() {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(StoreError::Closed));
        assert!(matches!(
            Commit::pending(rx).wait().await,
            Err(StoreError::Closed)
        ));
    }

    #[tokio::test]
    async fn wait_blocking_does_not_panic_inside_a_runtime() {
        // tokio's blocking_recv would panic here.
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Ok(()));
        assert!(Commit::pending(rx).wait_blocking().is_ok());
    }
}
