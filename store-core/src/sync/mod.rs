//! The sync protocol's messages and their encoding, shared by the server,
//! the native client and the browser package.
//!
//! This module owns what travels on the wire: [`ClientMessage`] and
//! [`ServerMessage`], the error and close codes ([`ErrorCode`],
//! [`CloseCode`]), and the one place that turns them into bytes and back
//! ([`codec`]). It does no I/O. `docs/protocol.md` in the repository is the
//! reference a client implementer reads; the types here are that document
//! in code.
//!
//! Frames are JSON text. Every message is an object with a `"type"` field;
//! unknown fields are ignored (so later versions can add them), unknown types
//! are an [`ErrorCode::UnknownType`] error.
//!
//! # Where the client's rules live
//!
//! Both clients (the browser package and `sync_server::client`) keep their
//! rules here, so that they behave alike and are tested natively:
//!
//! - [`replica::Replica`]: a client's local store as one state machine: the
//!   engine the app reads and watches (the optimistic view, with versions),
//!   op ids, the check of a write before it is queued (the engine's rules,
//!   `if_version` against the view, the server's schemas), what to persist
//!   after each step ([`replica::Plan`]), the sync pass that shows what the
//!   server said, several instances (tabs) on one storage with one leader,
//!   and restart from what was persisted. The browser package and the
//!   native client are shells around it.
//! - [`session::ClientSession`]: the confirmed state, the queue of pending
//!   ops and the cursor; resuming and re-sending; acks before or after their
//!   changes (an early ack is never stepped back from); rejects that roll
//!   back and those that mean "send again" (`internal`, `shutting_down`);
//!   the check of a write against key rules and the server's schemas
//!   ([`session::ClientSession::check`]); the steps it records for a view.
//! - [`view`]: the optimistic view (confirmed + pending, with versions) and
//!   the rebase of recorded steps into ordered watch events.
//! - [`reconnect`]: retry or stop by close code, and the backoff.
//! - The shells move bytes and persist: the browser's `store-wasm`
//!   (IndexedDB, WebSocket, the tabs' `BroadcastChannel` and Web Lock) and
//!   the native client's tokio task.
//!
//! These rules are tested natively: `store-core/tests/sync_sessions.rs`
//! (sessions around a `SimServer`), `sync_view.rs` (seeded runs of one
//! session and its view, with sets, patches and deletes) and
//! `sync_replicas.rs`, a seeded simulation of devices with several tabs
//! that drives replicas exactly as the browser package does (its shell's
//! every await a separate event; unloads, takeovers, broken sockets, server
//! restarts, compaction, rejects). A failing seed prints the command that
//! replays it: `ZESTOR_SIM_SEED=n cargo test -p store-core --features
//! testkit --test sync_replicas` (`ZESTOR_SIM_TRACE=1` prints its events,
//! `ZESTOR_SIM_SEEDS` sets how many seeds a run takes, 500 by default).

pub mod codec;
mod message;
pub mod reconnect;
pub mod replica;
pub mod session;
pub mod view;

pub use message::{
    Ack, ChangeBatch, ClientMessage, CloseCode, ErrorCode, Hello, MIN_PROTOCOL_VERSION, Op, OpAction,
    OpResult, PROTOCOL_VERSION, ProtocolError, Push, Reject, Rights, ServerError, ServerMessage, Snapshot,
    SnapshotEntry, SnapshotReason, Welcome,
};
