//! Helpers for sync tests, native and in the browser: a seeded generator
//! (so a failing run replays from its seed) and the frames a test server
//! sends first.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::sync::codec::encode_server;
use crate::sync::{PROTOCOL_VERSION, Rights, ServerMessage, Welcome};

/// A small deterministic generator (xorshift): the same seed gives the same
/// run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (which must not be 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A `welcome` frame for namespace `ns` with read-write rights and these
/// schemas, as a test server sends it.
#[must_use]
pub fn welcome_frame(ns: &str, schemas: BTreeMap<String, Value>) -> String {
    encode_server(&ServerMessage::Welcome(Welcome {
        protocol: PROTOCOL_VERSION,
        namespace: ns.to_owned(),
        rights: Rights::ReadWrite,
        schemas,
        heartbeat_ms: 30_000,
        max_frame_bytes: 1 << 20,
    }))
}
