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

pub mod codec;
mod message;
pub mod reconnect;
pub mod session;
pub mod view;

pub use message::{
    Ack, ChangeBatch, ClientMessage, CloseCode, ErrorCode, Hello, Op, OpAction, OpResult, PROTOCOL_VERSION,
    ProtocolError, Push, Reject, Rights, ServerError, ServerMessage, Snapshot, SnapshotEntry, SnapshotReason,
    Welcome,
};
