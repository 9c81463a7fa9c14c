//! The native sync client: a tokio shell around store-core's [`Replica`],
//! the client rules the browser package runs too.
//!
//! [`Client::connect`] spawns one task that owns the WebSocket. It sends
//! what the session yields, feeds it every frame received, drives its
//! heartbeat timer, and reconnects with jittered exponential backoff after
//! any retryable disconnect; the session resumes from its cursor and
//! re-sends the pending ops with their original op ids. A non-retryable
//! refusal (a bad token, a forbidden namespace, a protocol error) stops the
//! client with [`Update::Stopped`]. A session whose token expires or is
//! revoked is retried once, with a fresh token from
//! [`ClientOptions::token_source`] when there is one.
//!
//! A `wss://` URL connects over TLS (rustls). The server's certificate must
//! chain to one of the system's root certificates, or to
//! [`ClientOptions::ca`] when the app names its own certificate
//! authorities. A TLS failure (an untrusted or expired certificate, a
//! certificate for another host name) is a failed connection like any
//! other: [`Update::Disconnected`] says why, and the client retries after
//! its backoff, so a server whose certificate is being renewed is reached
//! again once it is; an app that would rather stop calls
//! [`Client::close`].
//!
//! An app that only syncs depends on this crate with
//! `default-features = false`: the client alone, without the server's web
//! framework, SQLite or PostgreSQL driver (`scripts/check-client-deps.sh`
//! checks it).
//!
//! The rules all live in the replica: its engine shows the optimistic view
//! (with versions), a write is checked as the server would (key rules, the
//! server's schemas, `if_version` against that view) before it is queued,
//! and what the server says is rebased into that view. This module only
//! moves bytes, reads clocks and hands results to callers. It keeps no
//! storage of its own: [`Client::state`] is what to persist. The replica
//! sits behind a mutex shared by the handle and the task, never held across
//! an `.await`.
//!
//! [`Replica`]: store_core::sync::replica::Replica
//!
//! ```no_run
//! use serde_json::json;
//! use sync_server::client::{Client, ClientOptions};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect(ClientOptions::new("ws://127.0.0.1:8787/sync", "ns", "token", "laptop-1"));
//! let write = client.set("task", "t1", json!({"title": "ship"}))?.expect("a new value");
//! assert_eq!(client.get("task", "t1"), Some(json!({"title": "ship"}))); // optimistic
//! let ack = write.acked().await?; // durable on the server
//! println!("version {}", ack.version);
//! client.close().await;
//! # Ok(())
//! # }
//! ```

mod cli;
mod driver;
mod tls;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_channel::mpsc;
use futures_util::Stream;
use parking_lot::Mutex;
use serde_json::Value;
use store_core::StoreOptions;
use store_core::sync::replica::{LocalOp, Outcome, Persisted, Replica};
use store_core::sync::session::{ClientConfig, ClientEvent, ClientSession, ClientState};
use store_core::sync::{Ack, ErrorCode};
use tokio::sync::{Notify, oneshot, watch};

pub use cli::run_cli;
pub use tls::{CaCerts, CaError};

/// How to reach the server and who the client is.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server's sync endpoint, e.g. `ws://127.0.0.1:8787/sync`, or
    /// `wss://sync.example.com/sync` over TLS.
    pub url: String,
    /// For `wss://`: the certificate authorities the server's certificate
    /// must chain to, instead of the system's root certificates (`None`).
    pub ca: Option<CaCerts>,
    /// The namespace to sync.
    pub namespace: String,
    /// The credential sent in `hello`, unless `token_source` is given.
    pub token: String,
    /// Where to get a fresh token before each connection (a JWT that
    /// expires, from the app's backend); `None` sends `token` every time.
    pub token_source: Option<TokenSource>,
    /// A stable id of this installation (op ids are unique per client id).
    pub client_id: String,
    /// The kinds to sync; `None` is every kind.
    pub kinds: Option<Vec<String>>,
    /// What a previous run persisted (from [`Client::state`]); `None` starts
    /// from nothing.
    pub state: Option<ClientState>,
    /// The first reconnect delay.
    pub backoff_min: Duration,
    /// The longest reconnect delay.
    pub backoff_max: Duration,
    /// The heartbeat period until the server's `welcome` gives its own: a
    /// server silent for twice as long (even before `welcome`) is dropped
    /// and retried.
    pub heartbeat: Duration,
}

impl ClientOptions {
    /// Options syncing every kind of `namespace`, reconnecting after 250 ms
    /// up to 30 s, with a 30 s heartbeat until welcomed, trusting the
    /// system's root certificates for `wss://`.
    #[must_use]
    pub fn new(
        url: impl Into<String>,
        namespace: impl Into<String>,
        token: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        ClientOptions {
            url: url.into(),
            ca: None,
            namespace: namespace.into(),
            token: token.into(),
            token_source: None,
            client_id: client_id.into(),
            kinds: None,
            state: None,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            heartbeat: Duration::from_secs(30),
        }
    }
}

/// Gets a fresh token before each connection: called before the first one
/// and before every reconnect (after a token expired or was revoked, too).
/// An error counts as a failed connection: the client retries after its
/// backoff, keeping its pending writes.
///
/// ```
/// use sync_server::client::{ClientOptions, TokenSource};
///
/// let options = ClientOptions {
///     token_source: Some(TokenSource::new(|| async {
///         // Ask the app's backend for a token (here, a fixed one).
///         Ok::<_, String>("eyJhbGciOi…".to_owned())
///     })),
///     ..ClientOptions::new("ws://127.0.0.1:8787/sync", "team-1", "", "laptop-1")
/// };
/// ```
#[derive(Clone)]
pub struct TokenSource(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

impl TokenSource {
    /// A source that calls `fetch` for each token.
    pub fn new<F, Fut>(fetch: F) -> TokenSource
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        TokenSource(Arc::new(move || Box::pin(fetch())))
    }

    /// A fresh token.
    async fn fetch(&self) -> Result<String, String> {
        (self.0)().await
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource(..)")
    }
}

/// Why the client stopped for good, or refused a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The write breaks a rule the client checks before queueing it, as
    /// the server would (the stores' kind and key rules, the kind's JSON
    /// Schema from the server's `welcome`): nothing was queued.
    #[error("invalid write: {code}: {message}")]
    Invalid {
        /// The store's error code (`validation`, `key_too_long`, …).
        code: &'static str,
        /// Why, for people.
        message: String,
    },
    /// The server refused the session and retrying would not help (bad
    /// token, forbidden namespace, protocol error).
    #[error("refused by the server: {message}")]
    Refused {
        /// The error code, when the server sent one.
        code: Option<ErrorCode>,
        /// Why, for people (with the code, when there is one).
        message: String,
    },
    /// [`Client::close`] was called, or every handle was dropped.
    #[error("client closed")]
    Closed,
}

/// Why a write did not get an ack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The server refused the op; nothing was written and it left the view.
    #[error("rejected: {code}: {message}")]
    Rejected {
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// The client stopped before the answer came; the op stays in
    /// [`Client::state`] and is re-sent by the next client restored from it.
    #[error("no answer: {0}")]
    Stopped(ClientError),
}

/// What the client is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Opening a socket or waiting for `welcome`.
    Connecting,
    /// Welcomed by the server.
    Online,
    /// Disconnected, waiting to reconnect.
    Offline,
    /// Stopped for good (see [`Update::Stopped`]).
    Stopped,
}

/// A snapshot of the client's condition, from [`Client::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The connection.
    pub link: Link,
    /// Whether the current connection caught up with the server.
    pub synced: bool,
    /// How many writes wait for an answer.
    pub pending: usize,
    /// The revision the confirmed state is at.
    pub cursor: Option<u64>,
}

/// What [`Client::events`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// An event of the session: connected, synced, changes, acks, rejects,
    /// server errors.
    Session(ClientEvent),
    /// The connection ended or could not be opened; the client reconnects.
    Disconnected {
        /// Why, for people.
        reason: String,
    },
    /// The client stopped for good; nothing follows.
    Stopped(ClientError),
}

/// A write queued by the client: its op id and its answer.
#[derive(Debug)]
#[must_use = "a write's answer is only seen through `acked` or the event stream"]
pub struct PendingWrite {
    op_id: String,
    answer: oneshot::Receiver<Result<Ack, WriteError>>,
}

impl PendingWrite {
    /// The op id of the write.
    #[must_use]
    pub fn op_id(&self) -> &str {
        &self.op_id
    }

    /// Waits for the server's answer: its ack once the write is durable, or
    /// why it was not applied. Waits across reconnects.
    pub async fn acked(self) -> Result<Ack, WriteError> {
        self.answer
            .await
            .unwrap_or(Err(WriteError::Stopped(ClientError::Closed)))
    }
}

type Answer = oneshot::Sender<Result<Ack, WriteError>>;

/// What the handle and the task share.
struct Inner {
    replica: Replica,
    /// The next pending op's place (the replica keeps the queue's order).
    next_place: f64,
    link: Link,
    waiters: HashMap<String, Answer>,
    subscribers: Vec<mpsc::UnboundedSender<Update>>,
    /// Set once the task ended.
    stopped: Option<ClientError>,
}

impl Inner {
    fn session(&mut self) -> &mut ClientSession {
        self.replica.session_mut().expect("the client's replica syncs")
    }

    /// Shows what the session learned in the replica's view (nothing to
    /// persist: the app persists [`Client::state`]).
    fn sync_view(&mut self) {
        if self.replica.has_news()
            && let Some(pass) = self.replica.plan_sync()
        {
            let _ = self.replica.sync_persisted(pass);
        }
    }

    fn publish(&mut self, update: &Update) {
        self.subscribers
            .retain(|s| s.unbounded_send(update.clone()).is_ok());
    }

    /// Answers waiters and publishes the session's events.
    fn dispatch(&mut self, event: ClientEvent) {
        match &event {
            ClientEvent::Connected { .. } => self.link = Link::Online,
            ClientEvent::Acked(ack) => {
                if let Some(w) = self.waiters.remove(&ack.op_id) {
                    let _ = w.send(Ok(ack.clone()));
                }
            }
            ClientEvent::Rejected { op, code, message } => {
                if let Some(w) = self.waiters.remove(&op.op_id) {
                    let _ = w.send(Err(WriteError::Rejected {
                        code: *code,
                        message: message.clone(),
                    }));
                }
            }
            _ => {}
        }
        self.publish(&Update::Session(event));
    }
}

struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the task when a write was queued.
    wake: Notify,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A handle on a running client; clones share it. The client stops when
/// [`Client::close`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// Dropping the last one stops the task.
    stop: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("status", &self.status()).finish()
    }
}

impl Client {
    /// Starts a client: spawns the task that connects and stays connected.
    /// Must be called inside a tokio runtime.
    #[must_use]
    pub fn connect(options: ClientOptions) -> Client {
        let mut config = ClientConfig::new(&options.namespace, &options.token, &options.client_id);
        config.kinds = options.kinds.clone();
        config.heartbeat_ms = u64::try_from(options.heartbeat.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let state = options.state.clone().unwrap_or_default();
        let next_place = state.pending.len() as f64;
        // Op ids are `{client_id}:{n}`, `n` going on from the state's.
        let sync = Some((config, options.client_id.clone()));
        let replica = Replica::open(StoreOptions::new(), sync, Persisted::from_state(state))
            .expect("a client state restores into an empty engine");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                replica,
                next_place,
                link: Link::Connecting,
                waiters: HashMap::new(),
                subscribers: Vec::new(),
                stopped: None,
            }),
            wake: Notify::new(),
            task: Mutex::new(None),
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(driver::run(Arc::clone(&shared), options, stop_rx));
        *shared.task.lock() = Some(task);
        Client {
            shared,
            stop: Arc::new(stop),
        }
    }

    /// Writes `value` at `kind`/`key`: visible in [`Client::get`] at once,
    /// sent when connected. `Ok(None)`: the value equals what the client
    /// shows, nothing to send.
    pub fn set(&self, kind: &str, key: &str, value: Value) -> Result<Option<PendingWrite>, ClientError> {
        self.write(LocalOp::Set {
            kind: kind.to_owned(),
            key: key.to_owned(),
            value,
            if_version: None,
        })
    }

    /// Like [`Client::set`], only if the entry's version is `version` (0:
    /// only if it does not exist), as the client shows it (else refused
    /// `conflict`) and as the server holds it (else rejected `conflict`).
    pub fn set_if_version(
        &self,
        kind: &str,
        key: &str,
        value: Value,
        version: u64,
    ) -> Result<Option<PendingWrite>, ClientError> {
        self.write(LocalOp::Set {
            kind: kind.to_owned(),
            key: key.to_owned(),
            value,
            if_version: Some(version),
        })
    }

    /// Edits `kind`/`key` with a JSON Merge Patch (RFC 7396; see
    /// [`store_core::json::merge_patch`]): shown at once over the value the
    /// client shows, sent as a patch, which the server applies to its own
    /// value. Refused `key_not_found` when the client does not show the key
    /// (wait for [`ClientEvent::Synced`] to patch what the server holds).
    /// `Ok(None)`: the patch changes nothing the client shows.
    pub fn patch(&self, kind: &str, key: &str, patch: Value) -> Result<Option<PendingWrite>, ClientError> {
        self.write(LocalOp::Patch {
            kind: kind.to_owned(),
            key: key.to_owned(),
            patch,
            if_version: None,
        })
    }

    /// Like [`Client::patch`], only if the entry's version is `version`.
    pub fn patch_if_version(
        &self,
        kind: &str,
        key: &str,
        patch: Value,
        version: u64,
    ) -> Result<Option<PendingWrite>, ClientError> {
        self.write(LocalOp::Patch {
            kind: kind.to_owned(),
            key: key.to_owned(),
            patch,
            if_version: Some(version),
        })
    }

    /// Deletes `kind`/`key`. `Ok(None)`: the client does not show it (wait
    /// for [`ClientEvent::Synced`] to delete what the server holds).
    pub fn delete(&self, kind: &str, key: &str) -> Result<Option<PendingWrite>, ClientError> {
        self.write(LocalOp::Delete {
            kind: kind.to_owned(),
            key: key.to_owned(),
            if_version: None,
        })
    }

    /// Like [`Client::delete`], only if the entry's version is `version`.
    pub fn delete_if_version(
        &self,
        kind: &str,
        key: &str,
        version: u64,
    ) -> Result<Option<PendingWrite>, ClientError> {
        self.write(LocalOp::Delete {
            kind: kind.to_owned(),
            key: key.to_owned(),
            if_version: Some(version),
        })
    }

    fn write(&self, op: LocalOp) -> Result<Option<PendingWrite>, ClientError> {
        let (tx, answer) = oneshot::channel();
        let op_id = {
            let mut inner = self.shared.inner.lock();
            if let Some(e) = &inner.stopped {
                return Err(e.clone());
            }
            let (results, staged) = inner.replica.stage([op]);
            let outcome = results.into_iter().next().expect("one result per write");
            let invalid = |e: store_core::Error| ClientError::Invalid {
                code: e.code(),
                message: e.to_string(),
            };
            let op_id = match outcome.map_err(invalid)? {
                Outcome::Written(_, op_id) => op_id,
                Outcome::Deleted(d) => d.and_then(|(_, op_id)| op_id),
                Outcome::Many(_) => unreachable!("one key per write"),
            };
            if let Some(staged) = staged {
                let places: Vec<f64> = staged
                    .plan
                    .put_pending
                    .iter()
                    .map(|_| {
                        inner.next_place += 1.0;
                        inner.next_place
                    })
                    .collect();
                inner.replica.commit(staged, places).map_err(invalid)?;
            }
            let Some(op_id) = op_id else { return Ok(None) };
            inner.waiters.insert(op_id.clone(), tx);
            op_id
        };
        self.shared.wake.notify_one();
        Ok(Some(PendingWrite { op_id, answer }))
    }

    /// The value of `kind`/`key` as the app should show it: the server's
    /// state with the pending writes applied on top.
    #[must_use]
    pub fn get(&self, kind: &str, key: &str) -> Option<Value> {
        self.entry(kind, key).map(|(value, _)| value)
    }

    /// The value of `kind`/`key` as [`Client::get`] shows it, with its
    /// version: the server's, or the one the pending writes will give it.
    #[must_use]
    pub fn entry(&self, kind: &str, key: &str) -> Option<(Value, u64)> {
        let inner = self.shared.inner.lock();
        let entry = inner.replica.engine().get(kind, key).ok()??;
        Some((entry.value.clone(), entry.version))
    }

    /// Every key of `kind` with its value (as [`Client::get`]), sorted by key.
    #[must_use]
    pub fn list(&self, kind: &str) -> Vec<(String, Value)> {
        let inner = self.shared.inner.lock();
        let list = inner.replica.engine().list(kind, &[]).unwrap_or_default();
        list.into_iter()
            .map(|(k, e)| (k.to_owned(), e.value.clone()))
            .collect()
    }

    /// A stream of what happens from now on. Each call is a new subscriber;
    /// it buffers without bound, so keep reading it or drop it.
    #[must_use]
    pub fn events(&self) -> Events {
        let (tx, rx) = mpsc::unbounded();
        let mut inner = self.shared.inner.lock();
        if let Some(e) = &inner.stopped {
            let _ = tx.unbounded_send(Update::Stopped(e.clone()));
        } else {
            inner.subscribers.push(tx);
        }
        Events { rx }
    }

    /// The connection, the pending count and the cursor.
    #[must_use]
    pub fn status(&self) -> Status {
        let mut inner = self.shared.inner.lock();
        let session = inner.session();
        let (synced, pending, cursor) = (session.is_synced(), session.pending().len(), session.cursor());
        Status {
            link: inner.link,
            synced,
            pending,
            cursor,
        }
    }

    /// Everything to persist to resume later: pass it as
    /// [`ClientOptions::state`].
    #[must_use]
    pub fn state(&self) -> ClientState {
        let inner = self.shared.inner.lock();
        inner.replica.client_state().expect("the client's replica syncs")
    }

    /// Stops the client: closes the socket and waits for the task to end.
    /// Unanswered writes stay in [`Client::state`].
    pub async fn close(&self) {
        self.stop.send_replace(true);
        let task = self.shared.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The stream of [`Update`]s from [`Client::events`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Update>,
}

impl Stream for Events {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}
