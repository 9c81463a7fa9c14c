//! The watch hub: fans committed events out to watchers.
//!
//! Runtime-agnostic: a [`Watch`] is a `futures::Stream` woken by plain
//! [`Waker`]s, so the same hub serves tokio, the browser's event loop or a
//! `block_on`. The hub never blocks a writer on a slow consumer: each watcher
//! has its own queue, bounded by its `buffer_size`; one that falls behind is
//! ended with a terminal [`Error::Overflow`] instead of stalling anyone.
//!
//! The hub owns no store state. The engine calls [`Hub::publish`] only after
//! a change is committed (and, in durable shells, persisted), and registers a
//! watcher while it holds the state a replay is taken from, which is what
//! makes "replay precedes live" atomic.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_core::{FusedStream, Stream};
use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::{Error, Event, EventType};

/// The default number of undelivered live events a watcher may hold.
pub const DEFAULT_BUFFER_SIZE: usize = 1024;

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Start {
    /// Only changes committed after the subscription.
    #[default]
    Live,
    /// Every current entry as a `create` event, then live changes.
    Replay,
    /// Every change after the revision, then live changes.
    From(u64),
}

/// How to watch a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    start: Start,
    types: u8,
    buffer_size: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            start: Start::Live,
            types: EventType::Create.bit() | EventType::Update.bit() | EventType::Delete.bit(),
            buffer_size: DEFAULT_BUFFER_SIZE,
        }
    }
}

impl WatchOptions {
    /// Live changes of every type, with [`DEFAULT_BUFFER_SIZE`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Start with every current entry of the kind as a `create` event (in key
    /// order), taken atomically with the subscription, then live changes.
    #[must_use]
    pub fn replay(mut self) -> Self {
        self.start = Start::Replay;
        self
    }

    /// Start with every change of the kind after revision `rev`, then live
    /// changes. If `rev` is older than the retained history the stream yields
    /// one [`Error::Compacted`] and ends.
    #[must_use]
    pub fn from_rev(mut self, rev: u64) -> Self {
        self.start = Start::From(rev);
        self
    }

    /// Deliver only these event types. The terminal errors are always delivered.
    #[must_use]
    pub fn types(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.types = types.into_iter().fold(0, |m, t| m | t.bit());
        self
    }

    /// How many live events may wait undelivered before the watch overflows
    /// (at least 1). Replayed and resumed events do not count.
    #[must_use]
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = n.max(1);
        self
    }

    /// The revision to resume after, if this is a resuming watch.
    #[must_use]
    pub fn resume_from(&self) -> Option<u64> {
        match self.start {
            Start::From(rev) => Some(rev),
            _ => None,
        }
    }

    /// Whether this watch starts with a replay of the current entries.
    #[must_use]
    pub fn is_replay(&self) -> bool {
        self.start == Start::Replay
    }

    /// Whether events of type `t` are delivered.
    #[must_use]
    pub fn wants(&self, t: EventType) -> bool {
        self.types & t.bit() != 0
    }
}

/// Why a watcher stops receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Still live.
    Open,
    /// Deliver what is queued, then this error, then end.
    Fail(Terminal),
    /// Deliver what is queued, then end.
    Drain,
    /// Ended; nothing more is delivered.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Terminal {
    Overflow,
    Compacted { oldest: u64 },
    RevisionAhead { requested: u64, head: u64 },
}

impl Terminal {
    fn error(self) -> Error {
        match self {
            Terminal::Overflow => Error::Overflow,
            Terminal::Compacted { oldest } => Error::Compacted { oldest },
            Terminal::RevisionAhead { requested, head } => Error::RevisionAhead { requested, head },
        }
    }
}

struct Queue<T> {
    events: VecDeque<Arc<Event<T>>>,
    /// How many events at the front are replayed/resumed, not live.
    backlog: usize,
    end: End,
    waker: Option<Waker>,
}

struct Slot<T> {
    /// The store's revision when the watch began.
    start_rev: u64,
    types: u8,
    buffer_size: usize,
    queue: Mutex<Queue<T>>,
}

impl<T> Slot<T> {
    fn new(opts: &WatchOptions, start_rev: u64, backlog: VecDeque<Arc<Event<T>>>, end: End) -> Arc<Self> {
        Arc::new(Slot {
            start_rev,
            types: opts.types,
            buffer_size: opts.buffer_size,
            queue: Mutex::new(Queue {
                backlog: backlog.len(),
                events: backlog,
                end,
                waker: None,
            }),
        })
    }

    /// Queues `event`; returns whether the watcher is still live.
    fn push(&self, event: &Arc<Event<T>>) -> bool {
        let mut q = self.queue.lock();
        if q.end != End::Open {
            return false;
        }
        if self.types & event.event_type.bit() == 0 {
            return true;
        }
        let live = q.events.len() - q.backlog;
        if live >= self.buffer_size {
            q.end = End::Fail(Terminal::Overflow);
        } else {
            q.events.push_back(event.clone());
        }
        let open = q.end == End::Open;
        let waker = q.waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
        open
    }

    fn finish(&self, end: End) {
        let mut q = self.queue.lock();
        if matches!(q.end, End::Open) {
            q.end = end;
        }
        let waker = q.waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The registry of a store's watchers, by kind.
pub(crate) struct Hub<T> {
    by_kind: HashMap<String, Vec<Arc<Slot<T>>>>,
    /// Subscriptions since dropped watchers were last swept from every kind.
    since_sweep: usize,
}

/// The registry key of watchers of every kind (no kind is empty).
pub(crate) const ALL_KINDS: &str = "";

/// Dropped watchers of kinds nobody writes to are swept every this many
/// subscriptions (a kind's own are swept whenever it is written or watched).
const SWEEP_EVERY: usize = 64;

impl<T> Default for Hub<T> {
    fn default() -> Self {
        Hub {
            by_kind: HashMap::new(),
            since_sweep: 0,
        }
    }
}

impl<T> Hub<T> {
    /// Registers a watcher whose stream starts with `backlog`.
    pub(crate) fn subscribe(
        &mut self,
        kind: &str,
        opts: &WatchOptions,
        start_rev: u64,
        backlog: VecDeque<Arc<Event<T>>>,
    ) -> Watch<T> {
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.since_sweep = 0;
            self.by_kind.retain(|_, slots| {
                slots.retain(|s| s.queue.lock().end == End::Open);
                !slots.is_empty()
            });
        }
        let slot = Slot::new(opts, start_rev, backlog, End::Open);
        let slots = self.by_kind.entry(kind.to_owned()).or_default();
        slots.retain(|s| s.queue.lock().end == End::Open);
        slots.push(slot.clone());
        Watch { slot }
    }

    /// Delivers committed events, in order, to the watchers of their kinds.
    pub(crate) fn publish(&mut self, events: &[Arc<Event<T>>]) {
        if self.by_kind.is_empty() {
            return;
        }
        for event in events {
            for kind in [event.kind.as_str(), ALL_KINDS] {
                if let Some(slots) = self.by_kind.get_mut(kind) {
                    slots.retain(|slot| slot.push(event));
                    if slots.is_empty() {
                        self.by_kind.remove(kind);
                    }
                }
            }
        }
    }

    /// Ends every watcher after it drains what it has queued.
    pub(crate) fn close(&mut self) {
        for slot in self.by_kind.drain().flat_map(|(_, v)| v) {
            slot.finish(End::Drain);
        }
    }

    /// Ends every watcher with [`Error::Compacted`] after what it has
    /// queued: the state it followed was replaced, it must re-list.
    pub(crate) fn compact_all(&mut self, oldest: u64) {
        for slot in self.by_kind.drain().flat_map(|(_, v)| v) {
            slot.finish(End::Fail(Terminal::Compacted { oldest }));
        }
    }

    #[cfg(test)]
    pub(crate) fn by_kind_len(&self) -> usize {
        self.by_kind.len()
    }

    /// The number of live watchers.
    pub(crate) fn len(&self) -> usize {
        self.by_kind
            .values()
            .flatten()
            .filter(|s| s.queue.lock().end == End::Open)
            .count()
    }
}

impl<T> Drop for Hub<T> {
    /// A store dropped without `close` still ends its watches.
    fn drop(&mut self) {
        self.close();
    }
}

/// A watch that fails at once: its stream yields `error` and ends.
fn failed<T>(opts: &WatchOptions, head: u64, error: Terminal) -> Watch<T> {
    Watch {
        slot: Slot::new(opts, head, VecDeque::new(), End::Fail(error)),
    }
}

pub(crate) fn compacted<T>(opts: &WatchOptions, head: u64, oldest: u64) -> Watch<T> {
    failed(opts, head, Terminal::Compacted { oldest })
}

pub(crate) fn revision_ahead<T>(opts: &WatchOptions, requested: u64, head: u64) -> Watch<T> {
    failed(opts, head, Terminal::RevisionAhead { requested, head })
}

/// A stream of the changes of one kind, in commit order.
///
/// Yields `Ok(event)` for each change, then ends (`None`) exactly once: when
/// dropped, when the store closes (after the queued events), or after one
/// terminal error ([`Error::Overflow`], [`Error::Compacted`],
/// [`Error::RevisionAhead`]). Dropping it unsubscribes.
pub struct Watch<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Watch<T> {
    /// The store's revision when the watch began: a replay is the state at
    /// this revision, and live events follow it.
    #[must_use]
    pub fn start_rev(&self) -> u64 {
        self.slot.start_rev
    }

    /// The number of events ready to be taken without waiting.
    #[must_use]
    pub fn ready(&self) -> usize {
        self.slot.queue.lock().events.len()
    }
}

impl<T> std::fmt::Debug for Watch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = self.slot.queue.lock();
        f.debug_struct("Watch")
            .field("queued", &q.events.len())
            .field("end", &q.end)
            .finish()
    }
}

impl<T> Stream for Watch<T> {
    type Item = Result<Arc<Event<T>>, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut q = self.slot.queue.lock();
        if q.end != End::Done
            && let Some(event) = q.events.pop_front()
        {
            q.backlog = q.backlog.saturating_sub(1);
            return Poll::Ready(Some(Ok(event)));
        }
        match q.end {
            End::Open => {
                match &mut q.waker {
                    Some(w) => w.clone_from(cx.waker()),
                    None => q.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            End::Fail(t) => {
                q.end = End::Done;
                Poll::Ready(Some(Err(t.error())))
            }
            End::Drain | End::Done => {
                q.end = End::Done;
                Poll::Ready(None)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.slot.queue.lock().events.len(), None)
    }
}

impl<T> FusedStream for Watch<T> {
    fn is_terminated(&self) -> bool {
        self.slot.queue.lock().end == End::Done
    }
}

impl<T> Drop for Watch<T> {
    fn drop(&mut self) {
        let mut q = self.slot.queue.lock();
        q.end = End::Done;
        q.events.clear();
    }
}
