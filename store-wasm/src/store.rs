//! [`IdbStore`]: a store-core [`Replica`] persisted in IndexedDB.
//!
//! The replica holds every rule: what a write stages and queues, what to
//! persist after the server says something, how the view rebases, what the
//! tabs tell each other. This shell runs it: one writer task takes the jobs
//! in order (local writes, sync passes, reloads), persists each one's
//! [`Plan`] in one IndexedDB transaction, and only then lets the replica
//! publish to watchers and answer. Every replica mutation that touches the
//! engine goes through that writer, so none interleaves with a transaction
//! awaiting IndexedDB; reads come from the engine in memory.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use serde_json::Value;
use store_core::sync::replica::{
    Answer, AnswerState, Answered, LocalOp, Outcome, Reaction, Replica, TabMessage,
};
use store_core::sync::session::ClientConfig;
use store_core::{Engine, Error, Result, StoreOptions};

use crate::idb::{Batch, Db, unique_id};
use crate::tabs::Channel;

/// What the writer reports to the connection driver and the API.
#[derive(Debug, Clone)]
pub(crate) enum Notice {
    /// Ops were queued: send them.
    Queued,
    /// Another tab joined and wants the leader's status.
    TabJoined,
    /// The leader's status changed.
    Status,
    /// The server answered an op (persisted).
    Answered(Answered),
}

/// Hears what the writer persisted.
type NoticeFn = Box<dyn Fn(Vec<Notice>)>;

/// What a synced store needs at open.
pub struct SyncSetup {
    /// The namespace to sync.
    pub namespace: String,
    /// The credential sent in `hello`, until the connection sets another
    /// one ([`store_core::sync::session::ClientSession::set_token`]).
    pub token: String,
    /// The kinds to sync; `None` is every kind.
    pub kinds: Option<Vec<String>>,
}

enum Job {
    Write(LocalOp, oneshot::Sender<Result<Outcome>>),
    /// Persist and show what the replica learned since the last pass.
    Sync,
    /// Re-read the sync state from IndexedDB and rebase every key.
    Reload(oneshot::Sender<Result<()>>),
}

struct Inner {
    db: Db,
    replica: RefCell<Replica>,
    queue: RefCell<VecDeque<Job>>,
    writing: Cell<bool>,
    /// Told when the writer runs out of work.
    idle: RefCell<Vec<oneshot::Sender<()>>>,
    waiters: RefCell<HashMap<String, Vec<oneshot::Sender<Answer>>>>,
    on_notice: RefCell<Option<NoticeFn>>,
    /// The other tabs of a synced store.
    channel: RefCell<Option<Channel>>,
    closed: Cell<bool>,
}

/// Where the other tabs' messages go: held while the store opens (the
/// channel is joined before the storage is read, so that nothing posted
/// after the read started is missed), then to the store.
#[derive(Default)]
struct Inbox {
    opening: RefCell<Option<Vec<TabMessage>>>,
    store: RefCell<Weak<Inner>>,
}

impl Inbox {
    fn deliver(&self, message: TabMessage) {
        if let Some(held) = self.opening.borrow_mut().as_mut() {
            held.push(message);
            return;
        }
        let inner = self.store.borrow().upgrade();
        if let Some(inner) = inner {
            IdbStore { inner }.receive(message);
        }
    }
}

/// The store: an engine persisted in IndexedDB, optionally synced.
#[derive(Clone)]
pub struct IdbStore {
    inner: Rc<Inner>,
}

fn storage(e: crate::js::JsError) -> Error {
    if e.code == crate::js::Code::Store("closed") {
        Error::Closed
    } else {
        Error::Storage(e.message.into())
    }
}

fn reentrant() -> Error {
    Error::Storage("the store was called from its own validator, compare or setFn function".into())
}

fn log(what: &str, e: &dyn std::fmt::Display) {
    web_sys::console::error_1(&format!("zestor: {what}: {e}").into());
}

impl IdbStore {
    /// Opens (or creates) IndexedDB database `name`, restoring its state;
    /// a synced store joins the other tabs of `name` and mirrors the one
    /// that leads until [`IdbStore::set_leader`] makes it the leader.
    pub async fn open(name: &str, options: StoreOptions<Value>, sync: Option<SyncSetup>) -> Result<IdbStore> {
        let db = Db::open(name).await.map_err(storage)?;
        let inbox = Rc::new(Inbox::default());
        let channel = match &sync {
            Some(_) => {
                *inbox.opening.borrow_mut() = Some(Vec::new());
                let inbox = inbox.clone();
                Channel::join(name, move |message| inbox.deliver(message))
            }
            None => None,
        };
        let loaded = db.load().await.map_err(storage)?;
        let client_id = loaded.client_id();
        let persisted = loaded.persisted()?;
        let sync = match sync {
            None => None,
            Some(setup) => {
                let client_id = match client_id {
                    Some(id) => id,
                    None => {
                        // A database created without one.
                        let id = unique_id(name);
                        db.put_client_id(&id).await.map_err(storage)?;
                        id
                    }
                };
                let mut config = ClientConfig::new(setup.namespace, setup.token, client_id);
                config.kinds = setup.kinds;
                // Op ids: unique to this open store, as every tab and reload
                // shares the client id.
                Some((config, unique_id(name)))
            }
        };
        let replica = Replica::open(options, sync, persisted)?;
        let store = IdbStore {
            inner: Rc::new(Inner {
                db,
                replica: RefCell::new(replica),
                queue: RefCell::new(VecDeque::new()),
                writing: Cell::new(false),
                idle: RefCell::new(Vec::new()),
                waiters: RefCell::new(HashMap::new()),
                on_notice: RefCell::new(None),
                channel: RefCell::new(channel),
                closed: Cell::new(false),
            }),
        };
        *inbox.store.borrow_mut() = Rc::downgrade(&store.inner);
        if let Some(held) = inbox.opening.borrow_mut().take() {
            // What the leader posted while this tab read the storage, which
            // may or may not hold it.
            store.set_leader(false);
            for message in held {
                store.receive(message);
            }
            for message in store.replica()?.joined() {
                store.post(&message);
            }
        }
        Ok(store)
    }

    /// The replica, for reads; fails when called from inside a write's
    /// callback that holds it.
    pub fn replica(&self) -> Result<Ref<'_, Replica>> {
        self.inner.replica.try_borrow().map_err(|_| reentrant())
    }

    /// The replica, to drive its session (what the connection does).
    pub fn replica_mut(&self) -> Result<RefMut<'_, Replica>> {
        self.inner.replica.try_borrow_mut().map_err(|_| reentrant())
    }

    /// The engine, for reads.
    pub fn engine(&self) -> Result<Ref<'_, Engine<Value>>> {
        Ok(Ref::map(self.replica()?, Replica::engine))
    }

    pub(crate) fn engine_mut(&self) -> Result<RefMut<'_, Engine<Value>>> {
        Ok(RefMut::map(self.replica_mut()?, Replica::engine_mut))
    }

    /// Whether `kind`/`key` has ops not yet answered by the server.
    pub fn is_pending(&self, kind: &str, key: &str) -> bool {
        self.replica().is_ok_and(|r| r.is_pending(kind, key))
    }

    /// Whether the change at `rev` showed pending ops.
    pub fn is_pending_rev(&self, rev: u64) -> bool {
        self.replica().is_ok_and(|r| r.is_pending_rev(rev))
    }

    /// Where the API hears about answered ops once they are persisted.
    pub(crate) fn on_notice(&self, f: impl Fn(Vec<Notice>) + 'static) {
        *self.inner.on_notice.borrow_mut() = Some(Box::new(f));
    }

    /// Waits for the server's answer to `op_id`; `None` if the id is neither
    /// pending nor recently answered.
    pub fn answer(&self, op_id: &str) -> Option<oneshot::Receiver<Answer>> {
        let (tx, rx) = oneshot::channel();
        match self.replica().ok()?.answer(op_id) {
            AnswerState::Answered(answer) => {
                let _ = tx.send(answer);
            }
            AnswerState::Pending => {
                let mut waiters = self.inner.waiters.borrow_mut();
                waiters.entry(op_id.to_owned()).or_default().push(tx);
            }
            AnswerState::Unknown => return None,
        }
        Some(rx)
    }

    /// Queues a write; resolves once it is durable in IndexedDB.
    pub async fn submit(&self, op: LocalOp) -> Result<Outcome> {
        if self.inner.closed.get() {
            return Err(Error::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.push(Job::Write(op, tx));
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Tells the writer the replica learned something to persist and show.
    pub fn sync_changed(&self) {
        self.push(Job::Sync);
    }

    fn push(&self, job: Job) {
        self.inner.queue.borrow_mut().push_back(job);
        if !self.inner.writing.replace(true) {
            let store = self.clone();
            wasm_bindgen_futures::spawn_local(async move { store.run_writer().await });
        }
    }

    async fn run_writer(self) {
        loop {
            let jobs: Vec<Job> = {
                let mut queue = self.inner.queue.borrow_mut();
                match queue.front() {
                    None => {
                        self.inner.writing.set(false);
                        for waiter in self.inner.idle.borrow_mut().drain(..) {
                            let _ = waiter.send(());
                        }
                        return;
                    }
                    Some(Job::Sync) => {
                        // Every queued sync job is served by one pass.
                        queue.retain(|j| !matches!(j, Job::Sync));
                        vec![Job::Sync]
                    }
                    Some(Job::Reload(_)) => queue.pop_front().into_iter().collect(),
                    Some(Job::Write(..)) => {
                        let n = queue.iter().take_while(|j| matches!(j, Job::Write(..))).count();
                        queue.drain(..n).collect()
                    }
                }
            };
            let mut writes = Vec::new();
            for job in jobs {
                match job {
                    Job::Write(op, reply) => writes.push((op, reply)),
                    Job::Sync => self.persist_sync().await,
                    Job::Reload(reply) => {
                        let _ = reply.send(self.reload_now().await);
                    }
                }
            }
            if !writes.is_empty() {
                self.write_batch(writes).await;
            }
        }
    }

    /// Stages, persists and commits one batch of local writes.
    async fn write_batch(&self, writes: Vec<(LocalOp, oneshot::Sender<Result<Outcome>>)>) {
        let (ops, replies): (Vec<_>, Vec<_>) = writes.into_iter().unzip();
        // Staging needs only a shared borrow, so validators, compare and
        // setFn functions may read the store.
        let (results, staged) = self.inner.replica.borrow().stage(ops);
        let Some(staged) = staged else {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
            return;
        };
        // Only this writer mutates the engine, so nothing commits between
        // staging and the commit below.
        let written = match Batch::from_plan(&staged.plan) {
            Ok(batch) => self.inner.db.write(&batch).await,
            Err(e) => Err(e),
        };
        let places = match written {
            Ok(places) => places,
            Err(e) => {
                // `closed` (another tab deleted or upgraded the database)
                // stays `Error::Closed`; anything else is a storage error.
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result.and_then(|_| Err(storage(e.clone()))));
                }
                return;
            }
        };
        let committed = self.inner.replica.borrow_mut().commit(staged, places);
        let queued = match &committed {
            Ok(message) => message.as_ref().map(|m| self.post(m)).is_some(),
            Err(e) => {
                log("committing a write failed", e);
                false
            }
        };
        for (reply, result) in replies.into_iter().zip(results) {
            let result = match &committed {
                Err(e) => result.and_then(|_| Err(Error::Storage(e.to_string().into()))),
                Ok(_) => result,
            };
            let _ = reply.send(result);
        }
        if queued {
            self.push_notices(vec![Notice::Queued]);
        }
    }

    /// Persists what the replica learned and shows it.
    async fn persist_sync(&self) {
        let Some(pass) = self.inner.replica.borrow_mut().plan_sync() else {
            return;
        };
        let persisted = if pass.plan.is_empty() {
            Ok(())
        } else {
            match Batch::from_plan(&pass.plan) {
                Ok(batch) => self.inner.db.write(&batch).await.map(drop),
                Err(e) => Err(e),
            }
        };
        if let Err(e) = persisted {
            // Kept for the next pass.
            log("persisting sync state failed", &e);
            self.inner.replica.borrow_mut().sync_failed(pass);
            return;
        }
        let applied = self.inner.replica.borrow_mut().sync_persisted(pass);
        if let Some(e) = applied.error {
            log("applying synced changes failed", &e);
        }
        for message in &applied.messages {
            self.post(message);
        }
        let mut waiters = self.inner.waiters.borrow_mut();
        for answered in &applied.answered {
            for w in waiters.remove(answered.op_id()).unwrap_or_default() {
                let _ = w.send(answered.answer());
            }
        }
        drop(waiters);
        self.push_notices(applied.answered.into_iter().map(Notice::Answered).collect());
    }

    /// Re-reads the sync state from IndexedDB (the truth every tab
    /// persists to) and rebases the view onto it: for a tab that takes over
    /// the connection, or after the leader applied a snapshot.
    pub async fn reload(&self) -> Result<()> {
        if self.inner.closed.get() {
            return Err(Error::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.push(Job::Reload(tx));
        rx.await.unwrap_or(Err(Error::Closed))
    }

    async fn reload_now(&self) -> Result<()> {
        if !self.replica()?.is_synced() {
            return Ok(());
        }
        self.inner.replica.borrow_mut().begin_read();
        let persisted = match self.inner.db.load().await {
            Ok(loaded) => loaded.persisted(),
            Err(e) => Err(storage(e)),
        };
        let persisted = persisted.inspect_err(|_| self.inner.replica.borrow_mut().read_failed())?;
        self.inner.replica.borrow_mut().reload(persisted);
        self.persist_sync().await;
        Ok(())
    }

    /// Makes this tab the one holding the connection (or not).
    pub fn set_leader(&self, leader: bool) {
        self.inner.replica.borrow_mut().set_leader(leader);
    }

    /// Posts to the other tabs.
    pub(crate) fn post(&self, message: &TabMessage) {
        if let Some(channel) = self.inner.channel.borrow().as_ref() {
            channel.post(message);
        }
    }

    /// Applies what another tab posted.
    fn receive(&self, message: TabMessage) {
        if self.inner.closed.get() {
            return;
        }
        let Ok(mut replica) = self.replica_mut() else {
            return;
        };
        let reaction = replica.receive(message);
        drop(replica);
        match reaction {
            Reaction::None => {}
            Reaction::Post(message) => self.post(&message),
            Reaction::Persist { send } => {
                self.sync_changed();
                if send {
                    self.push_notices(vec![Notice::Queued]);
                }
            }
            Reaction::Reload => {
                let store = self.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    if let Err(e) = store.reload().await {
                        log("reloading after a snapshot failed", &e);
                    }
                });
            }
            Reaction::Status => self.push_notices(vec![Notice::Status]),
            Reaction::Joined => self.push_notices(vec![Notice::TabJoined]),
        }
    }

    fn push_notices(&self, notices: Vec<Notice>) {
        let callback = self.inner.on_notice.borrow();
        if let Some(f) = callback.as_ref() {
            f(notices);
        }
    }

    /// Closes the store: pending writes finish, later calls fail with
    /// `closed`, watches end.
    pub async fn close(&self) {
        if self.inner.closed.replace(true) {
            return;
        }
        // Let queued writes drain.
        if self.inner.writing.get() {
            let (tx, rx) = oneshot::channel::<()>();
            self.inner.idle.borrow_mut().push(tx);
            let _ = rx.await;
        }
        if let Ok(mut engine) = self.engine_mut() {
            engine.close();
        }
        self.inner.channel.borrow_mut().take();
        self.inner.db.close();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }
}
