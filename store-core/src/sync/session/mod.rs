//! The two ends of a sync connection as state machines, sans I/O.
//!
//! [`ServerSession`] is one client connection as the server sees it;
//! [`ClientSession`] is the client (the native client and the browser
//! package). Neither does I/O or reads a clock: inputs are `handle_*`
//! methods (time is a plain `u64` of milliseconds chosen by the shell),
//! outputs are drained with `poll_*` methods. The shell moves frames over a
//! WebSocket, serves the server session's [`ServerEffect`]s from a store and
//! persists the client's [`ClientState`].
//!
//! What the protocol relies on from the transport: a WebSocket delivers the
//! frames of one connection in order and without duplicates. Reordering and
//! duplication only happen across connections (a client reconnects while
//! frames of its old connection are still being handled); op ids make that
//! safe, since the server answers a retried op id with its original answer
//! instead of applying it again.
//!
//! # The loop
//!
//! A client and a server session wired back to back; a real shell moves the
//! frames over a WebSocket and serves the effects from its store.
//!
//! ```
//! use serde_json::json;
//! use store_core::sync::codec::encode_server;
//! use store_core::sync::session::*;
//! use store_core::sync::{Ack, OpAction, OpResult, Rights, SnapshotReason};
//! use store_core::{Event, EventType};
//!
//! let mut client = ClientSession::new(ClientConfig::new("ns", "token", "client-1"));
//! let mut server = ServerSession::new(ServerConfig::default(), 0);
//! client.push_op("task", "t1", OpAction::Set, Some(json!({"title": "ship"})), None);
//! client.connect(0);
//! for _ in 0..3 {
//!     while let Some(frame) = client.poll_transmit_frame(0) {
//!         server.handle_frame(frame.as_bytes(), 0);
//!     }
//!     while let Some(effect) = server.poll_effect() {
//!         match effect {
//!             ServerEffect::Authenticate { .. } => server.handle_auth(Ok(Authorized {
//!                 rights: Rights::ReadWrite,
//!                 schemas: Default::default(),
//!                 expires_at_ms: None,
//!             })),
//!             ServerEffect::StartSync { .. } => server.handle_sync_start(SyncStart::Snapshot {
//!                 rev: 0,
//!                 reason: SnapshotReason::Initial,
//!                 entries: Vec::new(),
//!             }),
//!             ServerEffect::Apply { ops, .. } => {
//!                 // A real shell writes durably; then it publishes, then answers.
//!                 let op = &ops[0];
//!                 let value = op.value.clone().unwrap();
//!                 let event = Event { kind: op.kind.clone(), key: op.key.clone(),
//!                     event_type: EventType::Create, value, version: 1, rev: 1 };
//!                 server.handle_events(vec![event], 1);
//!                 server.handle_applied(vec![Ok(Ack { op_id: op.op_id.clone(),
//!                     result: OpResult::Created, version: 1, rev: 1, value: None })]);
//!             }
//!         }
//!     }
//!     while let Some(message) = server.poll_transmit() {
//!         client.handle_frame(encode_server(&message).as_bytes(), 0).unwrap();
//!     }
//! }
//! assert!(client.is_synced());
//! assert_eq!(client.pending().len(), 0);
//! assert_eq!((client.cursor(), client.confirmed("task", "t1").unwrap().version), (Some(1), 1));
//! assert!(std::iter::from_fn(|| client.poll_event()).any(|e| matches!(e, ClientEvent::Acked(_))));
//! ```

mod client;
mod server;

pub use client::{ClientConfig, ClientEvent, ClientSession, ClientState};
pub use server::{
    Authorized, BadFrame, Denied, Outbound, ServerConfig, ServerEffect, ServerSession, SyncStart,
};
