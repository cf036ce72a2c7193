//! [`Session`]: the server's side of one client session, sans-IO.
//!
//! The rules of a session — the `Hello` first and only once, the version chosen, frame size limits (larger for the
//! world's admin), the message rate, calls per tick, who may send admin commands — are this one state machine. It
//! owns no socket, task or clock: the shell (the quinn connection task; a WebTransport session alike) feeds it the
//! bytes it reads with the time and the world's tick ([`Session::receive`]), asks it for the hello deadline
//! ([`Session::hello_deadline`], [`Session::handle_timeout`]), and carries out the [`SessionEvent`]s it polls
//! ([`Session::poll_event`]): hand an input to the world, write an error frame, close. As with `quinn-proto`,
//! everything it decides is tested by driving it directly with a fake clock.
//!
//! # Invariants
//!
//! - Events come out in the order of the bytes that caused them; no [`SessionEvent::Input`] comes before the
//!   shell has [`Session::open`]ed the session, and none is a `Hello`.
//! - An [`ClientMessage::Admin`] input comes only from a session opened with the admin identity; anyone else's is
//!   answered with [`ErrorCode::Forbidden`] and goes no further.
//! - After a [`SessionEvent::Fatal`] the session is closed: it reads nothing more and emits nothing more.
//! - At most [`SessionLimits::calls_per_tick`] calls of one tick become inputs; at most one `RateLimited` error a
//!   second is sent while messages are dropped for rate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use locus_types::Identity;

use crate::{
    ClientMessage, ErrorCode, FrameError, FrameReader, MAX_ADMIN_FRAME, MAX_CLIENT_FRAME,
    SUPPORTED_VERSIONS, ServerMessage, Token, decode_frame, encode_frame,
};

/// The limits a session enforces. Every default is stated on its field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Messages a client may send per second, sustained. Default 200.
    pub messages_per_second: u32,
    /// Messages a client may send in a burst above the sustained rate. Default 400.
    pub burst: u32,
    /// Messages dropped for rate in a row after which the session ends. Default 1,000.
    pub flood_disconnect: u32,
    /// Reducer calls of one client that may wait for one tick; more are refused with `Busy`. Default 64.
    pub calls_per_tick: u32,
    /// Time a new session has to send its `Hello`. Default 5 s.
    pub hello_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            messages_per_second: 200,
            burst: 400,
            flood_disconnect: 1_000,
            calls_per_tick: 64,
            hello_timeout: Duration::from_secs(5),
        }
    }
}

/// What a [`Session`] asks its shell to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionEvent {
    /// A well-formed `Hello` with a version both sides speak. The shell turns the token into an identity (a new
    /// token if there is none) and calls [`Session::open`]; nothing after the `Hello` is read until then.
    Hello {
        /// The token the client presented, if any.
        token: Option<Token>,
        /// The protocol version of the session: the highest both speak.
        version: u16,
    },
    /// A message for the world, in the order received (never a `Hello`; an `Admin` only from the admin).
    Input(ClientMessage),
    /// An `Error` frame about the client's own input, to write now: it reports no world state, so it need not
    /// wait for a tick to be durable. The session goes on.
    Error(Vec<u8>),
    /// The session ends for a fatal error in its input.
    Fatal {
        /// Why.
        code: ErrorCode,
        /// For people.
        message: String,
        /// The fatal `Error` frame to write before closing.
        frame: Vec<u8>,
        /// Whether the session had been [opened](Session::open): then the world answers its earlier inputs
        /// before the close (the shell hands it the close); before, nothing else is owed and it closes at once.
        opened: bool,
    },
}

/// A token bucket: `rate` per second, at most `burst` saved up, refilled by the time passed in.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn new(rate: u32, burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            last: now,
            rate: f64::from(rate),
            burst: f64::from(burst),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let passed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + passed * self.rate).min(self.burst);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No `Hello` yet; it must come before the deadline.
    AwaitingHello { deadline: Instant },
    /// The `Hello` was handed to the shell; waiting for [`Session::open`].
    Opening,
    /// Inputs flow.
    Open { admin: bool },
    /// Ended by a fatal error.
    Closed,
}

/// The server's side of one client session. See the [module docs](self).
#[derive(Debug)]
pub struct Session {
    limits: SessionLimits,
    admin: Identity,
    state: State,
    reader: FrameReader,
    bucket: Bucket,
    dropped_in_a_row: u32,
    /// The tick the calls are counted for, and how many came in it.
    calls_tick: u64,
    calls: u32,
    /// When the last `RateLimited` error was sent.
    rate_told: Option<Instant>,
    events: VecDeque<SessionEvent>,
}

/// The frame of an [`ServerMessage::Error`]: what a session (or its shell, for errors of its own such as a
/// shutdown) tells a client it refused.
#[must_use]
pub fn error_frame(code: ErrorCode, message: &str, request: Option<u32>, fatal: bool) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(
        &ServerMessage::Error {
            code,
            message: message.to_owned(),
            request,
            fatal,
        },
        &mut out,
    );
    out
}

/// The request id a message carries, if any.
fn request_of(message: &ClientMessage) -> Option<u32> {
    match message {
        ClientMessage::Hello { .. } => None,
        ClientMessage::Call { request, .. }
        | ClientMessage::Subscribe { request, .. }
        | ClientMessage::Unsubscribe { request, .. }
        | ClientMessage::Admin { request, .. } => Some(*request),
    }
}

impl Session {
    /// A new session, accepted at `now`, of a world whose admin is `admin`.
    #[must_use]
    pub fn new(limits: SessionLimits, admin: Identity, now: Instant) -> Session {
        Session {
            limits,
            admin,
            state: State::AwaitingHello {
                deadline: now + limits.hello_timeout,
            },
            reader: FrameReader::new(MAX_CLIENT_FRAME),
            bucket: Bucket::new(limits.messages_per_second, limits.burst, now),
            dropped_in_a_row: 0,
            calls_tick: 0,
            calls: 0,
            rate_told: None,
            events: VecDeque::new(),
        }
    }

    /// Bytes read from the client's stream at `now`, while the world's latest tick is `tick` (calls are counted
    /// per tick). Every whole frame among the bytes received so far is handled, up to a `Hello` (which waits for
    /// [`Session::open`]) or a fatal error.
    pub fn receive(&mut self, bytes: &[u8], now: Instant, tick: u64) {
        if self.state == State::Closed {
            return;
        }
        self.reader.push(bytes);
        self.handle_frames(now, tick);
    }

    /// Open the session as `identity` (the shell's answer to [`SessionEvent::Hello`]); the frames received after
    /// the `Hello` are handled now. An admin session may send frames up to [`MAX_ADMIN_FRAME`].
    ///
    /// # Panics
    ///
    /// If no `Hello` is waiting for it.
    pub fn open(&mut self, identity: Identity, now: Instant, tick: u64) {
        assert_eq!(self.state, State::Opening, "open answers a Hello");
        let admin = identity == self.admin;
        if admin {
            self.reader.set_max(MAX_ADMIN_FRAME);
        }
        self.state = State::Open { admin };
        self.handle_frames(now, tick);
    }

    /// When the `Hello` must have come by, while it has not.
    #[must_use]
    pub fn hello_deadline(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingHello { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// The time is `now`: a session still without a `Hello` past its deadline ends (a fatal `HelloRequired`).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::AwaitingHello { deadline } = self.state
            && now >= deadline
        {
            self.fatal(ErrorCode::HelloRequired, "no Hello in time".into());
        }
    }

    /// The next thing for the shell to do, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Whether the session has ended (after a [`SessionEvent::Fatal`]).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the session was opened as the world's admin.
    #[must_use]
    pub fn is_admin(&self) -> bool {
        self.state == State::Open { admin: true }
    }

    fn fatal(&mut self, code: ErrorCode, message: String) {
        let opened = matches!(self.state, State::Open { .. });
        self.state = State::Closed;
        self.events.push_back(SessionEvent::Fatal {
            frame: error_frame(code, &message, None, true),
            code,
            message,
            opened,
        });
    }

    fn error(&mut self, code: ErrorCode, message: &str, request: Option<u32>) {
        self.events.push_back(SessionEvent::Error(error_frame(
            code, message, request, false,
        )));
    }

    fn handle_frames(&mut self, now: Instant, tick: u64) {
        loop {
            let admin = match self.state {
                State::AwaitingHello { .. } => None,
                State::Open { admin } => Some(admin),
                State::Opening | State::Closed => return,
            };
            let message = match self.reader.next_frame() {
                Ok(Some(payload)) => decode_frame::<ClientMessage>(payload),
                Ok(None) => return,
                Err(e @ FrameError::TooLarge { .. }) => {
                    return self.fatal(ErrorCode::FrameTooLarge, e.to_string());
                }
                Err(e) => return self.fatal(ErrorCode::MalformedFrame, e.to_string()),
            };
            match admin {
                None => self.hello(message),
                Some(admin) => match message {
                    Ok(message) => self.message(message, admin, now, tick),
                    // The framing is intact, so the session goes on.
                    Err(e) => self.error(ErrorCode::MalformedFrame, &e.to_string(), None),
                },
            }
        }
    }

    /// The first message: a `Hello` with a common version, or the session ends.
    fn hello(&mut self, message: Result<ClientMessage, FrameError>) {
        match message {
            Ok(ClientMessage::Hello { versions, token }) => {
                let common = SUPPORTED_VERSIONS
                    .iter()
                    .rev()
                    .copied()
                    .find(|v| versions.contains(v));
                match common {
                    Some(version) => {
                        self.state = State::Opening;
                        self.events
                            .push_back(SessionEvent::Hello { token, version });
                    }
                    None => self.fatal(
                        ErrorCode::UnsupportedVersion,
                        format!(
                            "the server speaks protocol versions {SUPPORTED_VERSIONS:?}; the client offered \
                             {versions:?}"
                        ),
                    ),
                }
            }
            Ok(_) => self.fatal(
                ErrorCode::HelloRequired,
                "the first message must be Hello".into(),
            ),
            Err(e) => self.fatal(
                ErrorCode::MalformedFrame,
                format!("the first message is not a well-formed Hello: {e}"),
            ),
        }
    }

    /// A message of an open session.
    fn message(&mut self, message: ClientMessage, admin: bool, now: Instant, tick: u64) {
        let request = request_of(&message);
        if !self.bucket.take(now) {
            self.dropped_in_a_row += 1;
            if self.dropped_in_a_row >= self.limits.flood_disconnect {
                return self.fatal(
                    ErrorCode::RateLimited,
                    format!(
                        "over {} messages dropped for rate in a row: disconnected",
                        self.limits.flood_disconnect
                    ),
                );
            }
            // While messages are dropped, one error a second says so (a flood must not become a flood of
            // answers).
            if self
                .rate_told
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
            {
                self.rate_told = Some(now);
                self.error(
                    ErrorCode::RateLimited,
                    "too many messages per second: dropping messages",
                    request,
                );
            }
            return;
        }
        self.dropped_in_a_row = 0;
        match message {
            ClientMessage::Hello { .. } => {
                self.fatal(ErrorCode::HelloTwice, "a second Hello".into());
            }
            ClientMessage::Call { request, .. } => {
                if tick != self.calls_tick {
                    (self.calls_tick, self.calls) = (tick, 0);
                }
                if self.calls >= self.limits.calls_per_tick {
                    let text = format!(
                        "more than {} calls in one tick: dropped",
                        self.limits.calls_per_tick
                    );
                    self.error(ErrorCode::Busy, &text, Some(request));
                    return;
                }
                self.calls += 1;
                self.events.push_back(SessionEvent::Input(message));
            }
            ClientMessage::Admin { request, .. } if !admin => self.error(
                ErrorCode::Forbidden,
                "only the world's admin (the token in the data directory's admin.token) may send admin commands",
                Some(request),
            ),
            ClientMessage::Subscribe { .. }
            | ClientMessage::Unsubscribe { .. }
            | ClientMessage::Admin { .. } => self.events.push_back(SessionEvent::Input(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AdminCommand, FRAME_PREFIX, Filter};

    const ADMIN: Identity = Identity([7; 32]);
    const PLAYER: Identity = Identity([1; 32]);

    /// A manual clock.
    struct Clock(Instant);

    impl Clock {
        fn now(&self) -> Instant {
            self.0
        }
        fn advance(&mut self, by: Duration) {
            self.0 += by;
        }
    }

    fn frame(m: &ClientMessage) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(m, &mut out);
        out
    }

    fn hello(versions: &[u16]) -> ClientMessage {
        ClientMessage::Hello {
            versions: versions.to_vec(),
            token: None,
        }
    }

    fn call(request: u32) -> ClientMessage {
        ClientMessage::Call {
            request,
            reducer: "move_to".into(),
            args: vec![0x90],
        }
    }

    fn events(s: &mut Session) -> Vec<SessionEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    /// The error a frame carries: (code, request, fatal).
    fn error_of(frame: &[u8]) -> (ErrorCode, Option<u32>, bool) {
        match decode_frame::<ServerMessage>(&frame[FRAME_PREFIX..]).expect("a server message") {
            ServerMessage::Error {
                code,
                request,
                fatal,
                ..
            } => (code, request, fatal),
            other => panic!("not an error: {other:?}"),
        }
    }

    fn errors(events: &[SessionEvent]) -> Vec<(ErrorCode, Option<u32>, bool)> {
        events
            .iter()
            .map(|e| match e {
                SessionEvent::Error(f) | SessionEvent::Fatal { frame: f, .. } => error_of(f),
                other => panic!("not an error: {other:?}"),
            })
            .collect()
    }

    /// A session opened as `identity`, the clock at its start.
    fn opened(limits: SessionLimits, identity: Identity) -> (Session, Clock) {
        let clock = Clock(Instant::now());
        let mut s = Session::new(limits, ADMIN, clock.now());
        s.receive(&frame(&hello(&SUPPORTED_VERSIONS)), clock.now(), 1);
        assert!(matches!(events(&mut s)[..], [SessionEvent::Hello { .. }]));
        s.open(identity, clock.now(), 1);
        (s, clock)
    }

    #[test]
    fn the_hello_picks_the_highest_common_version_and_inputs_wait_for_open() {
        let clock = Clock(Instant::now());
        let mut s = Session::new(SessionLimits::default(), ADMIN, clock.now());
        let token = Token([3; 32]);
        let mut bytes = frame(&ClientMessage::Hello {
            versions: vec![1, 2, 99],
            token: Some(token),
        });
        bytes.extend(frame(&call(1)));
        s.receive(&bytes, clock.now(), 1);
        assert_eq!(
            events(&mut s),
            [SessionEvent::Hello {
                token: Some(token),
                version: 2
            }]
        );
        // The call after the Hello waits for the identity.
        assert!(s.poll_event().is_none());
        s.open(PLAYER, clock.now(), 1);
        assert_eq!(events(&mut s), [SessionEvent::Input(call(1))]);
        assert!(!s.is_admin());
        // A client of version 1 only gets version 1.
        let mut s = Session::new(SessionLimits::default(), ADMIN, clock.now());
        s.receive(&frame(&hello(&[1])), clock.now(), 1);
        assert!(matches!(
            events(&mut s)[..],
            [SessionEvent::Hello { version: 1, .. }]
        ));
    }

    #[test]
    fn a_bad_first_message_ends_the_session_before_it_opens() {
        let now = Instant::now();
        let cases: [(Vec<u8>, ErrorCode); 4] = [
            (frame(&hello(&[99])), ErrorCode::UnsupportedVersion),
            (frame(&call(1)), ErrorCode::HelloRequired),
            (vec![0, 0, 0, 2, 0xc1, 0xc1], ErrorCode::MalformedFrame),
            (
                ((MAX_CLIENT_FRAME + 1) as u32).to_be_bytes().to_vec(),
                ErrorCode::FrameTooLarge,
            ),
        ];
        for (bytes, code) in cases {
            let mut s = Session::new(SessionLimits::default(), ADMIN, now);
            // Whatever follows in the same read is never looked at.
            let mut bytes = bytes;
            bytes.extend(frame(&hello(&[2])));
            s.receive(&bytes, now, 1);
            let evs = events(&mut s);
            assert_eq!(errors(&evs), [(code, None, true)], "{code:?}");
            assert!(matches!(evs[0], SessionEvent::Fatal { opened: false, .. }));
            assert!(s.is_closed());
            s.receive(&frame(&hello(&[2])), now, 1);
            assert!(s.poll_event().is_none(), "nothing after a fatal error");
        }
    }

    #[test]
    fn no_hello_by_the_deadline_ends_the_session() {
        let mut clock = Clock(Instant::now());
        let limits = SessionLimits::default();
        let mut s = Session::new(limits, ADMIN, clock.now());
        assert_eq!(s.hello_deadline(), Some(clock.now() + limits.hello_timeout));
        // Half a Hello is not a Hello.
        let hello = frame(&hello(&[2]));
        s.receive(&hello[..3], clock.now(), 1);
        clock.advance(limits.hello_timeout - Duration::from_millis(1));
        s.handle_timeout(clock.now());
        assert!(s.poll_event().is_none());
        clock.advance(Duration::from_millis(1));
        s.handle_timeout(clock.now());
        assert_eq!(
            errors(&events(&mut s)),
            [(ErrorCode::HelloRequired, None, true)]
        );
        assert_eq!(s.hello_deadline(), None);
    }

    #[test]
    fn frames_split_at_any_byte_give_the_same_events() {
        let mut bytes = frame(&hello(&[1, 2]));
        for r in 0..4 {
            bytes.extend(frame(&call(r)));
        }
        bytes.extend(frame(&ClientMessage::Subscribe {
            request: 9,
            table: "player".into(),
            filter: Filter::All,
        }));
        let whole = {
            let (mut s, clock) = (
                Session::new(SessionLimits::default(), ADMIN, Instant::now()),
                Instant::now(),
            );
            s.receive(&bytes, clock, 1);
            let mut evs = events(&mut s);
            s.open(PLAYER, clock, 1);
            evs.extend(events(&mut s));
            evs
        };
        assert_eq!(whole.len(), 6);
        for cut in 0..bytes.len() {
            let now = Instant::now();
            let mut s = Session::new(SessionLimits::default(), ADMIN, now);
            let mut evs = Vec::new();
            for part in [&bytes[..cut], &bytes[cut..]] {
                s.receive(part, now, 1);
                evs.extend(events(&mut s));
                if matches!(evs.last(), Some(SessionEvent::Hello { .. })) {
                    s.open(PLAYER, now, 1);
                    evs.extend(events(&mut s));
                }
            }
            assert_eq!(evs, whole, "cut at {cut}");
        }
    }

    #[test]
    fn the_rate_limit_drops_messages_says_so_once_a_second_and_a_flood_ends_the_session() {
        let limits = SessionLimits {
            messages_per_second: 10,
            burst: 5,
            flood_disconnect: 50,
            ..SessionLimits::default()
        };
        let (mut s, mut clock) = opened(limits, PLAYER);
        let sub = |request| ClientMessage::Unsubscribe {
            request,
            table: "t".into(),
        };
        for r in 0..8 {
            s.receive(&frame(&sub(r)), clock.now(), 1);
        }
        let evs = events(&mut s);
        // The burst passes; the sixth is dropped and told; the next two are dropped silently.
        assert_eq!(
            evs[..5],
            (0..5)
                .map(|r| SessionEvent::Input(sub(r)))
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(
            errors(&evs[5..]),
            [(ErrorCode::RateLimited, Some(5), false)]
        );
        // 100 ms later one token is back.
        clock.advance(Duration::from_millis(100));
        s.receive(&frame(&sub(20)), clock.now(), 1);
        assert_eq!(events(&mut s), [SessionEvent::Input(sub(20))]);
        // Still within the second of the last warning: dropped without a word; a second later, told again.
        s.receive(&frame(&sub(21)), clock.now(), 1);
        assert!(events(&mut s).is_empty());
        clock.advance(Duration::from_millis(901));
        for r in 0..10 {
            s.receive(&frame(&sub(30 + r)), clock.now(), 1);
        }
        let evs = events(&mut s);
        assert_eq!(
            errors(&evs[5..]),
            [(ErrorCode::RateLimited, Some(35), false)],
            "{evs:?}"
        );
        // A flood: 50 dropped in a row ends it.
        let mut flood = Vec::new();
        for r in 0..60 {
            flood.extend(frame(&sub(100 + r)));
        }
        s.receive(&flood, clock.now(), 1);
        let evs = events(&mut s);
        assert!(matches!(
            evs.last(),
            Some(SessionEvent::Fatal {
                code: ErrorCode::RateLimited,
                opened: true,
                ..
            })
        ));
        assert!(s.is_closed());
    }

    #[test]
    fn calls_beyond_the_limit_of_a_tick_are_refused_busy_until_the_next_tick() {
        let limits = SessionLimits {
            calls_per_tick: 3,
            ..SessionLimits::default()
        };
        let (mut s, clock) = opened(limits, PLAYER);
        let mut bytes = Vec::new();
        for r in 0..5 {
            bytes.extend(frame(&call(r)));
        }
        s.receive(&bytes, clock.now(), 7);
        let evs = events(&mut s);
        assert_eq!(
            evs[..3],
            [
                SessionEvent::Input(call(0)),
                SessionEvent::Input(call(1)),
                SessionEvent::Input(call(2))
            ]
        );
        assert_eq!(
            errors(&evs[3..]),
            [
                (ErrorCode::Busy, Some(3), false),
                (ErrorCode::Busy, Some(4), false)
            ]
        );
        s.receive(&frame(&call(5)), clock.now(), 8);
        assert_eq!(events(&mut s), [SessionEvent::Input(call(5))]);
    }

    #[test]
    fn admin_commands_and_large_frames_are_for_the_admin_only() {
        let admin_msg = ClientMessage::Admin {
            request: 4,
            command: AdminCommand::Snapshot,
        };
        let big = ClientMessage::Call {
            request: 5,
            reducer: "x".into(),
            args: vec![0; MAX_CLIENT_FRAME + 10],
        };
        let (mut player, clock) = opened(SessionLimits::default(), PLAYER);
        player.receive(&frame(&admin_msg), clock.now(), 1);
        assert_eq!(
            errors(&events(&mut player)),
            [(ErrorCode::Forbidden, Some(4), false)]
        );
        player.receive(&frame(&big), clock.now(), 1);
        assert_eq!(
            errors(&events(&mut player)),
            [(ErrorCode::FrameTooLarge, None, true)]
        );

        let (mut admin, clock) = opened(SessionLimits::default(), ADMIN);
        assert!(admin.is_admin());
        admin.receive(&frame(&admin_msg), clock.now(), 1);
        admin.receive(&frame(&big), clock.now(), 1);
        assert_eq!(
            events(&mut admin),
            [SessionEvent::Input(admin_msg), SessionEvent::Input(big)]
        );
    }

    #[test]
    fn a_malformed_frame_is_an_error_but_a_second_hello_is_fatal() {
        let (mut s, clock) = opened(SessionLimits::default(), PLAYER);
        let mut bytes = vec![0, 0, 0, 1, 0xc1];
        bytes.extend(frame(&call(1)));
        bytes.extend(frame(&hello(&[2])));
        bytes.extend(frame(&call(2)));
        s.receive(&bytes, clock.now(), 1);
        let evs = events(&mut s);
        assert_eq!(
            errors(&evs[..1]),
            [(ErrorCode::MalformedFrame, None, false)]
        );
        assert_eq!(evs[1], SessionEvent::Input(call(1)));
        assert_eq!(errors(&evs[2..]), [(ErrorCode::HelloTwice, None, true)]);
        assert!(matches!(evs[2], SessionEvent::Fatal { opened: true, .. }));
    }
}
