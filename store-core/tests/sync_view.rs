//! A client replica's view, as a store with watchers shows it: a
//! [`ClientSession`] that records steps, and a view that applies
//! [`view::rebase`] at arbitrary points, as the browser's writer does.
//!
//! Seeded runs against a sequential server model: local writes (sets, merge
//! patches, deletes) shown at once, other clients' writes, the server's
//! changes and answers in either order (a patch of a key the server no
//! longer holds is refused), frames delivered in bursts. The view must end equal to the
//! server, never show a value the session does not, and show every change
//! of the keys only others wrote exactly as the server made it, in order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Value, json};
use store_core::json::merge_patch;
use store_core::sync::codec::encode_server;
use store_core::sync::session::{ClientConfig, ClientSession};
use store_core::sync::view::{self, ViewChange};
use store_core::sync::{
    Ack, ChangeBatch, ClientMessage, ErrorCode, Op, OpAction, OpResult, Reject, ServerMessage,
};
use store_core::testkit::sync::{Rng, welcome_frame};
use store_core::{Event, EventType};

const KIND: &str = "t";

/// The server: applies writes in order, one revision each.
#[derive(Default)]
struct Server {
    entries: BTreeMap<String, (Value, u64)>,
    rev: u64,
    /// Every change, in revision order: (key, type, value, version).
    log: Vec<(String, EventType, Value, u64)>,
}

/// A write: a value to set, a merge patch, or a delete.
#[derive(Debug, Clone)]
enum Write {
    Set(Value),
    Patch(Value),
    Delete,
}

impl Write {
    fn random(rng: &mut Rng) -> Write {
        match rng.below(8) {
            0 | 1 => Write::Delete,
            2 | 3 => Write::Set(json!(rng.below(3))),
            4 => Write::Set(json!({"x": rng.below(3), "y": rng.below(3)})),
            _ => {
                let field = ["x", "y", "z"][rng.below(3) as usize];
                let n = rng.below(4);
                Write::Patch(json!({ field: if n == 3 { Value::Null } else { json!(n) } }))
            }
        }
    }

    fn of(op: &Op) -> Write {
        match (op.action, &op.value) {
            (OpAction::Patch, Some(p)) => Write::Patch(p.clone()),
            (OpAction::Set, Some(v)) => Write::Set(v.clone()),
            _ => Write::Delete,
        }
    }

    /// The value it leaves over `old`; `Err` for a patch of an absent key.
    fn over(&self, old: Option<&Value>) -> Result<Option<Value>, ()> {
        match (self, old) {
            (Write::Set(v), _) => Ok(Some(v.clone())),
            (Write::Delete, _) => Ok(None),
            (Write::Patch(_), None) => Err(()),
            (Write::Patch(p), Some(old)) => {
                let mut v = old.clone();
                merge_patch(&mut v, p);
                Ok(Some(v))
            }
        }
    }
}

impl Server {
    /// Applies a write; the change it made (if any) and its answer.
    fn apply(&mut self, op_id: &str, key: &str, write: &Write) -> (Option<Event<Value>>, ServerMessage) {
        let old = self.entries.get(key).cloned();
        let Ok(value) = write.over(old.as_ref().map(|(v, _)| v)) else {
            let reject = Reject {
                op_id: op_id.into(),
                code: ErrorCode::KeyNotFound,
                message: "key not found".into(),
            };
            return (None, ServerMessage::Reject(reject));
        };
        let (event, mut ack) = self.change(op_id, key, value, old);
        if let (Write::Patch(_), Some(e)) = (write, &event) {
            ack.value = Some(e.value.clone());
        }
        (event, ServerMessage::Ack(ack))
    }

    fn change(
        &mut self,
        op_id: &str,
        key: &str,
        value: Option<Value>,
        old: Option<(Value, u64)>,
    ) -> (Option<Event<Value>>, Ack) {
        let (event, result) = match (value, old) {
            (Some(v), Some((old, _))) if v == old => {
                let ack = Ack {
                    op_id: op_id.into(),
                    result: OpResult::Unchanged,
                    version: self.entries[key].1,
                    rev: self.rev,
                    value: None,
                };
                return (None, ack);
            }
            (Some(v), old) => {
                let version = old.as_ref().map_or(1, |(_, n)| n + 1);
                self.entries.insert(key.into(), (v.clone(), version));
                let t = if old.is_some() {
                    EventType::Update
                } else {
                    EventType::Create
                };
                let result = if old.is_some() {
                    OpResult::Updated
                } else {
                    OpResult::Created
                };
                ((t, v, version), result)
            }
            (None, Some((old, version))) => {
                self.entries.remove(key);
                ((EventType::Delete, old, version), OpResult::Deleted)
            }
            (None, None) => {
                let ack = Ack {
                    op_id: op_id.into(),
                    result: OpResult::Absent,
                    version: 0,
                    rev: self.rev,
                    value: None,
                };
                return (None, ack);
            }
        };
        self.rev += 1;
        let (event_type, value, version) = event;
        self.log.push((key.into(), event_type, value.clone(), version));
        let ack_version = if event_type == EventType::Delete {
            0
        } else {
            version
        };
        let event = Event {
            kind: KIND.into(),
            key: key.into(),
            event_type,
            value,
            version,
            rev: self.rev,
        };
        let ack = Ack {
            op_id: op_id.into(),
            result,
            version: ack_version,
            rev: self.rev,
            value: None,
        };
        (Some(event), ack)
    }
}

/// A replica: the session and the view a store shows, with its watch log.
struct Replica {
    session: ClientSession,
    view: BTreeMap<String, (Value, u64)>,
    watched: Vec<(String, EventType, Value, u64)>,
    /// The events of its own writes, as the store showed them.
    written: Vec<(String, EventType, Value, u64)>,
    next_op: u64,
}

impl Replica {
    fn new() -> Self {
        let mut config = ClientConfig::new("ns", "token", "c1");
        config.record_steps = true;
        let mut session = ClientSession::new(config);
        session.connect(0);
        session
            .handle_frame(welcome_frame("ns", BTreeMap::new()).as_bytes(), 0)
            .unwrap();
        while session.poll_transmit().is_some() {}
        Replica {
            session,
            view: BTreeMap::new(),
            watched: Vec::new(),
            written: Vec::new(),
            next_op: 0,
        }
    }

    /// A local write as a store makes it: shown at once, then queued (a
    /// patch of a key it does not show is refused, as the store does).
    fn write(&mut self, key: &str, write: Write) {
        let old = self.view.get(key).cloned();
        let Ok(value) = write.over(old.as_ref().map(|(v, _)| v)) else {
            return;
        };
        let shown = match (&value, &old) {
            (Some(v), Some((o, _))) if v == o => return, // unchanged: no op
            (None, None) => return,                      // nothing to delete
            (Some(v), _) => {
                let version = old.as_ref().map_or(1, |(_, n)| n + 1);
                let t = if old.is_some() {
                    EventType::Update
                } else {
                    EventType::Create
                };
                self.view.insert(key.into(), (v.clone(), version));
                (t, v.clone(), version)
            }
            (None, Some((o, n))) => {
                self.view.remove(key);
                (EventType::Delete, o.clone(), *n)
            }
        };
        self.watched.push((key.into(), shown.0, shown.1.clone(), shown.2));
        self.written.push((key.into(), shown.0, shown.1, shown.2));
        self.next_op += 1;
        let op = Op {
            op_id: format!("op{}", self.next_op),
            kind: KIND.into(),
            key: key.into(),
            action: match write {
                Write::Set(_) => OpAction::Set,
                Write::Patch(_) => OpAction::Patch,
                Write::Delete => OpAction::Delete,
            },
            value: match write {
                Write::Set(v) | Write::Patch(v) => Some(v),
                Write::Delete => None,
            },
            if_version: None,
        };
        self.session.enqueue(op);
    }

    /// The store's writer pass: rebase what the session recorded.
    fn plan(&mut self) {
        let steps = self.session.take_steps();
        let view_now = self.view.clone();
        let changes = view::rebase(
            &steps,
            |_, key| view_now.get(key).cloned(),
            self.session.pending(),
        );
        for ViewChange {
            key,
            event_type,
            value,
            version,
            ..
        } in changes
        {
            let before = self.view.get(&key).cloned();
            match event_type {
                EventType::Create => assert!(before.is_none(), "create of a shown key {key}"),
                EventType::Update => assert!(before.is_some(), "update of an absent key {key}"),
                EventType::Delete => {
                    assert_eq!(
                        before,
                        Some((value.clone(), version)),
                        "a delete names what was shown"
                    )
                }
            }
            if event_type == EventType::Delete {
                self.view.remove(&key);
            } else {
                self.view.insert(key.clone(), (value.clone(), version));
            }
            self.watched.push((key, event_type, value, version));
        }
        for key in steps.iter().map(|s| s.key.as_str()).collect::<BTreeSet<_>>() {
            let want = self.session.optimistic(KIND, key);
            let shown = self.view.get(key).cloned();
            let pending = self.session.pending().any(|op| op.key == key);
            if pending {
                assert_eq!(shown.map(|s| s.0), want.map(|w| w.0), "{key}: the pending value");
            } else {
                assert_eq!(shown, want, "{key}: the confirmed entry");
            }
        }
    }
}

fn changes(event: Event<Value>, rev: u64) -> ServerMessage {
    ServerMessage::Changes(ChangeBatch {
        events: vec![event],
        rev,
    })
}

fn run(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut server = Server::default();
    let mut replica = Replica::new();
    let mut wire: VecDeque<ServerMessage> = VecDeque::new();
    let keys = ["a", "b", "c", "d"];
    // A key only this client writes: confirming its writes shows nothing.
    let local_only = "l";
    // Keys only other clients write: their watch log must equal the server's.
    let remote_only = ["r", "s"];
    let mut remote_op = 0;
    for _ in 0..200 {
        match rng.below(10) {
            0..=2 => {
                let i = rng.below(keys.len() as u64 + 1) as usize;
                let key = keys.get(i).copied().unwrap_or(local_only);
                replica.write(key, Write::random(&mut rng));
            }
            3..=4 => {
                let all: Vec<&str> = keys.iter().chain(&remote_only).copied().collect();
                let key = all[rng.below(all.len() as u64) as usize];
                remote_op += 1;
                let (event, _) = server.apply(&format!("other{remote_op}"), key, &Write::random(&mut rng));
                if let Some(e) = event {
                    wire.push_back(changes(e, server.rev));
                }
            }
            5..=6 => {
                // The client sends; the server applies a push as one commit
                // and relays its changes (in one batch) before or after the
                // acks, or each change next to its ack.
                while let Some(message) = replica.session.poll_transmit() {
                    let ClientMessage::Push(push) = message else {
                        continue;
                    };
                    let mut events = Vec::new();
                    let mut acks = Vec::new();
                    let order = rng.below(3);
                    for op in push.ops {
                        let (event, answer) = server.apply(&op.op_id, &op.key, &Write::of(&op));
                        if order == 2 {
                            wire.push_back(answer);
                            wire.extend(event.map(|e| changes(e, server.rev)));
                        } else {
                            events.extend(event);
                            acks.push(answer);
                        }
                    }
                    let rev = server.rev;
                    let batch =
                        (!events.is_empty()).then_some(ServerMessage::Changes(ChangeBatch { events, rev }));
                    if order == 0 {
                        wire.extend(batch);
                        wire.extend(acks);
                    } else {
                        wire.extend(acks);
                        wire.extend(batch);
                    }
                }
            }
            7..=8 => {
                for _ in 0..=rng.below(4) {
                    let Some(message) = wire.pop_front() else { break };
                    let frame = encode_server(&message);
                    replica.session.handle_frame(frame.as_bytes(), 0).unwrap();
                }
            }
            _ => replica.plan(),
        }
    }
    // Deliver everything, answer everything.
    loop {
        while let Some(message) = replica.session.poll_transmit() {
            let ClientMessage::Push(push) = message else {
                continue;
            };
            for op in push.ops {
                let (event, answer) = server.apply(&op.op_id, &op.key, &Write::of(&op));
                wire.extend(event.map(|e| changes(e, server.rev)));
                wire.push_back(answer);
            }
        }
        let Some(message) = wire.pop_front() else { break };
        replica
            .session
            .handle_frame(encode_server(&message).as_bytes(), 0)
            .unwrap();
    }
    replica.plan();
    assert_eq!(replica.session.pending().len(), 0);
    assert_eq!(
        replica.view, server.entries,
        "seed {seed}: the view ends as the server"
    );
    let of = |log: &[(String, EventType, Value, u64)], key: &str| -> Vec<_> {
        log.iter().filter(|e| e.0 == key).cloned().collect()
    };
    assert_eq!(
        of(&replica.watched, local_only),
        of(&replica.written, local_only),
        "seed {seed}: the confirmations of writes nobody else touched show nothing"
    );
    for key in remote_only {
        assert_eq!(
            of(&replica.watched, key),
            of(&server.log, key),
            "seed {seed}: every change of {key}, as the server made it"
        );
    }
}

#[test]
fn a_replica_view_shows_every_remote_change_in_order_and_ends_as_the_server() {
    let seeds: u64 = std::env::var("ZESTOR_VIEW_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    for seed in 0..seeds {
        run(seed);
    }
}

#[test]
fn offline_writes_arriving_together_are_one_event_each() {
    // The repro: another client wrote x=1, x=2, y=1, delete y, a=1; they
    // arrive in one batch.
    let mut server = Server::default();
    let mut events = Vec::new();
    for (i, (key, write)) in [
        ("x", Write::Set(json!(1))),
        ("x", Write::Set(json!(2))),
        ("y", Write::Set(json!(1))),
        ("y", Write::Delete),
        ("a", Write::Set(json!(1))),
    ]
    .into_iter()
    .enumerate()
    {
        events.extend(server.apply(&format!("o{i}"), key, &write).0);
    }
    let mut replica = Replica::new();
    let batch = ServerMessage::Changes(ChangeBatch {
        events,
        rev: server.rev,
    });
    replica
        .session
        .handle_frame(encode_server(&batch).as_bytes(), 0)
        .unwrap();
    replica.plan();
    assert_eq!(replica.watched, server.log);
    // A second replica that mirrors the first (another tab) sees the same.
    let mut config = ClientConfig::new("ns", "token", "c1");
    config.record_steps = true;
    let mut mirror = Replica {
        session: ClientSession::new(config),
        ..Replica::new()
    };
    let mut leader = Replica::new();
    leader
        .session
        .handle_frame(encode_server(&batch).as_bytes(), 0)
        .unwrap();
    for step in leader.session.take_steps() {
        mirror.session.mirror(step);
    }
    mirror.plan();
    assert_eq!(mirror.watched, server.log);
}
