//! Running the library's futures from a Python thread: polled once with the GIL held (an L1
//! hit completes there, no thread switch, no GIL release), else finished on the runtime
//! with the GIL released, so other Python threads run while this one waits on Redis or on
//! another caller's load.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pyo3::prelude::*;
use tokio::runtime::Handle;

/// Drives `fut` to completion from the calling (Python) thread. Pinned by the caller
/// (`pin!(cache.get(..))`): the library's futures are large, and a hit should not pay for
/// copying them around.
pub fn drive<F>(py: Python<'_>, rt: &Handle, mut fut: Pin<&mut F>) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if let Poll::Ready(v) = poll_once(rt, fut.as_mut()) {
        return v;
    }
    // block_on polls again with its own waker before it parks: no wake-up is lost.
    py.allow_threads(move || rt.block_on(fut))
}

/// One poll inside the runtime's context (timers and sockets register with it).
fn poll_once<F: Future>(rt: &Handle, fut: Pin<&mut F>) -> Poll<F::Output> {
    let _ctx = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    fut.poll(&mut cx)
}

/// `Some(output)` when `fut` completes in one poll (an L1 hit), `None` otherwise (the
/// future is dropped: used only for reads, which may be abandoned).
pub fn try_now<F: Future>(rt: &Handle, fut: Pin<&mut F>) -> Option<F::Output> {
    match poll_once(rt, fut) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}
