//! `changes` frames built from events encoded once per namespace: every
//! connection sending an event shares its encoding, and every connection
//! sending the same batch shares the frame's bytes.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde_json::Value;
use store_core::Event;
use store_core::sync::codec::{encode_changes, encode_event};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// How many of a namespace's recent events keep their encoding, by
/// revision: more than a connection that keeps up is behind.
const SLOTS: usize = 1_024;

/// An event (held weakly, so its value is not kept alive) and its JSON.
type Slot = Mutex<Option<(Weak<Event<Value>>, Arc<str>)>>;

/// The last `changes` frame built: its events (held weakly), its revision
/// and its text.
struct LastFrame {
    events: Vec<Weak<Event<Value>>>,
    rev: u64,
    text: Utf8Bytes,
}

/// The encodings of one namespace's recent events.
pub(crate) struct EventFrames {
    slots: Box<[Slot]>,
    last: Mutex<Option<LastFrame>>,
}

impl EventFrames {
    pub(crate) fn new() -> Self {
        EventFrames {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            last: Mutex::new(None),
        }
    }

    /// The text of the `changes` message of these events, as
    /// `encode_server` writes it. Connections that keep up are sent the
    /// same batches, so the last frame built is kept: each of them gets
    /// those bytes (a reference, not a copy); a batch that differs (a
    /// connection that fell behind and takes several at once, or one
    /// subscribed to some kinds) is built from the shared event encodings.
    pub(crate) fn changes(&self, events: &[Arc<Event<Value>>], rev: u64) -> Utf8Bytes {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(frame) = &*last
            && frame.rev == rev
            && frame.events.len() == events.len()
            && frame
                .events
                .iter()
                .zip(events)
                .all(|(w, e)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(e)))
        {
            return frame.text.clone();
        }
        drop(last);
        let encoded: Vec<Arc<str>> = events.iter().map(|e| self.encoded(e)).collect();
        let text = Utf8Bytes::from(encode_changes(&encoded, rev));
        last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        *last = Some(LastFrame {
            events: events.iter().map(Arc::downgrade).collect(),
            rev,
            text: text.clone(),
        });
        text
    }

    /// The event's JSON, encoded by the first connection that sends it.
    /// The slot is found by revision and checked by identity (the weak
    /// reference keeps the address from being reused), so an event that
    /// is not the one cached is encoded afresh.
    pub(crate) fn encoded(&self, event: &Arc<Event<Value>>) -> Arc<str> {
        let slot = &self.slots[(event.rev % SLOTS as u64) as usize];
        if let Some((cached, json)) = &*slot.lock().unwrap_or_else(PoisonError::into_inner)
            && std::ptr::eq(cached.as_ptr(), Arc::as_ptr(event))
        {
            return Arc::clone(json);
        }
        let json: Arc<str> = encode_event(event).into();
        *slot.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Arc::downgrade(event), Arc::clone(&json)));
        json
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use store_core::EventType;
    use store_core::sync::codec::{decode_server, encode_server};
    use store_core::sync::{ChangeBatch, ServerMessage};

    use super::*;

    fn event(key: &str, value: Value, rev: u64) -> Arc<Event<Value>> {
        Arc::new(Event {
            kind: "task".into(),
            key: key.into(),
            event_type: EventType::Update,
            value,
            version: 2,
            rev,
        })
    }

    #[test]
    fn a_shared_frame_is_the_frame_encode_server_writes() {
        let frames = EventFrames::new();
        let events = [
            event(
                "a",
                json!({"title": "ship \"it\"", "n": 1795677268272.6313, "tags": ["x", null]}),
                7,
            ),
            event("b", json!(null), 8),
            // Another event at a revision already cached (same slot).
            event("c", json!([1, 2, 3]), 8 + SLOTS as u64),
        ];
        for batch in [&events[..], &events[..1], &events[1..], &[]] {
            let rev = 9 + SLOTS as u64;
            let shared = frames.changes(batch, rev);
            let message = ServerMessage::Changes(ChangeBatch {
                events: batch.iter().map(|e| Event::clone(e)).collect(),
                rev,
            });
            assert_eq!(shared.as_str(), encode_server(&message));
            assert_eq!(decode_server(shared.as_bytes(), 1 << 20).unwrap(), message);
        }
        // A second connection sent the same batch gets the same bytes.
        let rev = 9 + SLOTS as u64;
        let first = frames.changes(&events, rev);
        assert_eq!(
            first.as_str().as_ptr(),
            frames.changes(&events, rev).as_str().as_ptr()
        );
        // Not for another batch, another revision, or an equal event that is another allocation.
        assert_ne!(
            first.as_str().as_ptr(),
            frames.changes(&events[..2], rev).as_str().as_ptr()
        );
        let again = frames.changes(&events, rev);
        assert_ne!(
            again.as_str().as_ptr(),
            frames.changes(&events, rev + 1).as_str().as_ptr()
        );
        let copies: Vec<_> = events.iter().map(|e| Arc::new(Event::clone(e))).collect();
        let copied = frames.changes(&copies, rev);
        assert_eq!(copied.as_str(), first.as_str());
        assert_ne!(
            copied.as_str().as_ptr(),
            frames.changes(&events, rev).as_str().as_ptr()
        );
        // A second connection gets the same encodings, not new ones.
        let again = frames.encoded(&events[0]);
        assert!(Arc::ptr_eq(&again, &frames.encoded(&events[0])));
        // An equal event that is another allocation is encoded afresh.
        let copy = Arc::new(Event::clone(&events[0]));
        assert!(!Arc::ptr_eq(&again, &frames.encoded(&copy)));
        assert_eq!(*again, *frames.encoded(&copy));
    }
}
