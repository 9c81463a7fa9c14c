//! When a client reconnects, and how soon: the one policy of every client
//! (the browser package and the native client).
//!
//! A connection that closed with a code a retry cannot fix (a refused
//! token, a protocol error) stops the client; anything else (a dropped
//! socket, a server going away, a slow-consumer cut, a timeout) is retried
//! after a [`Backoff`] delay. A token that expires or is revoked during a
//! welcomed session ([`ClientEvent::AccessLost`]) is retried too, with a
//! fresh token: only a token refused at `hello` stops the client. Randomness is passed in: this module reads no
//! clock and draws no numbers.

use crate::sync::CloseCode;
use crate::sync::session::ClientEvent;

/// What a shell does with its connection after a session event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep it.
    Keep,
    /// Close it and connect again after a [`Backoff`] delay: the server
    /// went silent, failed an op without answering it, sent a fatal error
    /// a retry can fix, or ended a welcomed session whose token expired or
    /// was revoked (the next connection sends a fresh token; a refusal of
    /// that one stops).
    Reconnect,
    /// Close it and stop: the server refused the session and retrying
    /// cannot help (a bad token, a forbidden namespace, a protocol error).
    Stop,
}

/// What to do with the connection after `event`.
#[must_use]
pub fn after_event(event: &ClientEvent) -> Next {
    match event {
        ClientEvent::Error(e) if e.fatal => {
            if e.code.close_code().retryable() {
                Next::Reconnect
            } else {
                Next::Stop
            }
        }
        ClientEvent::TimedOut | ClientEvent::Retry { .. } | ClientEvent::AccessLost(_) => Next::Reconnect,
        _ => Next::Keep,
    }
}

/// Whether a client should connect again after its connection closed with
/// `code` (`None`: dropped without a close frame). Normal closes and codes
/// the protocol does not know are retried; the protocol's codes that a
/// retry cannot fix ([`CloseCode::retryable`] false) are not.
#[must_use]
pub fn retry_after_close(code: Option<u16>) -> bool {
    match code.and_then(CloseCode::from_code) {
        Some(c) => c == CloseCode::Normal || c.retryable(),
        None => true,
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half
/// of a window that doubles on every attempt, from `min_ms` up to `max_ms`,
/// so that clients dropped together do not come back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    min_ms: u64,
    max_ms: u64,
    window_ms: u64,
}

impl Backoff {
    /// A backoff starting at `min_ms` (at least 1) and doubling up to
    /// `max_ms` (at least `min_ms`).
    #[must_use]
    pub fn new(min_ms: u64, max_ms: u64) -> Self {
        let min_ms = min_ms.max(1);
        Backoff {
            min_ms,
            max_ms: max_ms.max(min_ms),
            window_ms: min_ms,
        }
    }

    /// Call when a connection succeeded (welcomed) or the network came
    /// back: the next delay is short again.
    pub fn reset(&mut self) {
        self.window_ms = self.min_ms;
    }

    /// The delay before the next attempt, in milliseconds; `random` is
    /// uniform in `[0, 1)` (the shell's source of randomness). Doubles the
    /// window for the attempt after.
    #[must_use]
    pub fn next_delay_ms(&mut self, random: f64) -> u64 {
        let window = self.window_ms;
        self.window_ms = window.saturating_mul(2).min(self.max_ms);
        let half = window / 2;
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // Within [half, window]; the cast saturates.
        half + ((window - half) as f64 * random) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{ErrorCode, ServerError};

    #[test]
    fn fatal_errors_stop_or_reconnect_by_code_and_silence_reconnects() {
        let error = |code, fatal| {
            ClientEvent::Error(ServerError {
                code,
                message: String::new(),
                fatal,
            })
        };
        assert_eq!(after_event(&error(ErrorCode::Unauthorized, true)), Next::Stop);
        assert_eq!(
            after_event(&error(ErrorCode::SlowConsumer, true)),
            Next::Reconnect
        );
        assert_eq!(after_event(&error(ErrorCode::Unauthorized, false)), Next::Keep);
        let lost = ClientEvent::AccessLost(ServerError {
            code: ErrorCode::Unauthorized,
            message: "the token expired".into(),
            fatal: true,
        });
        assert_eq!(after_event(&lost), Next::Reconnect);
        assert_eq!(after_event(&ClientEvent::TimedOut), Next::Reconnect);
        let retry = ClientEvent::Retry {
            op_id: "c:1".into(),
            code: ErrorCode::Internal,
            message: String::new(),
        };
        assert_eq!(after_event(&retry), Next::Reconnect);
        assert_eq!(after_event(&ClientEvent::Synced { rev: 1 }), Next::Keep);
    }

    #[test]
    fn delays_double_up_to_the_max_within_the_upper_half() {
        for random in [0.0, 0.5, 0.999_999] {
            let mut b = Backoff::new(100, 400);
            let delays: Vec<u64> = (0..5).map(|_| b.next_delay_ms(random)).collect();
            for (d, window) in delays.iter().zip([100, 200, 400, 400, 400]) {
                assert!(
                    *d >= window / 2 && *d <= window,
                    "{d} outside the upper half of {window}"
                );
            }
            b.reset();
            assert!(b.next_delay_ms(random) <= 100);
        }
        let mut b = Backoff::new(100, 400);
        assert_eq!(b.next_delay_ms(0.0), 50);
        assert_eq!(b.next_delay_ms(0.5), 150);
        // Out-of-range randomness stays within the window.
        assert_eq!(Backoff::new(100, 400).next_delay_ms(f64::NAN), 50);
        assert_eq!(Backoff::new(100, 400).next_delay_ms(7.0), 100);
        // A huge maximum does not overflow.
        let mut b = Backoff::new(1, u64::MAX);
        for _ in 0..80 {
            let _ = b.next_delay_ms(0.9);
        }
    }

    #[test]
    fn only_closes_a_retry_cannot_fix_stop_the_client() {
        assert!(!retry_after_close(Some(4001)), "unauthorized");
        assert!(!retry_after_close(Some(1002)), "protocol error");
        assert!(retry_after_close(Some(4008)), "slow consumer");
        assert!(retry_after_close(Some(1001)), "going away");
        assert!(retry_after_close(Some(1000)), "normal");
        assert!(
            retry_after_close(Some(1006)),
            "abnormal (never sent, but reported by browsers)"
        );
        assert!(retry_after_close(None), "dropped");
    }
}
