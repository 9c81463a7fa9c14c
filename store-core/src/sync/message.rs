//! The messages of protocol version [`PROTOCOL_VERSION`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Deleted, Event, SetResult, Written};

/// The protocol version this build speaks: a client says it in `hello`.
/// Version 2 added the `patch` action.
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest protocol version a server of this build accepts: a session
/// speaks the client's version, so older clients keep working (a version 1
/// session refuses `patch` ops).
pub const MIN_PROTOCOL_VERSION: u32 = 1;

// ---- client → server ----

/// Everything a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Opens the session; must be the first message.
    Hello(Hello),
    /// Writes to apply, in order.
    Push(Push),
    /// A heartbeat; answered with `pong` carrying the same nonce.
    Ping {
        /// Echoed back.
        #[serde(default)]
        nonce: u64,
    },
    /// The answer to a server `ping`.
    Pong {
        /// The nonce of the ping answered.
        #[serde(default)]
        nonce: u64,
    },
}

impl ClientMessage {
    /// Every `type` a client message has on the wire: the names of
    /// [`ClientMessage::type_name`], checked against it by the codec's tests.
    pub const TYPES: &'static [&'static str] = &["hello", "push", "ping", "pong"];

    /// This message's `type` on the wire. A new variant fails to compile
    /// here until it is named; add the name to [`ClientMessage::TYPES`].
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Hello(_) => "hello",
            ClientMessage::Push(_) => "push",
            ClientMessage::Ping { .. } => "ping",
            ClientMessage::Pong { .. } => "pong",
        }
    }
}

/// The first message of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub protocol: u32,
    /// The namespace to sync.
    pub namespace: String,
    /// The credential that grants access to the namespace.
    pub token: String,
    /// A stable id of this client installation; op ids are unique per client.
    pub client_id: String,
    /// The last revision the client has applied; absent for a first sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Limits the subscription to these kinds; absent means every kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<String>>,
}

/// A batch of client writes, applied in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Push {
    /// The writes.
    pub ops: Vec<Op>,
}

/// One client write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Unique per client; a retried op id is answered, not applied again.
    pub op_id: String,
    /// The kind written.
    pub kind: String,
    /// The key written.
    pub key: String,
    /// What to do.
    pub action: OpAction,
    /// The value, for `set` (`null` is a value; an absent field is none).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
    /// Compare-and-set: apply only at this version (0: the key must not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<u64>,
}

/// Reads a field that is present, `null` included, as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// What an [`Op`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpAction {
    /// Write `value`.
    Set,
    /// Apply `value` to the key's value as a JSON Merge Patch (RFC 7396);
    /// `key_not_found` when the key is absent (protocol 2).
    Patch,
    /// Remove the key.
    Delete,
}

impl OpAction {
    /// The action as it appears on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OpAction::Set => "set",
            OpAction::Patch => "patch",
            OpAction::Delete => "delete",
        }
    }

    /// The first protocol version that has this action.
    #[must_use]
    pub fn since_protocol(self) -> u32 {
        match self {
            OpAction::Set | OpAction::Delete => 1,
            OpAction::Patch => 2,
        }
    }
}

// ---- server → client ----

/// Everything a server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to `hello`.
    Welcome(Welcome),
    /// Part of a snapshot of the namespace at a revision.
    Snapshot(Snapshot),
    /// Committed changes, in revision order.
    Changes(ChangeBatch),
    /// A client op was applied (and is durable).
    Ack(Ack),
    /// A client op was refused; nothing was written.
    Reject(Reject),
    /// A session-level error; when `fatal`, the server closes the socket.
    Error(ServerError),
    /// A heartbeat; answer with `pong` carrying the same nonce.
    Ping {
        /// Echo it back.
        #[serde(default)]
        nonce: u64,
    },
    /// The answer to a client `ping`.
    Pong {
        /// The nonce of the ping answered.
        #[serde(default)]
        nonce: u64,
    },
}

impl ServerMessage {
    /// Every `type` a server message has on the wire: the names of
    /// [`ServerMessage::type_name`], checked against it by the codec's tests.
    pub const TYPES: &'static [&'static str] = &[
        "welcome", "snapshot", "changes", "ack", "reject", "error", "ping", "pong",
    ];

    /// This message's `type` on the wire. A new variant fails to compile
    /// here until it is named; add the name to [`ServerMessage::TYPES`].
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerMessage::Welcome(_) => "welcome",
            ServerMessage::Snapshot(_) => "snapshot",
            ServerMessage::Changes(_) => "changes",
            ServerMessage::Ack(_) => "ack",
            ServerMessage::Reject(_) => "reject",
            ServerMessage::Error(_) => "error",
            ServerMessage::Ping { .. } => "ping",
            ServerMessage::Pong { .. } => "pong",
        }
    }
}

/// What a token allows in its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rights {
    /// Sync only; every op is rejected with `forbidden`.
    Read,
    /// Sync and write.
    ReadWrite,
}

/// The answer to `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version of the session: the client's, which the server
    /// supports.
    pub protocol: u32,
    /// The namespace of the session.
    pub namespace: String,
    /// What the token allows.
    pub rights: Rights,
    /// The JSON Schema of each kind that has one; clients validate with them
    /// before queueing a write.
    pub schemas: BTreeMap<String, Value>,
    /// The server pings a silent client after this long, and closes it after
    /// twice as long.
    pub heartbeat_ms: u64,
    /// The largest frame the server accepts, in bytes.
    pub max_frame_bytes: usize,
}

/// Why a snapshot is sent instead of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotReason {
    /// The client sent no `since`.
    Initial,
    /// The client's `since` is older than the retained history.
    Compacted,
    /// The client's `since` is ahead of the server (the server's data was
    /// replaced): the client must discard its confirmed state.
    Reset,
    /// The client fell too far behind while connected.
    Lagged,
}

/// A part of a snapshot. Parts carry consecutive slices of the namespace's
/// entries (of the subscribed kinds); the one with `done` completes it, after
/// which the client's confirmed state is exactly the snapshot at `rev`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The revision the snapshot was taken at.
    pub rev: u64,
    /// Why a snapshot is sent.
    pub reason: SnapshotReason,
    /// Entries of this part.
    pub entries: Vec<SnapshotEntry>,
    /// Whether this is the last part.
    pub done: bool,
}

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// The kind.
    pub kind: String,
    /// The key.
    pub key: String,
    /// The value.
    pub value: Value,
    /// The entry's version.
    pub version: u64,
    /// The revision of its last change.
    pub rev: u64,
}

/// Committed changes after the client's revision, in order, without gaps in
/// the revisions of the subscribed kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeBatch {
    /// The changes.
    pub events: Vec<Event<Value>>,
    /// The namespace revision the client is at after applying them (may be
    /// past the last event when other kinds changed).
    pub rev: u64,
}

/// An applied op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The op answered (a retried op id gets the original answer).
    pub op_id: String,
    /// What happened.
    pub result: OpResult,
    /// The key's version now (0 after a delete or for an absent key).
    pub version: u64,
    /// The revision of the change; for `unchanged` the revision of the
    /// entry's last change, for `absent` the namespace revision at the time.
    pub rev: u64,
    /// The value a `patch` left when it changed the key (protocol 2): only
    /// the server knows it before the change arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// What an applied op did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpResult {
    /// A `set` created the key.
    Created,
    /// A `set` or `patch` changed the key's value.
    Updated,
    /// A `set` or `patch` left a value equal to the stored one: nothing
    /// changed.
    Unchanged,
    /// A `delete` removed the key.
    Deleted,
    /// A `delete` found no key: nothing changed.
    Absent,
}

impl Ack {
    /// The ack of a `set`.
    #[must_use]
    pub fn written(op_id: impl Into<String>, w: Written) -> Self {
        let result = match w.result {
            SetResult::Created => OpResult::Created,
            SetResult::Updated => OpResult::Updated,
            SetResult::Unchanged => OpResult::Unchanged,
        };
        Ack {
            op_id: op_id.into(),
            result,
            version: w.version,
            rev: w.rev,
            value: None,
        }
    }

    /// The ack of a `delete`; `head` is the namespace revision, reported
    /// when there was nothing to delete.
    #[must_use]
    pub fn deleted<T>(op_id: impl Into<String>, d: Option<&Deleted<T>>, head: u64) -> Self {
        let (result, rev) = match d {
            Some(d) => (OpResult::Deleted, d.rev),
            None => (OpResult::Absent, head),
        };
        Ack {
            op_id: op_id.into(),
            result,
            version: 0,
            rev,
            value: None,
        }
    }
}

/// A refused op; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// The op refused (a retried op id gets the original answer).
    pub op_id: String,
    /// Why, as a stable code.
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
}

impl Reject {
    /// The reject answering an op that failed with `e`.
    #[must_use]
    pub fn of(op_id: impl Into<String>, e: &crate::Error) -> Self {
        Reject {
            op_id: op_id.into(),
            code: ErrorCode::of(e),
            message: e.to_string(),
        }
    }
}

/// A session-level error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerError {
    /// Why, as a stable code.
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
    /// Whether the server closes the connection after this message.
    pub fatal: bool,
}

/// The stable error codes of the protocol, shared by `reject` and `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not valid JSON, or not a valid message of its type.
    BadMessage,
    /// The message's `type` is not one this server knows.
    UnknownType,
    /// The frame is larger than the server's limit.
    TooLarge,
    /// The client's protocol version is not supported.
    UnsupportedProtocol,
    /// A message other than `hello` came first, or `hello` came twice.
    HelloExpected,
    /// The token is missing, unknown or expired.
    Unauthorized,
    /// The token does not allow this (another namespace, or a write with a
    /// read-only token).
    Forbidden,
    /// The client sent more ops than the server holds in flight.
    TooManyInFlight,
    /// The client read too slowly and fell behind the server's queue bound.
    SlowConsumer,
    /// The client stopped answering heartbeats.
    Timeout,
    /// The value failed the kind's validation or JSON Schema.
    Validation,
    /// `if_version` did not match.
    Conflict,
    /// The op named an empty kind.
    KindRequired,
    /// The op's kind or key is longer than
    /// [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
    KeyTooLong,
    /// The op's kind or key holds the NUL character.
    InvalidKey,
    /// A `patch` named a key that does not exist (protocol 2).
    KeyNotFound,
    /// The server is shutting down.
    ShuttingDown,
    /// The server failed; the op may be retried with the same op id.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::HelloExpected => "hello_expected",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManyInFlight => "too_many_in_flight",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Validation => "validation",
            ErrorCode::Conflict => "conflict",
            ErrorCode::KindRequired => "kind_required",
            ErrorCode::KeyTooLong => "key_too_long",
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::KeyNotFound => "key_not_found",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code of a store error answering an op.
    #[must_use]
    pub fn of(e: &crate::Error) -> Self {
        match e {
            crate::Error::Validation { .. } => ErrorCode::Validation,
            crate::Error::Conflict { .. } => ErrorCode::Conflict,
            crate::Error::KindRequired => ErrorCode::KindRequired,
            crate::Error::KeyTooLong { .. } => ErrorCode::KeyTooLong,
            crate::Error::InvalidKey { .. } => ErrorCode::InvalidKey,
            crate::Error::KeyNotFound => ErrorCode::KeyNotFound,
            // A value the store cannot take (it does not decode as the
            // store's type, or the backend cannot hold it) is the client's.
            crate::Error::Decode { .. } | crate::Error::Encoding(_) => ErrorCode::Validation,
            crate::Error::Closed => ErrorCode::ShuttingDown,
            _ => ErrorCode::Internal,
        }
    }

    /// The WebSocket close code that follows this error when it is fatal.
    #[must_use]
    pub fn close_code(self) -> CloseCode {
        match self {
            ErrorCode::BadMessage | ErrorCode::UnknownType | ErrorCode::HelloExpected => {
                CloseCode::ProtocolError
            }
            ErrorCode::TooLarge => CloseCode::TooBig,
            ErrorCode::UnsupportedProtocol => CloseCode::UnsupportedProtocol,
            ErrorCode::Unauthorized => CloseCode::Unauthorized,
            ErrorCode::Forbidden => CloseCode::Forbidden,
            ErrorCode::TooManyInFlight | ErrorCode::SlowConsumer => CloseCode::SlowConsumer,
            ErrorCode::Timeout => CloseCode::Timeout,
            ErrorCode::ShuttingDown => CloseCode::GoingAway,
            ErrorCode::Validation
            | ErrorCode::Conflict
            | ErrorCode::KindRequired
            | ErrorCode::KeyTooLong
            | ErrorCode::InvalidKey
            | ErrorCode::KeyNotFound
            | ErrorCode::Internal => CloseCode::InternalError,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The WebSocket close codes the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: the session ended normally.
    Normal,
    /// 1001: the server is shutting down; reconnect later.
    GoingAway,
    /// 1002: the client broke the protocol.
    ProtocolError,
    /// 1003: the client sent a kind of data the protocol does not take (a
    /// binary frame; the protocol is text only).
    UnsupportedData,
    /// 1007: a text frame that is not valid UTF-8.
    InvalidPayload,
    /// 1009: a frame exceeded the size limit.
    TooBig,
    /// 1011: the server failed.
    InternalError,
    /// 4000: the client's protocol version is not supported.
    UnsupportedProtocol,
    /// 4001: the token was refused; do not retry with it.
    Unauthorized,
    /// 4003: the token does not grant the namespace.
    Forbidden,
    /// 4008: the client fell behind or flooded the server; reconnect and resume.
    SlowConsumer,
    /// 4009: the client stopped answering heartbeats.
    Timeout,
}

impl CloseCode {
    /// The numeric close code.
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::TooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::UnsupportedProtocol => 4000,
            CloseCode::Unauthorized => 4001,
            CloseCode::Forbidden => 4003,
            CloseCode::SlowConsumer => 4008,
            CloseCode::Timeout => 4009,
        }
    }

    /// The close code with this number, if the protocol defines one.
    #[must_use]
    pub fn from_code(code: u16) -> Option<CloseCode> {
        [
            CloseCode::Normal,
            CloseCode::GoingAway,
            CloseCode::ProtocolError,
            CloseCode::UnsupportedData,
            CloseCode::InvalidPayload,
            CloseCode::TooBig,
            CloseCode::InternalError,
            CloseCode::UnsupportedProtocol,
            CloseCode::Unauthorized,
            CloseCode::Forbidden,
            CloseCode::SlowConsumer,
            CloseCode::Timeout,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }

    /// Whether a client should reconnect after this close.
    #[must_use]
    pub fn retryable(self) -> bool {
        matches!(
            self,
            CloseCode::GoingAway | CloseCode::InternalError | CloseCode::SlowConsumer | CloseCode::Timeout
        )
    }
}

/// A frame the codec could not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    /// The code sent back.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

impl ProtocolError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }

    /// The `error` message that answers this frame; fatal except for a bad op
    /// inside an otherwise valid session (the caller decides).
    #[must_use]
    pub fn to_message(&self, fatal: bool) -> ServerMessage {
        ServerMessage::Error(ServerError {
            code: self.code,
            message: self.message.clone(),
            fatal,
        })
    }
}
