//! Target `session`: a client's bytes into the server's [`Session`] — the frame reader, the decoding of every
//! client message, and the session's rules.
//!
//! Input: one byte of settings, then the bytes the client sends. Bit 0 of the settings opens the session as the
//! world's admin (the larger frame limit, admin commands accepted); bits 1–7 set the size of the pieces the bytes
//! arrive in (0: all at once). Each piece arrives 7 ms after the one before, in the next tick.
//!
//! Checked, besides "no panic": the [session invariants](locus_protocol::session) — no input before the session is
//! opened and none a `Hello`; an `Admin` input only from the admin; nothing after a `Fatal`; at most
//! `calls_per_tick` calls per tick — and that every input re-encodes to a frame that decodes to the same message.

use std::time::{Duration, Instant};

use locus_protocol::{
    ClientMessage, Session, SessionEvent, SessionLimits, decode_frame, encode_frame,
};
use locus_types::Identity;

const ADMIN: Identity = Identity([0xad; 32]);
const PLAYER: Identity = Identity([0x11; 32]);

/// Run one input. Panics if an invariant is broken.
pub fn session(data: &[u8]) {
    let Some((&settings, stream)) = data.split_first() else {
        return;
    };
    let as_admin = settings & 1 == 1;
    let piece = match usize::from(settings >> 1) {
        0 => stream.len().max(1),
        n => n,
    };
    let limits = SessionLimits::default();
    let start = Instant::now();
    let mut session = Session::new(limits, ADMIN, start);
    let mut opened = false;
    let mut closed = false;
    for (i, bytes) in stream.chunks(piece).enumerate() {
        let now = start + Duration::from_millis(7 * i as u64);
        let tick = i as u64;
        let mut calls_in_tick = 0u32;
        session.receive(bytes, now, tick);
        session.handle_timeout(now);
        while let Some(event) = session.poll_event() {
            assert!(
                !closed,
                "an event after the session's fatal error: {event:?}"
            );
            match event {
                SessionEvent::Hello { version, .. } => {
                    assert!(!opened, "a second Hello was handed to the shell");
                    assert!(
                        locus_protocol::SUPPORTED_VERSIONS.contains(&version),
                        "version {version} was chosen"
                    );
                    opened = true;
                    session.open(if as_admin { ADMIN } else { PLAYER }, now, tick);
                }
                SessionEvent::Input(message) => {
                    assert!(
                        opened,
                        "an input before the session was opened: {message:?}"
                    );
                    match &message {
                        ClientMessage::Hello { .. } => panic!("a Hello handed on as an input"),
                        ClientMessage::Admin { .. } => {
                            assert!(as_admin, "an admin command from a player")
                        }
                        ClientMessage::Call { .. } => {
                            calls_in_tick += 1;
                            assert!(
                                calls_in_tick <= limits.calls_per_tick,
                                "{calls_in_tick} calls in one tick"
                            );
                        }
                        ClientMessage::Subscribe { .. } | ClientMessage::Unsubscribe { .. } => {}
                    }
                    let mut frame = Vec::new();
                    encode_frame(&message, &mut frame);
                    let again: ClientMessage =
                        decode_frame(&frame[4..]).expect("an input re-encodes to a valid frame");
                    assert_eq!(again, message, "an input does not survive re-encoding");
                }
                SessionEvent::Error(frame) => assert!(frame.len() > 4, "an empty error frame"),
                SessionEvent::Fatal { frame, .. } => {
                    assert!(frame.len() > 4, "an empty fatal frame");
                    closed = true;
                }
            }
        }
        assert_eq!(
            session.is_closed(),
            closed,
            "is_closed disagrees with the events"
        );
        if closed {
            break;
        }
    }
}
