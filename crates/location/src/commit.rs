//! [`Commit`]: the promise that a write is durable.
//!
//! A pending commit shares one small slot with the group-commit writer. The
//! writer fills it after the fsync; the waiter either awaits it (async or
//! blocking) or has left a callback in it ([`Commit::on_durable`]) that the
//! writer runs right there. The callback form exists for the UDP hot path:
//! a REGISTER's reply can then be sent by the thread that made it durable,
//! without waking a task per request (BENCHMARKS.md, profile).

use crate::error::StoreError;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// What runs when a commit resolves (see [`Commit::on_durable`]).
pub type OnDurable = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

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
    Pending(Arc<Slot>),
}

/// Shared between a pending [`Commit`] and the writer's [`Completer`].
#[derive(Debug)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
}

enum SlotState {
    /// Not resolved; the waker of whoever awaits it, if anyone does yet.
    Waiting(Option<Waker>),
    /// Not resolved; run this when it is.
    Callback(OnDurable),
    /// Resolved, result not yet taken.
    Done(Result<(), StoreError>),
    /// Resolved and taken.
    Taken,
}

impl std::fmt::Debug for SlotState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Waiting(_) => "Waiting",
            Self::Callback(_) => "Callback",
            Self::Done(_) => "Done",
            Self::Taken => "Taken",
        })
    }
}

/// The writer's end of a pending commit. Dropping it unresolved resolves
/// the commit with [`StoreError::WriterGone`] (the writer died).
#[derive(Debug)]
pub(crate) struct Completer(Option<Arc<Slot>>);

impl Completer {
    /// Resolve the commit: run its callback here, or wake its waiter.
    pub(crate) fn complete(mut self, result: Result<(), StoreError>) {
        if let Some(slot) = self.0.take() {
            resolve(&slot, result);
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            resolve(&slot, Err(StoreError::WriterGone));
        }
    }
}

fn resolve(slot: &Slot, result: Result<(), StoreError>) {
    let mut state = slot.state.lock();
    match std::mem::replace(&mut *state, SlotState::Taken) {
        SlotState::Callback(f) => {
            drop(state);
            f(result);
        }
        SlotState::Waiting(waker) => {
            *state = SlotState::Done(result);
            drop(state);
            if let Some(w) = waker {
                w.wake();
            }
        }
        // Resolved twice cannot happen (complete consumes the completer);
        // keep the first answer.
        other => *state = other,
    }
}

/// A new pending commit and the completer the writer resolves it with.
pub(crate) fn pending() -> (Commit, Completer) {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState::Waiting(None)),
    });
    (
        Commit {
            state: State::Pending(slot.clone()),
        },
        Completer(Some(slot)),
    )
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
            State::Pending(slot) => Wait(slot).await,
        }
    }
    /// Blocking wait (for non-async callers and tests). It parks the calling
    /// thread, so inside an async runtime call it only from
    /// `spawn_blocking`; it does not panic there either.
    pub fn wait_blocking(self) -> Result<(), StoreError> {
        block_on(self.wait())
    }

    /// Run `f` with the outcome once it is known: at once, on this thread,
    /// when the commit is immediate or already resolved; otherwise on the
    /// store's writer thread right after the fsync (or its failure).
    ///
    /// `f` runs on the thread that makes every write durable, so it must be
    /// short and must never block or call back into the store: sending one
    /// datagram is the intended use.
    pub fn on_durable(self, f: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        match self.state {
            State::Done => f(Ok(())),
            State::Failed(e) => f(Err(e)),
            State::Pending(slot) => {
                let mut state = slot.state.lock();
                match std::mem::replace(&mut *state, SlotState::Taken) {
                    SlotState::Done(r) => {
                        drop(state);
                        f(r);
                    }
                    SlotState::Waiting(_) => *state = SlotState::Callback(Box::new(f)),
                    // A commit has one owner, and this call consumes it.
                    other => *state = other,
                }
            }
        }
    }
}

/// The future behind [`Commit::wait`].
struct Wait(Arc<Slot>);

impl Future for Wait {
    type Output = Result<(), StoreError>;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.state.lock();
        match std::mem::replace(&mut *state, SlotState::Taken) {
            SlotState::Done(r) => Poll::Ready(r),
            SlotState::Waiting(_) => {
                *state = SlotState::Waiting(Some(cx.waker().clone()));
                Poll::Pending
            }
            // Only `on_durable` installs a callback, and it consumes the
            // commit, so a waiter never sees one; Taken means polled after
            // completion.
            SlotState::Callback(_) | SlotState::Taken => Poll::Ready(Err(StoreError::WriterGone)),
        }
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
    use std::sync::mpsc;

    #[test]
    fn done_and_failed_resolve_immediately() {
        assert!(Commit::done().wait_blocking().is_ok());
        let c = Commit::failed(StoreError::Unhealthy);
        assert!(c.is_immediate());
        assert!(matches!(c.wait_blocking(), Err(StoreError::Unhealthy)));
    }

    #[test]
    fn pending_resolves_with_the_writer_answer() {
        let (c, done) = pending();
        assert!(!c.is_immediate());
        let t = std::thread::spawn(move || done.complete(Ok(())));
        assert!(c.wait_blocking().is_ok());
        assert!(t.join().is_ok());
    }

    #[test]
    fn dropped_completer_means_writer_gone() {
        let (c, done) = pending();
        drop(done);
        assert!(matches!(c.wait_blocking(), Err(StoreError::WriterGone)));
    }

    #[tokio::test]
    async fn async_wait() {
        let (c, done) = pending();
        done.complete(Err(StoreError::Closed));
        assert!(matches!(c.wait().await, Err(StoreError::Closed)));
    }

    #[tokio::test]
    async fn wait_blocking_does_not_panic_inside_a_runtime() {
        let (c, done) = pending();
        done.complete(Ok(()));
        assert!(c.wait_blocking().is_ok());
    }

    #[test]
    fn callback_runs_on_the_completing_thread() {
        let (c, done) = pending();
        let (tx, rx) = mpsc::channel();
        c.on_durable(move |r| {
            let _ = tx.send((r.is_ok(), std::thread::current().id()));
        });
        assert!(rx.try_recv().is_err(), "not before the commit resolves");
        let writer = std::thread::spawn(move || {
            done.complete(Ok(()));
            std::thread::current().id()
        });
        let writer_id = writer.join().expect("writer");
        let (ok, ran_on) = rx.recv().expect("callback ran");
        assert!(ok);
        assert_eq!(ran_on, writer_id);
    }

    #[test]
    fn callback_on_a_resolved_or_immediate_commit_runs_at_once() {
        let (c, done) = pending();
        done.complete(Err(StoreError::Unhealthy));
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        c.on_durable(move |r| {
            let _ = tx.send(matches!(r, Err(StoreError::Unhealthy)));
        });
        Commit::done().on_durable(move |r| {
            let _ = tx2.send(r.is_ok());
        });
        assert_eq!(rx.try_recv(), Ok(true));
        assert_eq!(rx.try_recv(), Ok(true));
    }

    #[test]
    fn callback_sees_writer_gone_when_the_completer_is_dropped() {
        let (c, done) = pending();
        let (tx, rx) = mpsc::channel();
        c.on_durable(move |r| {
            let _ = tx.send(matches!(r, Err(StoreError::WriterGone)));
        });
        drop(done);
        assert_eq!(rx.try_recv(), Ok(true));
    }
}
