//! The optimistic view of a sync client, and how what the server says
//! turns into ordinary watch events on it.
//!
//! A client shows *confirmed state + pending ops*: the entries the server
//! confirmed, with every op written locally and not yet answered applied on
//! top, in order ([`optimistic`]). This module owns that definition, with
//! versions, so that every client shows the same thing.
//!
//! What the server says reaches a client as [`Step`]s, in the order the
//! client learned them: a confirmed change, an answered op, a snapshot's
//! difference. A client that shows its view through a store with watchers
//! cannot apply steps the moment they arrive (its store may be in the
//! middle of persisting a local write), so it collects them and later calls
//! [`rebase`], which replays them over what the store shows and returns the
//! view's changes in that order: every confirmed change that is visible (no
//! pending op hides it) becomes one event, with the server's version;
//! intermediate versions are kept, a key created then deleted appears and
//! disappears. Ops written locally in between are taken as written before
//! the steps, which is what the store already showed.
//!
//! This module does no I/O and reads no clock.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json::json_eq;
use crate::sync::{Op, OpAction};
use crate::{Entry, EventType};

/// An optimistic entry: its value and version.
pub type Shown = (Value, u64);

/// The optimistic entry of a key: its `confirmed` entry with `ops` (that
/// key's pending ops, in order) applied on top. A `set` gives version 1 on
/// an absent key and one more than the entry before otherwise, as the
/// server will when it applies the op; a `delete` removes the entry.
/// `if_version` is not checked: the server decides.
#[must_use]
pub fn optimistic<'a>(
    confirmed: Option<&Entry<Value>>,
    ops: impl IntoIterator<Item = &'a Op>,
) -> Option<Shown> {
    let mut current = confirmed.map(|e| (e.value.clone(), e.version));
    for op in ops {
        current = match op.action {
            OpAction::Set => {
                let version = current.as_ref().map_or(1, |(_, v)| v + 1);
                Some((op.value.clone().unwrap_or(Value::Null), version))
            }
            // Re-applied over whatever is below it; on an absent key the
            // server refuses it (`key_not_found`).
            OpAction::Patch => current.map(|(mut value, version)| {
                crate::json::merge_patch(&mut value, op.value.as_ref().unwrap_or(&Value::Null));
                (value, version + 1)
            }),
            OpAction::Delete => None,
        };
    }
    current
}

/// One thing a client learned from the server about one key, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The kind.
    pub kind: String,
    /// The key.
    pub key: String,
    /// The key's confirmed entry after this step (`None`: absent).
    pub confirmed: Option<Entry<Value>>,
    /// The pending op this step answered (acknowledged or rejected): it
    /// left the queue here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered: Option<Op>,
}

/// One change of the optimistic view, for a store to apply and publish.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewChange {
    /// The kind.
    pub kind: String,
    /// The key.
    pub key: String,
    /// Created, updated or deleted.
    pub event_type: EventType,
    /// The new value; for a delete, the value it had.
    pub value: Value,
    /// The new version; for a delete, the version it had.
    pub version: u64,
    /// Whether pending ops of the key are part of what it shows.
    pub pending: bool,
}

/// Replays `steps` over the view a store shows and returns the view's
/// changes, in step order.
///
/// `shown` gives what the store shows for a key now; `pending` is the
/// client's queue of pending ops now, in order. Every op a step answered
/// counts as pending before that step (the store showed it), every op in
/// `pending` as pending throughout. After the changes, the store shows, for
/// every key a step touched, its last confirmed entry with the pending ops
/// on top: exactly [`optimistic`] over the client's state.
pub fn rebase<'a>(
    steps: &[Step],
    mut shown: impl FnMut(&str, &str) -> Option<Shown>,
    pending: impl IntoIterator<Item = &'a Op>,
) -> Vec<ViewChange> {
    type Slot<'s> = (&'s str, &'s str);
    // Per touched key: its ops answered by the steps (with the step that
    // answered each), and its ops still pending.
    let mut answered: HashMap<Slot<'_>, Vec<(usize, &Op)>> = HashMap::new();
    let mut queued: HashMap<Slot<'_>, Vec<&Op>> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let slot = (step.kind.as_str(), step.key.as_str());
        queued.entry(slot).or_default();
        if let Some(op) = &step.answered {
            answered.entry(slot).or_default().push((i, op));
        }
    }
    for op in pending {
        if let Some(ops) = queued.get_mut(&(op.kind.as_str(), op.key.as_str())) {
            ops.push(op);
        }
    }
    let mut current: HashMap<Slot<'_>, Option<Shown>> = HashMap::new();
    let mut changes = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let slot = (step.kind.as_str(), step.key.as_str());
        let later: Vec<&Op> = answered
            .get(&slot)
            .map(|ops| ops.iter().filter(|(j, _)| *j > i).map(|(_, op)| *op).collect())
            .unwrap_or_default();
        let still = queued.get(&slot).map(Vec::as_slice).unwrap_or_default();
        let view = optimistic(
            step.confirmed.as_ref(),
            later.iter().copied().chain(still.iter().copied()),
        );
        let before = current
            .entry(slot)
            .or_insert_with(|| shown(&step.kind, &step.key));
        let pending = !later.is_empty() || !still.is_empty();
        let change = match (before.as_ref(), view.as_ref()) {
            (None, None) => None,
            (Some((value, version)), None) => Some((EventType::Delete, value.clone(), *version)),
            (None, Some((value, version))) => Some((EventType::Create, value.clone(), *version)),
            (Some((old, old_version)), Some((value, version))) => {
                if json_eq(old, value) {
                    // While ops are pending, the version shown is
                    // provisional: a change that leaves the value as shown
                    // (typically the one the pending op made, which
                    // arrives before its ack) is not an event, and the
                    // version settles when the key's last op is answered.
                    if pending || old_version == version {
                        continue;
                    }
                }
                Some((EventType::Update, value.clone(), *version))
            }
        };
        if let Some((event_type, value, version)) = change {
            changes.push(ViewChange {
                kind: step.kind.clone(),
                key: step.key.clone(),
                event_type,
                value,
                version,
                pending,
            });
        }
        *before = view;
    }
    changes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(value: Value, version: u64, rev: u64) -> Option<Entry<Value>> {
        Some(Entry { value, version, rev })
    }

    fn step(key: &str, confirmed: Option<Entry<Value>>) -> Step {
        Step {
            kind: "t".into(),
            key: key.into(),
            confirmed,
            answered: None,
        }
    }

    fn set(id: &str, key: &str, value: Value) -> Op {
        Op {
            op_id: id.into(),
            kind: "t".into(),
            key: key.into(),
            action: OpAction::Set,
            value: Some(value),
            if_version: None,
        }
    }

    fn summary(changes: &[ViewChange]) -> Vec<(String, EventType, Value, u64)> {
        changes
            .iter()
            .map(|c| (c.key.clone(), c.event_type, c.value.clone(), c.version))
            .collect()
    }

    #[test]
    fn optimistic_counts_versions_through_pending_ops() {
        let confirmed = entry(json!(1), 4, 9);
        let ops = [set("a", "x", json!(2)), set("b", "x", json!(3))];
        assert_eq!(optimistic(confirmed.as_ref(), &ops), Some((json!(3), 6)));
        let delete = Op {
            action: OpAction::Delete,
            value: None,
            ..set("c", "x", json!(0))
        };
        let ops = [delete, set("d", "x", json!(5))];
        assert_eq!(optimistic(confirmed.as_ref(), &ops), Some((json!(5), 1)));
        assert_eq!(optimistic(None, &[]), None);
    }

    #[test]
    fn every_confirmed_change_is_an_event_in_server_order() {
        // x=1, x=2, y=1, delete y, a=1, arriving together at a view that
        // shows none of them.
        let steps = [
            step("x", entry(json!(1), 1, 1)),
            step("x", entry(json!(2), 2, 2)),
            step("y", entry(json!(1), 1, 3)),
            step("y", None),
            step("a", entry(json!(1), 1, 5)),
        ];
        let changes = rebase(&steps, |_, _| None, []);
        assert_eq!(
            summary(&changes),
            vec![
                ("x".into(), EventType::Create, json!(1), 1),
                ("x".into(), EventType::Update, json!(2), 2),
                ("y".into(), EventType::Create, json!(1), 1),
                ("y".into(), EventType::Delete, json!(1), 1),
                ("a".into(), EventType::Create, json!(1), 1),
            ]
        );
        assert!(changes.iter().all(|c| !c.pending));
    }

    #[test]
    fn a_pending_op_hides_confirmed_changes_until_it_is_answered() {
        // The view shows pending x=9 (v2 over confirmed x=1 v1). Another
        // client's x=5 lands (v2), then our op is applied on top (v3) and
        // its change arrives before its ack.
        let mine = set("m", "x", json!(9));
        let steps = [
            step("x", entry(json!(5), 2, 7)),
            step("x", entry(json!(9), 3, 8)),
            Step {
                answered: Some(mine.clone()),
                ..step("x", entry(json!(9), 3, 8))
            },
        ];
        let changes = rebase(&steps, |_, _| Some((json!(9), 2)), []);
        // The view never shows the other write; its version settles on the
        // server's once the op is answered.
        assert_eq!(
            summary(&changes),
            vec![("x".into(), EventType::Update, json!(9), 3)]
        );
        assert!(!changes[0].pending);
        // The same steps over two passes (the ack in the second) end the
        // same way, with the same single event.
        let first = rebase(&steps[..2], |_, _| Some((json!(9), 2)), [&mine]);
        assert_eq!(first, vec![]);
        let second = rebase(&steps[2..], |_, _| Some((json!(9), 2)), []);
        assert_eq!(second, changes);
    }

    #[test]
    fn a_remote_change_under_a_pending_op_shows_once_the_op_is_rejected() {
        let mine = set("m", "x", json!(9));
        let steps = [
            step("x", entry(json!(5), 2, 7)),
            Step {
                answered: Some(mine.clone()),
                ..step("x", entry(json!(5), 2, 7))
            },
        ];
        let changes = rebase(&steps, |_, _| Some((json!(9), 2)), []);
        assert_eq!(
            summary(&changes),
            vec![("x".into(), EventType::Update, json!(5), 2)]
        );
    }

    #[test]
    fn an_ack_whose_change_already_arrived_changes_nothing() {
        let mine = set("m", "x", json!(2));
        let steps = [
            step("x", entry(json!(2), 2, 3)),
            Step {
                answered: Some(mine),
                ..step("x", entry(json!(2), 2, 3))
            },
        ];
        let changes = rebase(&steps, |_, _| Some((json!(2), 2)), []);
        assert_eq!(changes, vec![]);
    }

    #[test]
    fn a_rejected_op_rolls_back_to_the_confirmed_entry() {
        let mine = set("m", "x", json!("bad"));
        let steps = [Step {
            answered: Some(mine),
            ..step("x", entry(json!("good"), 1, 1))
        }];
        let changes = rebase(&steps, |_, _| Some((json!("bad"), 2)), []);
        assert_eq!(
            summary(&changes),
            vec![("x".into(), EventType::Update, json!("good"), 1)]
        );
        assert!(!changes[0].pending);
    }

    #[test]
    fn ops_queued_since_stay_on_top() {
        // A local write queued after the steps arrived is already shown.
        let later = set("l", "x", json!("local"));
        let steps = [step("x", entry(json!("remote"), 1, 1))];
        assert_eq!(rebase(&steps, |_, _| Some((json!("local"), 1)), [&later]), vec![]);
        // A peer's op the view does not show yet appears.
        let changes = rebase(&steps, |_, _| None, [&later]);
        assert_eq!(
            summary(&changes),
            vec![("x".into(), EventType::Create, json!("local"), 2)]
        );
        assert!(changes[0].pending);
    }
}
