//! [`ServerSession`]: one client connection as the server sees it.
//!
//! It owns the protocol rules of one connection — the handshake, the cursor
//! of what the client has been sent, the in-flight bound of its writes, the
//! heartbeats and the outbound bound — and nothing else. It never touches a
//! store: it asks the shell through [`ServerEffect`]s and is fed the answers
//! (`handle_auth`, `handle_sync_start`, `handle_applied`, `handle_events`).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::Event;
use crate::sync::codec::{self, Limits};
use crate::sync::{
    Ack, ChangeBatch, ClientMessage, CloseCode, ErrorCode, Hello, MIN_PROTOCOL_VERSION, Op, PROTOCOL_VERSION,
    Push, Reject, Rights, ServerError, ServerMessage, Snapshot, SnapshotEntry, SnapshotReason, Welcome,
};

/// How a [`ServerSession`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// What the decoder accepts; `max_frame_bytes` is also sent in `welcome`.
    pub limits: Limits,
    /// Ping a client silent for this long; close it after twice as long.
    pub heartbeat_ms: u64,
    /// The most entries in one `snapshot` part (at least 1).
    pub snapshot_part_entries: usize,
    /// The most ops of one connection sent to the shell and not yet answered.
    pub max_in_flight_ops: usize,
    /// The most messages (snapshot parts aside) waiting in
    /// [`ServerSession::poll_transmit`] before the session gives up with
    /// `slow_consumer`.
    pub max_queued_messages: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            heartbeat_ms: 30_000,
            snapshot_part_entries: 500,
            max_in_flight_ops: 10_000,
            max_queued_messages: 1_024,
        }
    }
}

/// What the session asks the shell to do. Each is answered by one call.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEffect {
    /// Check the token for the namespace; answer with
    /// [`ServerSession::handle_auth`].
    Authenticate {
        /// The namespace asked for.
        namespace: String,
        /// The credential.
        token: String,
        /// The client's id (op ids are unique per client id).
        client_id: String,
    },
    /// Bring the client up to date and start feeding live events; answer
    /// with [`ServerSession::handle_sync_start`], then call
    /// [`ServerSession::handle_events`] with every later commit.
    ///
    /// The shell decides atomically with subscribing: `since` absent →
    /// snapshot `initial`; within the retained history → the changes after
    /// it; older → snapshot `compacted`; ahead of the head → snapshot `reset`.
    StartSync {
        /// The client's cursor.
        since: Option<u64>,
        /// The subscribed kinds; `None` is every kind.
        kinds: Option<Vec<String>>,
    },
    /// Apply these ops in order, durably and idempotently by
    /// `(client_id, op_id)` (a retried op id gets its original answer);
    /// publish the changes (through `handle_events`) before answering with
    /// [`ServerSession::handle_applied`]. Apply effects are answered in the
    /// order they were emitted. Ops the session refused on their own (see
    /// [`codec::check_op`]) are left out; the session answers them itself,
    /// in their turn.
    Apply {
        /// The client's id.
        client_id: String,
        /// The ops, in order.
        ops: Vec<Op>,
    },
}

/// A successful authentication: what [`ServerSession::handle_auth`] takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorized {
    /// What the token allows.
    pub rights: Rights,
    /// The JSON Schema of each kind that has one, sent in `welcome`.
    pub schemas: BTreeMap<String, Value>,
    /// When the token stops being valid, in the shell's milliseconds (the
    /// clock of `now_ms`): the session then ends with a fatal
    /// `unauthorized` (close 4001), and the client connects again with a
    /// fresh token. `None`: the token does not expire.
    pub expires_at_ms: Option<u64>,
}

/// A token refused: the answer to [`ServerEffect::Authenticate`] that is
/// not [`Authorized`], or why a welcomed session loses its access
/// ([`ServerSession::handle_revoked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// `unauthorized` (no valid token) or `forbidden` (the token does not
    /// grant this).
    pub code: ErrorCode,
    /// Which check failed, for people (never the token itself).
    pub message: String,
}

impl Denied {
    /// `unauthorized`: the token is missing, unknown, malformed, badly
    /// signed or expired.
    #[must_use]
    pub fn unauthorized(message: impl Into<String>) -> Denied {
        Denied {
            code: ErrorCode::Unauthorized,
            message: message.into(),
        }
    }

    /// `forbidden`: the token is valid but does not grant this.
    #[must_use]
    pub fn forbidden(message: impl Into<String>) -> Denied {
        Denied {
            code: ErrorCode::Forbidden,
            message: message.into(),
        }
    }
}

/// How the shell brings a client up to date: the answer to
/// [`ServerEffect::StartSync`].
#[derive(Debug, Clone, PartialEq)]
pub enum SyncStart {
    /// The changes after the client's `since`, in revision order, and the
    /// namespace revision they bring the client to.
    Changes {
        /// The changes (other kinds are filtered out by the session).
        events: Vec<Event<Value>>,
        /// The namespace revision at the start of the live feed.
        rev: u64,
    },
    /// The namespace at `rev` (other kinds are filtered out by the session).
    Snapshot {
        /// The revision of the snapshot.
        rev: u64,
        /// Why a snapshot is sent.
        reason: SnapshotReason,
        /// Every entry of the subscribed kinds.
        entries: Vec<SnapshotEntry>,
    },
}

/// A message to send, as [`ServerSession::poll_outbound`] yields it: the
/// events of a `changes` message stay shared with the feed, so a shell
/// serving many sessions can encode each event once for all of them
/// ([`codec::encode_event`], [`codec::encode_changes`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A `changes` message.
    Changes {
        /// The changes, in revision order, as they were fed.
        events: Vec<Arc<Event<Value>>>,
        /// The namespace revision the client is at after them.
        rev: u64,
    },
    /// Any other message.
    Message(ServerMessage),
}

impl Outbound {
    /// The message (copying the events that are still shared).
    #[must_use]
    pub fn into_message(self) -> ServerMessage {
        match self {
            Outbound::Changes { events, rev } => ServerMessage::Changes(ChangeBatch {
                events: events.into_iter().map(Arc::unwrap_or_clone).collect(),
                rev,
            }),
            Outbound::Message(message) => message,
        }
    }
}

/// A frame the shell's WebSocket received but could not hand over as
/// text: what [`ServerSession::handle_bad_frame`] takes. Each one ends the
/// session with a fatal error and the close code that names the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadFrame {
    /// A binary frame: the protocol is text only. `bad_message`, close
    /// 1003 (unsupported data).
    Binary,
    /// A text frame whose payload is not valid UTF-8. `bad_message`, close
    /// 1007 (invalid payload data).
    InvalidUtf8,
    /// A frame, or a message of several frames, that the transport refused
    /// for its size after reading `size` of its bytes or its header saying
    /// so. `too_large`, close 1009.
    TooLarge {
        /// The size seen, in bytes.
        size: usize,
    },
    /// Framing that breaks RFC 6455 (an unmasked frame, reserved bits, a
    /// stray continuation…), described. `bad_message`, close 1002.
    Malformed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `hello`.
    Hello,
    /// `Authenticate` emitted, waiting for `handle_auth`.
    Authenticating,
    /// Welcomed; `StartSync` emitted, waiting for `handle_sync_start`.
    Syncing,
    /// Sending live changes.
    Live,
    /// Closed; nothing more happens.
    Closed,
}

/// An op of a `push` waiting for its answer, which is sent in op order.
#[derive(Debug)]
enum Pending {
    /// Sent to the shell in an `Apply`; answered by `handle_applied`.
    Applying(String),
    /// Refused by the session (see [`codec::check_op`]); its `reject` waits
    /// for the answers of the ops before it.
    Refused(Reject),
}

/// One client connection, server side, sans I/O.
///
/// The shell's loop: feed every received frame to [`handle_frame`], serve
/// every [`poll_effect`] and feed the answers back, feed commits to
/// [`handle_events`], send everything [`poll_transmit`] yields, arm a timer
/// at [`poll_timeout`] and call [`handle_timeout`] when it fires, and close
/// the socket with [`poll_close`]'s code once it returns one (after sending
/// what `poll_transmit` still holds).
///
/// [`handle_frame`]: ServerSession::handle_frame
/// [`poll_effect`]: ServerSession::poll_effect
/// [`handle_events`]: ServerSession::handle_events
/// [`poll_transmit`]: ServerSession::poll_transmit
/// [`poll_timeout`]: ServerSession::poll_timeout
/// [`handle_timeout`]: ServerSession::handle_timeout
/// [`poll_close`]: ServerSession::poll_close
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    phase: Phase,
    hello: Option<Hello>,
    rights: Rights,
    /// When the token expires (see [`Authorized::expires_at_ms`]).
    expires_at_ms: Option<u64>,
    kinds: Option<HashSet<String>>,
    /// The namespace revision the client has been sent up to.
    sent_rev: u64,
    /// Frames received while authenticating, handled once welcomed.
    deferred: VecDeque<ClientMessage>,
    /// Events fed before the sync start was answered.
    early: Vec<(Vec<Arc<Event<Value>>>, u64)>,
    /// The ops of each `Apply` not yet answered, in order.
    in_flight: VecDeque<Vec<Pending>>,
    in_flight_ops: usize,
    transmit: VecDeque<Outbound>,
    snapshot_parts_queued: usize,
    effects: VecDeque<ServerEffect>,
    close: Option<CloseCode>,
    close_taken: bool,
    last_rx_ms: u64,
    ping_sent: bool,
    next_nonce: u64,
}

impl ServerSession {
    /// A session for a connection accepted at `now_ms`.
    #[must_use]
    pub fn new(config: ServerConfig, now_ms: u64) -> Self {
        ServerSession {
            config,
            phase: Phase::Hello,
            hello: None,
            rights: Rights::Read,
            expires_at_ms: None,
            kinds: None,
            sent_rev: 0,
            deferred: VecDeque::new(),
            early: Vec::new(),
            in_flight: VecDeque::new(),
            in_flight_ops: 0,
            transmit: VecDeque::new(),
            snapshot_parts_queued: 0,
            effects: VecDeque::new(),
            close: None,
            close_taken: false,
            last_rx_ms: now_ms,
            ping_sent: false,
            next_nonce: 1,
        }
    }

    /// Whether the session is closed (a close code is or was available from
    /// [`ServerSession::poll_close`]).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the session is live: welcomed and brought up to date. Live
    /// events fed before are buffered.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    // ---- inputs ----

    /// Call with every frame received from the client, and the time.
    pub fn handle_frame(&mut self, bytes: &[u8], now_ms: u64) {
        if self.is_closed() {
            return;
        }
        self.last_rx_ms = now_ms;
        self.ping_sent = false;
        match codec::decode_client(bytes, &self.config.limits) {
            Ok(message) => self.handle_message(message),
            Err(e) => self.fail(e.code, e.message),
        }
    }

    /// Call with every frame received that the transport could not hand
    /// over as text, and the time: the session ends (see [`BadFrame`]).
    pub fn handle_bad_frame(&mut self, frame: BadFrame, now_ms: u64) {
        if self.is_closed() {
            return;
        }
        self.last_rx_ms = now_ms;
        let (code, close, message) = match frame {
            BadFrame::Binary => (
                ErrorCode::BadMessage,
                CloseCode::UnsupportedData,
                "a binary frame: the protocol takes text frames only".to_owned(),
            ),
            BadFrame::InvalidUtf8 => (
                ErrorCode::BadMessage,
                CloseCode::InvalidPayload,
                "a text frame that is not valid UTF-8".to_owned(),
            ),
            BadFrame::TooLarge { size } => (
                ErrorCode::TooLarge,
                CloseCode::TooBig,
                format!(
                    "a frame of at least {size} bytes exceeds the limit of {}",
                    self.config.limits.max_frame_bytes
                ),
            ),
            BadFrame::Malformed(what) => (
                ErrorCode::BadMessage,
                CloseCode::ProtocolError,
                format!("not a valid WebSocket frame: {what}"),
            ),
        };
        self.fail_with(code, close, message);
    }

    fn handle_message(&mut self, message: ClientMessage) {
        match (self.phase, message) {
            (_, ClientMessage::Ping { nonce }) if self.phase != Phase::Hello => {
                self.send(ServerMessage::Pong { nonce });
            }
            (_, ClientMessage::Pong { .. }) if self.phase != Phase::Hello => {}
            (Phase::Hello, ClientMessage::Hello(hello)) => {
                if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.protocol) {
                    return self.fail(
                        ErrorCode::UnsupportedProtocol,
                        format!(
                            "protocol {} is not supported; this server speaks {MIN_PROTOCOL_VERSION} to \
                             {PROTOCOL_VERSION}",
                            hello.protocol
                        ),
                    );
                }
                self.effects.push_back(ServerEffect::Authenticate {
                    namespace: hello.namespace.clone(),
                    token: hello.token.clone(),
                    client_id: hello.client_id.clone(),
                });
                self.kinds = hello.kinds.as_ref().map(|k| k.iter().cloned().collect());
                self.hello = Some(hello);
                self.phase = Phase::Authenticating;
            }
            (Phase::Hello, _) => self.fail(ErrorCode::HelloExpected, "the first message must be hello"),
            (_, ClientMessage::Hello(_)) => self.fail(ErrorCode::HelloExpected, "hello was already received"),
            (Phase::Authenticating, message) => {
                self.deferred.push_back(message);
                if self.deferred.len() > self.config.max_queued_messages {
                    self.fail(ErrorCode::TooManyInFlight, "too many messages before the welcome");
                }
            }
            (_, ClientMessage::Push(push)) => self.handle_push(push),
            (_, ClientMessage::Ping { .. } | ClientMessage::Pong { .. }) => {}
        }
    }

    fn handle_push(&mut self, push: Push) {
        if push.ops.is_empty() {
            return;
        }
        if self.rights == Rights::Read {
            for op in push.ops {
                self.send(ServerMessage::Reject(Reject {
                    op_id: op.op_id,
                    code: ErrorCode::Forbidden,
                    message: "the token is read-only".into(),
                }));
            }
            return;
        }
        if self.in_flight_ops + push.ops.len() > self.config.max_in_flight_ops {
            return self.fail(
                ErrorCode::TooManyInFlight,
                format!(
                    "more than {} unanswered ops on this connection",
                    self.config.max_in_flight_ops
                ),
            );
        }
        // An op that breaks a rule of its own is refused alone; the others
        // are applied. Every op is answered in the order sent.
        let mut pending = Vec::with_capacity(push.ops.len());
        let mut ops = Vec::with_capacity(push.ops.len());
        let protocol = self.hello.as_ref().map_or(PROTOCOL_VERSION, |h| h.protocol);
        for op in push.ops {
            let needs = op.action.since_protocol();
            let checked = if protocol < needs {
                Err(Reject {
                    op_id: op.op_id.clone(),
                    code: ErrorCode::BadMessage,
                    message: format!(
                        "the {} action needs protocol {needs}; this session speaks {protocol}",
                        op.action.as_str()
                    ),
                })
            } else {
                codec::check_op(&op, &self.config.limits)
            };
            match checked {
                Ok(()) => {
                    pending.push(Pending::Applying(op.op_id.clone()));
                    ops.push(op);
                }
                Err(reject) => pending.push(Pending::Refused(reject)),
            }
        }
        if ops.is_empty() {
            match self.in_flight.back_mut() {
                // Answered after the ops still in flight.
                Some(last) => {
                    self.in_flight_ops += pending.len();
                    last.extend(pending);
                }
                None => {
                    for p in pending {
                        if let Pending::Refused(reject) = p {
                            self.send(ServerMessage::Reject(reject));
                        }
                    }
                }
            }
            return;
        }
        self.in_flight_ops += pending.len();
        self.in_flight.push_back(pending);
        let client_id = self
            .hello
            .as_ref()
            .map(|h| h.client_id.clone())
            .unwrap_or_default();
        self.effects.push_back(ServerEffect::Apply { client_id, ops });
    }

    /// Call with the answer to [`ServerEffect::Authenticate`]: the rights,
    /// schemas and expiry, or why the token is refused (which closes the
    /// session).
    pub fn handle_auth(&mut self, answer: Result<Authorized, Denied>) {
        if self.phase != Phase::Authenticating {
            return;
        }
        let authorized = match answer {
            Ok(a) => a,
            Err(denied) => return self.fail(denied.code, denied.message),
        };
        let Some(hello) = &self.hello else { return };
        self.rights = authorized.rights;
        self.expires_at_ms = authorized.expires_at_ms;
        self.transmit
            .push_back(Outbound::Message(ServerMessage::Welcome(Welcome {
                protocol: hello.protocol,
                namespace: hello.namespace.clone(),
                rights: authorized.rights,
                schemas: authorized.schemas,
                heartbeat_ms: self.config.heartbeat_ms,
                max_frame_bytes: self.config.limits.max_frame_bytes,
            })));
        self.effects.push_back(ServerEffect::StartSync {
            since: hello.since,
            kinds: hello.kinds.clone(),
        });
        self.phase = Phase::Syncing;
        while let Some(message) = self.deferred.pop_front() {
            self.handle_message(message);
            if self.is_closed() {
                return;
            }
        }
    }

    /// Call with the answer to [`ServerEffect::StartSync`]. Changes are sent
    /// as one `changes` message even when empty (it tells the client it is up
    /// to date); a snapshot in parts of at most `snapshot_part_entries`.
    ///
    /// A snapshot may also be fed later, while live (reason `lagged`, when
    /// the shell's feed overflowed); it moves the cursor to its `rev`.
    pub fn handle_sync_start(&mut self, start: SyncStart) {
        if !matches!(self.phase, Phase::Syncing | Phase::Live) {
            return;
        }
        match start {
            SyncStart::Changes { .. } if self.phase == Phase::Live => {}
            SyncStart::Changes { events, rev } => {
                if let Some(since) = self.hello.as_ref().and_then(|h| h.since) {
                    self.sent_rev = self.sent_rev.max(since);
                }
                self.phase = Phase::Live;
                self.send_changes(events.into_iter().map(Arc::new).collect(), rev, true);
            }
            SyncStart::Snapshot { rev, reason, entries } => {
                let part = self.config.snapshot_part_entries.max(1);
                let mut entries: Vec<SnapshotEntry> =
                    entries.into_iter().filter(|e| self.subscribed(&e.kind)).collect();
                loop {
                    let rest = entries.split_off(part.min(entries.len()));
                    let done = rest.is_empty();
                    self.transmit
                        .push_back(Outbound::Message(ServerMessage::Snapshot(Snapshot {
                            rev,
                            reason,
                            entries,
                            done,
                        })));
                    self.snapshot_parts_queued += 1;
                    if done {
                        break;
                    }
                    entries = rest;
                }
                self.sent_rev = rev;
                self.phase = Phase::Live;
            }
        }
        for (events, rev) in std::mem::take(&mut self.early) {
            self.send_changes(events, rev, false);
        }
    }

    /// Call with every batch of changes committed in the namespace after the
    /// sync start, in revision order, and the namespace revision after them.
    /// Events of other kinds and events the client already has are dropped.
    /// Before the sync start is answered, batches are held.
    ///
    /// Events may be fed shared (`Arc<Event>`, as a store's watch yields
    /// them): they are then sent without being copied.
    pub fn handle_events<E: Into<Arc<Event<Value>>>>(
        &mut self,
        events: impl IntoIterator<Item = E>,
        rev: u64,
    ) {
        let events = events.into_iter().map(Into::into).collect();
        match self.phase {
            Phase::Live => self.send_changes(events, rev, false),
            Phase::Authenticating | Phase::Syncing => {
                self.early.push((events, rev));
                if self.early.len() > self.config.max_queued_messages {
                    self.fail(
                        ErrorCode::SlowConsumer,
                        "too many changes queued before the sync start",
                    );
                }
            }
            Phase::Hello | Phase::Closed => {}
        }
    }

    /// Sends the events the client lacks; an empty batch only when `always`
    /// (the first one, which tells the client it is up to date).
    fn send_changes(&mut self, events: Vec<Arc<Event<Value>>>, rev: u64, always: bool) {
        let sent = self.sent_rev;
        let events: Vec<Arc<Event<Value>>> = events
            .into_iter()
            .filter(|e| e.rev > sent && self.subscribed(&e.kind))
            .collect();
        let rev = events.last().map_or(rev, |e| e.rev.max(rev)).max(sent);
        if events.is_empty() && !always {
            // Nothing for this client; its cursor catches up with the next batch.
            return;
        }
        self.sent_rev = rev;
        self.queue(Outbound::Changes { events, rev });
    }

    /// Call with the answer to the oldest unanswered [`ServerEffect::Apply`]:
    /// one result per op, in op order.
    pub fn handle_applied(&mut self, results: Vec<Result<Ack, Reject>>) {
        if self.is_closed() {
            return;
        }
        let Some(pending) = self.in_flight.pop_front() else {
            return;
        };
        self.in_flight_ops -= pending.len();
        let mut results = results.into_iter();
        for op in pending {
            let message = match op {
                Pending::Refused(reject) => ServerMessage::Reject(reject),
                Pending::Applying(op_id) => match results.next() {
                    Some(Ok(ack)) => ServerMessage::Ack(ack),
                    Some(Err(reject)) => ServerMessage::Reject(reject),
                    None => ServerMessage::Reject(Reject {
                        op_id,
                        code: ErrorCode::Internal,
                        message: "the op was not answered; retry it".into(),
                    }),
                },
            };
            self.send(message);
        }
    }

    /// Call when the server shuts down: the session ends with a fatal
    /// `shutting_down` error (close code 1001).
    pub fn handle_shutdown(&mut self) {
        self.fail(ErrorCode::ShuttingDown, "the server is shutting down");
    }

    /// Call when the shell cannot serve the session any more because its
    /// storage failed (a snapshot or the change feed could not be read):
    /// the session ends with a fatal `internal` error (close code 1011), and
    /// the client retries with backoff. `message` says what failed.
    pub fn handle_internal_error(&mut self, message: impl Into<String>) {
        self.fail(ErrorCode::Internal, message);
    }

    /// Call when the shell could not write anything to the client for
    /// `stalled_ms` (its send timeout): the client stopped reading. The
    /// session ends with a fatal `slow_consumer` (close 4008); what was
    /// queued for the client is dropped, so the error is all that is left
    /// to send, once the client's socket takes data again.
    pub fn handle_send_stalled(&mut self, stalled_ms: u64) {
        self.fail(
            ErrorCode::SlowConsumer,
            format!("the client did not read for {stalled_ms} ms; reconnect and resume from the cursor"),
        );
    }

    /// Call when a welcomed session's access ends before its token's
    /// expiry: the token was revoked or its rights reduced (the server's
    /// tokens were reloaded, or its keys rotated). The session ends with the
    /// fatal error (close 4001 or 4003); the client connects again with a
    /// fresh token.
    pub fn handle_revoked(&mut self, denied: Denied) {
        self.fail(denied.code, denied.message);
    }

    /// What the session's token allows (`read` until welcomed).
    #[must_use]
    pub fn rights(&self) -> Rights {
        self.rights
    }

    /// Call when the timer armed at [`ServerSession::poll_timeout`] fires.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.is_closed() {
            return;
        }
        if self.expires_at_ms.is_some_and(|at| now_ms >= at) {
            return self.fail(
                ErrorCode::Unauthorized,
                "the token expired; connect with a fresh one",
            );
        }
        let hb = self.config.heartbeat_ms;
        if now_ms >= self.last_rx_ms.saturating_add(2 * hb) {
            self.fail(
                ErrorCode::Timeout,
                format!("no frame for {} ms", now_ms - self.last_rx_ms),
            );
        } else if now_ms >= self.last_rx_ms.saturating_add(hb) && !self.ping_sent {
            self.ping_sent = true;
            let nonce = self.next_nonce;
            self.next_nonce += 1;
            self.send(ServerMessage::Ping { nonce });
        }
    }

    // ---- outputs ----

    /// Call after every input: the next message to send to the client.
    ///
    /// A `changes` message owns copies of its events; a shell that feeds
    /// shared events and encodes them once for many sessions uses
    /// [`ServerSession::poll_outbound`] instead.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<ServerMessage> {
        self.poll_outbound().map(Outbound::into_message)
    }

    /// Call after every input: the next message to send to the client, with
    /// the events of a `changes` message still shared.
    #[must_use]
    pub fn poll_outbound(&mut self) -> Option<Outbound> {
        let outbound = self.transmit.pop_front()?;
        if matches!(outbound, Outbound::Message(ServerMessage::Snapshot(_))) {
            self.snapshot_parts_queued -= 1;
        }
        Some(outbound)
    }

    /// Call after every input: the next thing the shell must do for the
    /// session.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<ServerEffect> {
        self.effects.pop_front()
    }

    /// Call after draining [`ServerSession::poll_transmit`]: the close code
    /// to close the socket with, once (the session is then over).
    #[must_use]
    pub fn poll_close(&mut self) -> Option<CloseCode> {
        if self.close_taken {
            return None;
        }
        let code = self.close?;
        self.close_taken = true;
        Some(code)
    }

    /// Call after every input: when to call [`ServerSession::handle_timeout`]
    /// next, in the shell's milliseconds; `None` once closed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.is_closed() {
            return None;
        }
        let hb = self.config.heartbeat_ms;
        let heartbeat = if self.ping_sent {
            self.last_rx_ms.saturating_add(2 * hb)
        } else {
            self.last_rx_ms.saturating_add(hb)
        };
        Some(self.expires_at_ms.map_or(heartbeat, |at| at.min(heartbeat)))
    }

    // ---- internals ----

    fn subscribed(&self, kind: &str) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(kind))
    }

    /// Queues a message, giving up when the client reads too slowly.
    fn send(&mut self, message: ServerMessage) {
        self.queue(Outbound::Message(message));
    }

    fn queue(&mut self, outbound: Outbound) {
        if self.is_closed() {
            return;
        }
        self.transmit.push_back(outbound);
        if self.transmit.len() - self.snapshot_parts_queued > self.config.max_queued_messages {
            self.fail(
                ErrorCode::SlowConsumer,
                "the client reads too slowly; reconnect and resume from the cursor",
            );
        }
    }

    /// Ends the session with a fatal error. What was queued is dropped: the
    /// client resumes from its cursor and retries its unanswered ops.
    fn fail(&mut self, code: ErrorCode, message: impl Into<String>) {
        self.fail_with(code, code.close_code(), message);
    }

    /// Like [`ServerSession::fail`], with a close code of its own.
    fn fail_with(&mut self, code: ErrorCode, close: CloseCode, message: impl Into<String>) {
        if self.is_closed() {
            return;
        }
        if code == ErrorCode::SlowConsumer {
            self.transmit.clear();
            self.snapshot_parts_queued = 0;
        }
        self.transmit
            .push_back(Outbound::Message(ServerMessage::Error(ServerError {
                code,
                message: message.into(),
                fatal: true,
            })));
        self.effects.clear();
        self.deferred.clear();
        self.early.clear();
        self.close = Some(close);
        self.phase = Phase::Closed;
    }
}
