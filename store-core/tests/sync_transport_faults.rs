//! The server session's answers to what the transport reports: frames it
//! could not hand over as text (`handle_bad_frame`) and a client that
//! stopped reading (`handle_send_stalled`).

use store_core::sync::session::{Authorized, BadFrame, ServerConfig, ServerEffect, ServerSession};
use store_core::sync::{CloseCode, ErrorCode, Rights, ServerMessage};

/// A session past its `hello` and authentication, its `welcome` still
/// queued.
fn welcomed() -> ServerSession {
    let mut s = ServerSession::new(ServerConfig::default(), 0);
    s.handle_frame(
        br#"{"type":"hello","protocol":1,"namespace":"n","token":"t","client_id":"c"}"#,
        0,
    );
    assert!(matches!(s.poll_effect(), Some(ServerEffect::Authenticate { .. })));
    s.handle_auth(Ok(Authorized {
        rights: Rights::ReadWrite,
        schemas: Default::default(),
        expires_at_ms: None,
    }));
    s
}

/// Everything the session has to send, then its close code.
fn drained(s: &mut ServerSession) -> (Vec<ServerMessage>, Option<CloseCode>) {
    let messages = std::iter::from_fn(|| s.poll_transmit()).collect();
    (messages, s.poll_close())
}

#[test]
fn each_bad_frame_ends_the_session_with_its_error_and_close_code() {
    let cases = [
        (
            BadFrame::Binary,
            ErrorCode::BadMessage,
            CloseCode::UnsupportedData,
            1003,
            "binary",
        ),
        (
            BadFrame::InvalidUtf8,
            ErrorCode::BadMessage,
            CloseCode::InvalidPayload,
            1007,
            "UTF-8",
        ),
        (
            BadFrame::TooLarge { size: 10_000_000 },
            ErrorCode::TooLarge,
            CloseCode::TooBig,
            1009,
            "10000000",
        ),
        (
            BadFrame::Malformed("unmasked frame".into()),
            ErrorCode::BadMessage,
            CloseCode::ProtocolError,
            1002,
            "unmasked frame",
        ),
    ];
    for (frame, code, close, number, said) in cases {
        // Before hello and in a session alike.
        for mut s in [ServerSession::new(ServerConfig::default(), 0), welcomed()] {
            s.handle_bad_frame(frame.clone(), 5);
            let (messages, closed) = drained(&mut s);
            let Some(ServerMessage::Error(e)) = messages.last() else {
                panic!("{frame:?}: {messages:?}");
            };
            assert_eq!((e.code, e.fatal), (code, true), "{frame:?}");
            assert!(e.message.contains(said), "{frame:?}: {}", e.message);
            assert_eq!(closed, Some(close));
            assert_eq!(close.code(), number);
            assert_eq!(CloseCode::from_code(number), Some(close));
            assert!(!close.retryable());
            assert!(s.is_closed());
            // Nothing more happens.
            s.handle_frame(br#"{"type":"ping","nonce":1}"#, 6);
            assert_eq!(drained(&mut s), (vec![], None));
        }
    }
}

#[test]
fn a_stalled_send_drops_what_was_queued_and_ends_with_slow_consumer() {
    let mut s = welcomed();
    s.handle_frame(br#"{"type":"ping","nonce":1}"#, 1);
    s.handle_frame(br#"{"type":"ping","nonce":2}"#, 1);
    // The welcome and two pongs are queued; the client stopped reading.
    s.handle_send_stalled(10_000);
    let (messages, closed) = drained(&mut s);
    match &messages[..] {
        [ServerMessage::Error(e)] => {
            assert_eq!((e.code, e.fatal), (ErrorCode::SlowConsumer, true));
            assert!(e.message.contains("10000 ms"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(closed, Some(CloseCode::SlowConsumer));
    assert!(CloseCode::SlowConsumer.retryable());
    assert_eq!(s.poll_effect(), None);
}
