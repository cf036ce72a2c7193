//! The world on its own: the server's behaviour, driven through [`TestWorld`] (real modules under wasmtime, a manual
//! clock, fake sessions reading what a client would decode; no socket, thread or file). The loopback tests in
//! `server.rs` and `ops.rs` keep what only the network and the process show (framing, limits, timeouts, restarts
//! of the process, the CLI, metrics).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

#[path = "common/failing.rs"]
mod failing;
#[path = "common/keys.rs"]
mod keys;

use game_module as gm;
use locus_client::Event;
use locus_host::{HostConfig, Module, Runtime};
use locus_protocol::{
    AdminCommand, AdminReply, CallOutcome, ErrorCode, ModuleLogLine, PROTOCOL_VERSION,
    ServerMessage, Token,
};
use locus_server::testing::{Ended, TestSession, TestWorld, TestWorldConfig};
use locus_types::{Identity, Tick};

/// Compile `wasm` once for every test that needs it (compiling the demo module takes seconds).
fn compile(wasm: &[u8]) -> Module {
    Runtime::new(HostConfig::default())
        .unwrap()
        .load(wasm)
        .unwrap()
}

/// `package` of the workspace with `features`, built to wasm into `dir` of the target directory, and compiled.
fn built(package: &str, features: &[&str], dir: &str) -> Module {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = locus_host::build::build_module_with_features(
        &workspace,
        package,
        features,
        &locus_host::build::module_target_dir(&workspace, dir),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    compile(&wasm)
}

/// The world's module log (the last 1,000 lines), as `locus logs` reads it.
fn module_log(w: &mut TestWorld) -> Vec<ModuleLogLine> {
    match w.local_admin(AdminCommand::Logs {
        tail: 1_000,
        follow: false,
    }) {
        AdminReply::Logs { lines } => lines,
        other => panic!("{other:?}"),
    }
}

/// The demo module (`game-module`).
static DEMO: LazyLock<Module> = LazyLock::new(|| built("game-module", &[], "wasm-modules"));

static KEYS: LazyLock<Module> = LazyLock::new(|| compile(&keys::keys_module()));

static FAILING: LazyLock<Module> = LazyLock::new(|| compile(&failing::failing_module()));

/// The demo module's next version (feature `upgrade-demo`: module version 2, a `guild` table, a `player.title`
/// column, and new content: a `guild_banner` item and recipe, `hide` stacking to 40).
static V2: LazyLock<Module> = LazyLock::new(|| {
    built(
        "game-module",
        &["upgrade-demo"],
        "wasm-modules-upgrade-demo",
    )
});

/// The host's test module (`locus-test-module`, built with the Rust SDK): `panic_after_write(text)` panics with
/// `deliberate panic: {text}`.
static TEST_MODULE: LazyLock<Module> =
    LazyLock::new(|| built("locus-test-module", &[], "wasm-modules"));

/// A new demo world, without its `init` (no terrain rows, items or creatures: the reducers these tests call need
/// none, and a world of 30,000 rows would only slow them).
fn demo() -> TestWorld {
    let config = TestWorldConfig {
        init: false,
        ..TestWorldConfig::default()
    };
    TestWorld::new(&DEMO, config).unwrap()
}

fn world_of(module: &Module) -> TestWorld {
    TestWorld::new(module, TestWorldConfig::default()).unwrap()
}

fn players(w: &TestWorld, s: TestSession) -> Vec<gm::Player> {
    w.cache(s)
        .rows::<gm::Player>("player")
        .expect("player rows decode")
}

fn sees(w: &TestWorld, s: TestSession, identity: Identity) -> bool {
    players(w, s).iter().any(|p| p.identity == identity)
}

fn me(w: &TestWorld, s: TestSession) -> gm::Player {
    let identity = w.identity(s);
    players(w, s)
        .into_iter()
        .find(|p| p.identity == identity)
        .expect("its own player in view")
}

/// Run one tick and assert that each of `calls` (session, request) succeeded in it.
fn tick_ok(w: &mut TestWorld, calls: &[(TestSession, u32)]) {
    w.tick();
    for &(s, request) in calls {
        assert_eq!(
            w.result(s, request),
            Some(&CallOutcome::Ok),
            "call {request} of {s:?}"
        );
    }
}

/// Every cache event of `s` so far must fit its view (no `Inconsistent`).
fn assert_consistent(w: &TestWorld, s: TestSession) {
    for e in w.events(s) {
        assert!(!matches!(e, Event::Inconsistent { .. }), "{s:?}: {e:?}");
    }
}

#[test]
fn two_sessions_see_each_other_when_near_and_stop_when_far() {
    let mut w = demo();
    let (a, b) = (w.connect(Identity([1; 32])), w.connect(Identity([2; 32])));
    let (ia, ib) = (w.identity(a), w.identity(b));
    for s in [a, b] {
        w.subscribe(s, "player", locus_protocol::Filter::All);
    }
    let ra = w.call(a, &gm::teleport::call(1000.0, 1000.0));
    let rb = w.call(b, &gm::teleport::call(1010.0, 1000.0));
    // Within the tick of the calls: each sees both.
    tick_ok(&mut w, &[(a, ra), (b, rb)]);
    assert!(sees(&w, a, ia) && sees(&w, a, ib), "a sees both");
    assert!(sees(&w, b, ia) && sees(&w, b, ib), "b sees both");
    // 70 m away: beyond the 64 m enter radius, within the 72 m leave radius: still seen.
    let r = w.call(b, &gm::teleport::call(1070.0, 1000.0));
    tick_ok(&mut w, &[(b, r)]);
    assert!(
        sees(&w, a, ib) && sees(&w, b, ia),
        "kept within the leave radius"
    );
    // Far away: each loses the other, and still sees itself.
    let r = w.call(b, &gm::teleport::call(3000.0, 3000.0));
    tick_ok(&mut w, &[(b, r)]);
    assert!(!sees(&w, a, ib) && sees(&w, a, ia), "a lost b");
    assert!(!sees(&w, b, ia) && sees(&w, b, ib), "b lost a");
    // Back to 70 m: outside the enter radius, so not seen yet.
    let r = w.call(b, &gm::teleport::call(1070.0, 1000.0));
    tick_ok(&mut w, &[(b, r)]);
    assert!(!sees(&w, a, ib), "entered beyond the enter radius");
    // Within 64 m: seen again.
    let r = w.call(b, &gm::teleport::call(1050.0, 1000.0));
    tick_ok(&mut w, &[(b, r)]);
    assert!(sees(&w, a, ib) && sees(&w, b, ia), "seen again");
    assert_eq!(me(&w, a).pos, me(&w, b).pos - gm::Vec2::new(50.0, 0.0));
    assert_consistent(&w, a);
    assert_consistent(&w, b);
    assert_eq!(w.world().session_count(), 2);
}

#[test]
fn an_admin_call_runs_as_the_server_and_a_session_cannot_make_it() {
    let mut w = demo();
    let a = w.connect(Identity([1; 32]));
    w.subscribe(a, "creature", locus_protocol::Filter::All);
    w.subscribe(a, "player", locus_protocol::Filter::All);
    // A session may not spawn creatures.
    let spawn = gm::admin::admin_spawn_creatures_in::call(5, 600.0, 600.0, 700.0, 700.0);
    let refused = w.call(a, &spawn);
    w.tick();
    assert!(
        matches!(w.result(a, refused), Some(CallOutcome::Err { code: ErrorCode::ReducerFailed, message }) if message.contains("only the server")),
        "{:?}",
        w.messages(a)
    );
    assert_eq!(
        w.cache(a).len("creature"),
        0,
        "the refused call wrote nothing"
    );
    // The server's own API may; the creatures appear around the session's avatar.
    let at = me(&w, a).pos;
    let near = |w: &TestWorld| {
        w.cache(a)
            .rows::<gm::Creature>("creature")
            .unwrap()
            .iter()
            .filter(|c| c.pos.distance(at) < 40.0)
            .count()
    };
    let outcome = w.local_call(&gm::admin::admin_spawn_creatures_in::call(
        40,
        at.x - 20.0,
        at.y - 20.0,
        at.x + 20.0,
        at.y + 20.0,
    ));
    assert_eq!(outcome, CallOutcome::Ok);
    assert!(near(&w) >= 5, "{} creatures near", near(&w));
    // So may a session's operator command (the network admits only the admin's): it runs as the server too.
    let count = |w: &TestWorld| {
        let db = w.world().db();
        db.table(db.table_id("creature").unwrap()).unwrap().len()
    };
    let before = count(&w);
    let request = w.admin(
        a,
        AdminCommand::Call {
            reducer: spawn.reducer.into(),
            args: spawn.args.clone(),
        },
    );
    let tick = w.tick().tick;
    assert_eq!(
        w.admin_reply(a, request),
        Some(&AdminReply::Called {
            tick: tick.0,
            outcome: CallOutcome::Ok
        })
    );
    assert!((before + 1..=before + 5).contains(&count(&w)));
    // Errors come back as outcomes and write nothing.
    let rows = count(&w);
    let outcome = w.local_call(&gm::admin::admin_spawn_creatures_in::call(
        3, 10.0, 10.0, 10.0, 10.0,
    ));
    assert!(
        matches!(&outcome, CallOutcome::Err { code: ErrorCode::ReducerFailed, message } if message.contains("empty rectangle")),
        "{outcome:?}"
    );
    let unknown = w.local_admin(AdminCommand::Call {
        reducer: "no_such_reducer".into(),
        args: vec![0x90],
    });
    assert!(
        matches!(
            &unknown,
            AdminReply::Called {
                outcome: CallOutcome::Err {
                    code: ErrorCode::NoSuchReducer,
                    ..
                },
                ..
            }
        ),
        "{unknown:?}"
    );
    assert_eq!(count(&w), rows);
}

#[test]
fn a_reducer_error_comes_back_to_its_caller_only() {
    let mut w = demo();
    let (a, b) = (w.connect(Identity([1; 32])), w.connect(Identity([2; 32])));
    w.tick();
    let (_, _) = (w.take_messages(a), w.take_messages(b));
    let failed = w.call(a, &gm::set_name::call(String::new()));
    let unknown = w.call_raw(a, "no_such_reducer", &[0x90]);
    let wrong = w.call_raw(a, "move_to", &[0x92, 0xa1, b'x', 0xa1, b'y']);
    let not_an_array = w.call_raw(a, "move_to", &[0x01]);
    let trailing = w.call_raw(a, "move_to", &[0x92, 0x01, 0x02, 0xc0]);
    let marker = w.call(b, &gm::move_to::call(10.0, 10.0));
    let out = w.tick();
    match w.result(a, failed) {
        Some(CallOutcome::Err { code, message }) => {
            assert_eq!(*code, ErrorCode::ReducerFailed);
            assert!(message.contains("name"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let code = |request| match w.result(a, request) {
        Some(CallOutcome::Err { code, .. }) => Some(*code),
        _ => None,
    };
    assert_eq!(code(unknown), Some(ErrorCode::NoSuchReducer));
    assert_eq!(code(wrong), Some(ErrorCode::BadArguments));
    assert_eq!(code(not_an_array), Some(ErrorCode::BadArguments));
    assert_eq!(code(trailing), Some(ErrorCode::BadArguments));
    // Each call answered once, in the order sent, in the tick it ran in.
    let answered: Vec<u32> = w
        .messages(a)
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Result { request, tick, .. } if *tick == out.tick.0 => Some(*request),
            ServerMessage::Result { .. } => panic!("a result of another tick: {m:?}"),
            _ => None,
        })
        .collect();
    assert_eq!(answered, [failed, unknown, wrong, not_an_array, trailing]);
    // b got its own result and nothing else: no result and no error meant for a.
    assert_eq!(
        w.messages(b),
        [ServerMessage::Result {
            request: marker,
            tick: out.tick.0,
            outcome: CallOutcome::Ok
        }]
    );
    // Every call is counted for metrics, the failures as failed; only b's call wrote anything.
    let calls: Vec<(&str, bool)> = out.calls.iter().map(|(r, f)| (&**r, *f)).collect();
    assert_eq!(
        calls,
        [
            ("set_name", true),
            ("no_such_reducer", true),
            ("move_to", true),
            ("move_to", true),
            ("move_to", true),
            ("move_to", false),
        ]
    );
    assert_eq!((out.stats.calls, out.stats.failed_calls), (6, 5));
}

/// Every error text a session was sent: failed calls' messages and `Error` frames.
fn error_texts(w: &TestWorld, s: TestSession) -> Vec<String> {
    w.messages(s)
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Result {
                outcome: CallOutcome::Err { message, .. },
                ..
            }
            | ServerMessage::Error { message, .. } => Some(message.clone()),
            ServerMessage::Admin {
                reply:
                    AdminReply::Called {
                        outcome: CallOutcome::Err { message, .. },
                        ..
                    },
                ..
            } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_panic_tells_a_client_its_message_the_admin_also_where_and_nobody_the_backtrace() {
    let admin = Identity([9; 32]);
    let config = TestWorldConfig {
        admin: Some(admin),
        ..TestWorldConfig::default()
    };
    let mut w = TestWorld::new(&TEST_MODULE, config).unwrap();
    let (player, operator) = (w.connect(Identity([1; 32])), w.connect(admin));
    w.tick();
    let args = rmp_serde::to_vec(&("y",)).unwrap();
    let by_player = w.call_raw(player, "panic_after_write", &args);
    let by_operator = w.call_raw(operator, "panic_after_write", &args);
    let by_command = w.admin(
        operator,
        AdminCommand::Call {
            reducer: "panic_after_write".into(),
            args: args.clone(),
        },
    );
    w.tick();
    // Where the test module panics.
    let source = include_str!("../../host/test-module/src/lib.rs");
    let (line, text) = source
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("panic!(\"deliberate panic: {text}\")"))
        .expect("the test module panics");
    let at = format!(
        "engine/host/test-module/src/lib.rs:{}:{}",
        line + 1,
        text.find("panic!").unwrap() + 1
    );
    assert_eq!(
        w.result(player, by_player),
        Some(&CallOutcome::Err {
            code: ErrorCode::ReducerAborted,
            message: "reducer `panic_after_write` panicked: deliberate panic: y".into(),
        })
    );
    let told_the_operator = CallOutcome::Err {
        code: ErrorCode::ReducerAborted,
        message: format!("reducer `panic_after_write` panicked at {at}: deliberate panic: y"),
    };
    assert_eq!(w.result(operator, by_operator), Some(&told_the_operator));
    assert_eq!(
        w.admin_reply(operator, by_command),
        Some(&AdminReply::Called {
            tick: w.current_tick().0,
            outcome: told_the_operator.clone(),
        })
    );
    assert_eq!(
        w.local_call(&locus_module::ReducerCall::new("panic_after_write", args)),
        told_the_operator,
        "the server's own API is the operator too"
    );
    // Nothing of the trap itself — the backtrace, offsets, symbols — reaches anyone.
    for s in [player, operator] {
        for message in error_texts(&w, s) {
            for leak in [
                "wasm backtrace",
                "_ZN",
                "0x",
                "__rustc",
                "run_reducer",
                "unreachable",
            ] {
                assert!(!message.contains(leak), "{leak} in {message:?}");
            }
        }
    }
}

#[test]
fn a_bare_trap_tells_the_caller_what_trapped_in_one_line() {
    let mut w = world_of(&FAILING);
    let a = w.connect(Identity([1; 32]));
    w.tick();
    let crash = w.call_raw(a, "crash", &[0x90]);
    w.tick();
    assert_eq!(
        w.result(a, crash),
        Some(&CallOutcome::Err {
            code: ErrorCode::ReducerAborted,
            message: "reducer `crash` trapped: wasm `unreachable` instruction executed".into(),
        })
    );
    for message in error_texts(&w, a) {
        for leak in ["wasm backtrace", "0x", "wasm function"] {
            assert!(!message.contains(leak), "{leak} in {message:?}");
        }
    }
}

#[test]
fn bad_input_gets_a_clear_error_for_that_session_only_and_the_world_keeps_ticking() {
    let mut w = demo();
    let (good, bad) = (w.connect(Identity([1; 32])), w.connect(Identity([2; 32])));
    w.subscribe(good, "player", locus_protocol::Filter::All);
    let r = w.call(good, &gm::teleport::call(500.0, 500.0));
    tick_ok(&mut w, &[(good, r)]);
    let seen = w.take_messages(good).len();
    assert!(seen > 0);
    // The bad session subscribes to the players, then asks for what does not exist.
    let own = w.subscribe(bad, "player", locus_protocol::Filter::All);
    let requests = [
        w.subscribe(bad, "no_such_table", locus_protocol::Filter::All),
        w.unsubscribe(bad, "no_such_table"),
        w.subscribe(
            bad,
            "player",
            locus_protocol::Filter::Eq {
                column: "no_such_column".into(),
                value: vec![0x01],
            },
        ),
        w.subscribe(
            bad,
            "player",
            locus_protocol::Filter::Eq {
                column: "name".into(),
                value: vec![0x01],
            },
        ),
    ];
    let walk = w.call(bad, &gm::teleport::call(510.0, 500.0));
    w.tick();
    let errors: Vec<_> = requests.iter().map(|&r| w.error(bad, r)).collect();
    let codes: Vec<_> = errors.iter().map(|e| e.map(|(c, _, f)| (c, f))).collect();
    assert_eq!(
        codes,
        [
            Some((ErrorCode::NoSuchTable, false)),
            Some((ErrorCode::NoSuchTable, false)),
            Some((ErrorCode::BadSubscription, false)),
            Some((ErrorCode::BadSubscription, false)),
        ]
    );
    for (_, message, _) in errors.iter().flatten() {
        assert!(
            message.contains("no_such_table")
                || message.contains("no_such_column")
                || message.contains("player.name"),
            "a message naming what is wrong: {message}"
        );
    }
    // The refused subscriptions kept the one they would have replaced: both players are in view.
    assert!(
        w.messages(bad)
            .iter()
            .any(|m| matches!(m, ServerMessage::Subscribed { request, .. } if *request == own)),
        "{:?}",
        w.messages(bad)
    );
    assert_eq!(w.result(bad, walk), Some(&CallOutcome::Ok));
    let mut held: Vec<Identity> = players(&w, bad).iter().map(|p| p.identity).collect();
    held.sort_unstable();
    assert_eq!(held, [w.identity(good), w.identity(bad)]);
    // The good session heard nothing of it, and is served on: its own move arrives.
    for m in w.messages(good) {
        assert!(
            matches!(m, ServerMessage::Tick { .. }),
            "the good session got {m:?}"
        );
    }
    let r = w.call(good, &gm::teleport::call(520.0, 500.0));
    tick_ok(&mut w, &[(good, r)]);
    assert_eq!(me(&w, good).pos, gm::Vec2::new(520.0, 500.0));
    assert_consistent(&w, good);
}

/// A walking player reaches a version-2 session as patches of its position (which, applied by the client cache,
/// track the row exactly), a version-3 session as moves in centimetres (handles instead of keys), and a version-1
/// session as whole rows only; once the walks end on whole centimetres, all three hold the same bytes.
#[test]
fn version_3_sessions_get_moves_version_2_patches_and_version_1_whole_rows() {
    let mut w = demo();
    let v1 = w.connect_version(Identity([1; 32]), 1);
    let v2 = w.connect_version(Identity([2; 32]), 2);
    let v3 = w.connect_version(Identity([3; 32]), 3);
    let all = [v1, v2, v3];
    for s in all {
        w.subscribe(s, "player", locus_protocol::Filter::All);
    }
    let r1 = w.call(v1, &gm::teleport::call(500.0, 500.0));
    let r2 = w.call(v2, &gm::teleport::call(502.0, 500.0));
    let r3 = w.call(v3, &gm::teleport::call(506.0, 500.0));
    tick_ok(&mut w, &[(v1, r1), (v2, r2), (v3, r3)]);
    let r1 = w.call(v1, &gm::move_to::call(504.0, 500.0));
    let r2 = w.call(v2, &gm::move_to::call(502.0, 504.0));
    let r3 = w.call(v3, &gm::move_to::call(509.5, 503.25));
    tick_ok(&mut w, &[(v1, r1), (v2, r2), (v3, r3)]);
    let stopped = |w: &TestWorld| all.iter().all(|&s| players(w, s).iter().all(|p| !p.moving));
    assert!(w.run_until(100, stopped).is_some(), "the walks never ended");
    for s in all {
        let (mut updates, mut patches, mut moves) = (0, 0, 0);
        for m in w.messages(s) {
            if let ServerMessage::Tick { tables, .. } = m {
                for t in tables {
                    updates += t.updates.len();
                    patches += t.patches.len();
                    moves += t
                        .moves
                        .as_ref()
                        .map_or(0, |m| locus_protocol::compact::Moves::new(&m.0).count());
                }
            }
        }
        match w.version(s) {
            1 => {
                assert!(updates > 0, "version 1 got no updates");
                assert_eq!(patches + moves, 0, "version 1 got patches or moves");
            }
            2 => {
                assert!(patches > 0, "version 2 got no patches ({updates} updates)");
                assert_eq!(moves, 0, "version 2 got moves");
            }
            _ => assert!(
                moves > 2 * patches,
                "version 3 walks as moves ({moves} moves, {patches} patches, {updates} updates)"
            ),
        }
        assert_consistent(&w, s);
    }
    assert_eq!(me(&w, v1).pos, gm::Vec2::new(504.0, 500.0));
    assert_eq!(me(&w, v2).pos, gm::Vec2::new(502.0, 504.0));
    assert_eq!(me(&w, v3).pos, gm::Vec2::new(509.5, 503.25));
    let rows = |s| -> Vec<(Vec<u8>, Vec<u8>)> {
        w.cache(s)
            .iter_raw("player")
            .map(|(k, r)| (k.to_vec(), r.to_vec()))
            .collect()
    };
    assert_eq!(rows(v1).len(), 3);
    assert_eq!(
        rows(v1),
        rows(v2),
        "patched rows are the whole rows, byte for byte"
    );
    assert_eq!(
        rows(v1),
        rows(v3),
        "moved rows are the whole rows, byte for byte, once they stand on whole centimetres"
    );
}

/// While players walk, a version-3 session's positions are the server's to half a centimetre (plus `f32`
/// spacing), and every other column is the server's, byte for byte.
#[test]
fn version_3_positions_stay_within_half_a_centimetre_while_walking() {
    let mut w = demo();
    let (a, b) = (
        w.connect_version(Identity([1; 32]), 3),
        w.connect_version(Identity([2; 32]), 2),
    );
    for s in [a, b] {
        w.subscribe(s, "player", locus_protocol::Filter::All);
    }
    let ra = w.call(a, &gm::teleport::call(700.0, 700.0));
    let rb = w.call(b, &gm::teleport::call(710.0, 700.0));
    tick_ok(&mut w, &[(a, ra), (b, rb)]);
    let r = w.call(b, &gm::move_dir::call(0.6, 0.8));
    tick_ok(&mut w, &[(b, r)]);
    for _ in 0..30 {
        w.tick();
        let truth = me(&w, b);
        let seen: Vec<gm::Player> = players(&w, a)
            .into_iter()
            .filter(|p| p.id == truth.id)
            .collect();
        assert_eq!(seen.len(), 1);
        let d = seen[0].pos - truth.pos;
        assert!(
            d.abs().max_element() <= 0.005 + 1.0 / 1024.0,
            "{:?} vs {:?}",
            seen[0].pos,
            truth.pos
        );
        assert_eq!(
            gm::Player {
                pos: truth.pos,
                ..seen[0].clone()
            },
            truth,
            "every other column is exact"
        );
    }
    assert_consistent(&w, a);
}

/// What a session's Tick frames since the last look carried of `player` rows: (moves, patches setting `pos`
/// alone, other updates and patches).
fn moves_and_updates(w: &mut TestWorld, s: TestSession) -> (usize, usize, usize) {
    let player = w.cache(s).table_id("player").expect("player table");
    let (mut moves, mut rests, mut updates) = (0, 0, 0);
    for m in w.take_messages(s) {
        if let ServerMessage::Tick { tables, .. } = m {
            for t in tables.iter().filter(|t| t.table == player) {
                moves += t
                    .moves
                    .as_ref()
                    .map_or(0, |m| locus_protocol::compact::Moves::new(&m.0).count());
                // A version-3 patch setting one column: `93`, a handle (below 128 here), the column (`pos` is 1).
                let rest = |p: &&locus_protocol::WireRow| p.0[0] == 0x93 && p.0[2] == 0x01;
                rests += t.patches.iter().filter(rest).count();
                updates +=
                    t.updates.len() + t.patches.len() - t.patches.iter().filter(rest).count();
            }
        }
    }
    (moves, rests, updates)
}

/// The places of `player` rows in the datagrams `s` was delivered from the `from`-th on.
fn places(w: &TestWorld, s: TestSession, from: usize) -> usize {
    let player = w.cache(s).table_id("player").expect("player table");
    w.datagrams(s)[from..]
        .iter()
        .map(|d| {
            let d = locus_protocol::places::Datagram::parse(d).expect("parses");
            d.sections()
                .filter(|(t, _)| *t == player)
                .map(|(_, p)| p.count())
                .sum::<usize>()
        })
        .sum()
}

/// A world where session `a` (version 4, its datagrams lost as `lost` says) sees `b` (version 2) start walking
/// 100 m north from 10 m east of it.
fn walking_seen_by_datagrams(
    lost: impl FnMut(u64) -> bool + Send + 'static,
) -> (TestWorld, TestSession, TestSession) {
    let mut w = demo();
    let a = w.connect_datagrams(Identity([1; 32]), lost);
    let b = w.connect_version(Identity([2; 32]), 2);
    for s in [a, b] {
        w.subscribe(s, "player", locus_protocol::Filter::All);
    }
    let ra = w.call(a, &gm::teleport::call(700.0, 700.0));
    let rb = w.call(b, &gm::teleport::call(710.0, 700.0));
    tick_ok(&mut w, &[(a, ra), (b, rb)]);
    let r = w.call(b, &gm::move_to::call(710.0, 800.0));
    tick_ok(&mut w, &[(b, r)]);
    (w, a, b)
}

/// `b` (walking, seen by `a` in places) stops: the stream carries its position at rest once, in the tick after
/// its last place (the stop changes columns other than the position), and `a` then holds its exact row.
fn stop_and_hold_exactly(w: &mut TestWorld, a: TestSession, b: TestSession) {
    let r = w.call(b, &gm::move_dir::call(0.0, 0.0));
    tick_ok(w, &[(b, r)]);
    let mut rests = moves_and_updates(w, a).1;
    for _ in 0..3 {
        w.tick();
        rests += moves_and_updates(w, a).1;
    }
    assert_eq!(rests, 1, "the position at rest goes on the stream once");
    let truth = me(w, b);
    let seen = players(w, a).into_iter().find(|p| p.id == truth.id);
    assert_eq!(seen, Some(truth), "the exact row");
}

/// Version 4 over a connection that takes datagrams: a walking row's positions go as places in datagrams (no
/// moves on the stream), the client holds them to half a centimetre, and once the row stops the stream carries it
/// once (a patch of `pos`), so the client holds the exact row.
#[test]
fn version_4_walking_rows_go_as_places_and_the_stream_carries_them_at_rest() {
    let (mut w, a, b) = walking_seen_by_datagrams(|_| false);
    w.take_messages(a);
    let before = w.datagrams(a).len();
    let mut moves = 0;
    for _ in 0..20 {
        w.tick();
        let (m, rests, updates) = moves_and_updates(&mut w, a);
        assert_eq!((rests, updates), (0, 0));
        moves += m;
        let truth = me(&w, b);
        let seen = players(&w, a)
            .into_iter()
            .find(|p| p.id == truth.id)
            .expect("in view");
        assert!(
            (seen.pos - truth.pos).abs().max_element() <= 0.005 + 1.0 / 1024.0,
            "{:?} vs {:?}",
            seen.pos,
            truth.pos
        );
    }
    assert_eq!(
        (moves, places(&w, a, before)),
        (1, 19),
        "the first step on the stream, then one place a tick"
    );
    stop_and_hold_exactly(&mut w, a, b);
    assert_consistent(&w, a);
}

/// Position datagrams follow the link (`PositionDatagrams::OnLoss`): off, a walking row goes as moves on the
/// stream; on, as places; turned off while the row walks, it goes on as places (it is loose: a move from a place
/// the client may have lost would be wrong) until it stops, when the stream carries it once; a row that starts
/// walking after that goes as moves.
#[test]
fn places_follow_the_link_and_a_loose_row_ends_on_the_stream() {
    let (mut w, a, b) = walking_seen_by_datagrams(|_| false);
    w.set_places(a, false);
    let walk = |w: &mut TestWorld, ticks: usize| {
        w.take_messages(a);
        let before = w.datagrams(a).len();
        let (mut moves, mut rests) = (0, 0);
        for _ in 0..ticks {
            w.tick();
            let (m, r, _) = moves_and_updates(w, a);
            (moves, rests) = (moves + m, rests + r);
        }
        (moves, places(w, a, before), rests)
    };
    assert_eq!(walk(&mut w, 10), (10, 0, 0), "off: moves on the stream");
    w.set_places(a, true);
    assert_eq!(walk(&mut w, 10), (0, 10, 0), "on: places");
    w.set_places(a, false);
    assert_eq!(
        walk(&mut w, 5),
        (0, 5, 0),
        "off, but the row is loose: places"
    );
    stop_and_hold_exactly(&mut w, a, b);
    let r = w.call(b, &gm::move_to::call(710.0, 700.0));
    tick_ok(&mut w, &[(b, r)]);
    assert_eq!(walk(&mut w, 10), (10, 0, 0), "a new walk, off: moves");
    assert_consistent(&w, a);
}

/// Places lost on the way (here every one) leave the client behind while the row walks, never after: the row at
/// rest arrives on the stream.
#[test]
fn lost_places_are_made_good_when_the_row_comes_to_rest() {
    let (mut w, a, b) = walking_seen_by_datagrams(|_| true);
    w.run(10);
    let stale = |w: &TestWorld| {
        let truth = me(w, b);
        let seen = players(w, a)
            .into_iter()
            .find(|p| p.id == truth.id)
            .expect("in view");
        (seen.pos - truth.pos).abs().max_element()
    };
    assert!(
        stale(&w) > 1.0,
        "every place was lost: the client is behind"
    );
    let r = w.call(b, &gm::move_dir::call(0.0, 0.0));
    tick_ok(&mut w, &[(b, r)]);
    w.run(2);
    assert_eq!(
        stale(&w),
        0.0,
        "at rest, the stream carried the exact position"
    );
    assert_consistent(&w, a);
}

/// A version-3 session gets the moves of a row within 3/8 of its area radius every tick, and of a row beyond 3/4
/// of it every 4th tick (staggered), each carrying where the row is then; once the far row stops, its last
/// position still arrives.
#[test]
fn far_rows_move_every_4th_tick_and_their_last_position_arrives() {
    let mut w = demo();
    let a = w.connect_version(Identity([1; 32]), 3);
    // Version 2: their own rows are exact (the truth to compare with).
    let (near, far) = (
        w.connect_version(Identity([2; 32]), 2),
        w.connect_version(Identity([3; 32]), 2),
    );
    for s in [a, near, far] {
        w.subscribe(s, "player", locus_protocol::Filter::All);
    }
    let ra = w.call(a, &gm::teleport::call(1000.0, 1000.0));
    let rn = w.call(near, &gm::teleport::call(1010.0, 1000.0));
    let rf = w.call(far, &gm::teleport::call(1055.0, 1000.0));
    tick_ok(&mut w, &[(a, ra), (near, rn), (far, rf)]);
    // Walking to a point changes only `pos` each tick: moves (walking in a direction also changes `target`).
    let rn = w.call(near, &gm::move_to::call(1010.0, 1100.0));
    let rf = w.call(far, &gm::move_to::call(1055.0, 1100.0));
    tick_ok(&mut w, &[(near, rn), (far, rf)]);
    let seen = |w: &TestWorld, s: TestSession| {
        let truth = me(w, s);
        let p = players(w, a)
            .into_iter()
            .find(|p| p.id == truth.id)
            .expect("in view");
        (p.pos - truth.pos).abs().max_element()
    };
    let (mut near_stale, mut far_stale) = (0, 0);
    for _ in 0..16 {
        w.tick();
        near_stale += usize::from(seen(&w, near) > 0.01);
        far_stale += usize::from(seen(&w, far) > 0.01);
        assert!(
            seen(&w, far) < 4.0 * 0.25 + 0.01,
            "at most 3 held-back steps of 25 cm"
        );
    }
    assert_eq!(near_stale, 0, "a near row moves every tick");
    assert_eq!(far_stale, 12, "a far row moves every 4th tick");
    let rf = w.call(far, &gm::move_dir::call(0.0, 0.0));
    tick_ok(&mut w, &[(far, rf)]);
    for _ in 0..4 {
        w.tick();
    }
    assert!(
        seen(&w, far) <= 0.005 + 1.0 / 1024.0,
        "the stopped row's last position arrived"
    );
    assert_consistent(&w, a);
}

/// A module writes a `U64` key as `cf` and 8 bytes; the row keeps those bytes, and so does the key of its delete
/// (not the shortest form `07`), so a client that matches keys by bytes, like the Rust SDK's cache, deletes it.
#[test]
fn a_delete_key_is_the_key_columns_bytes_in_the_row() {
    let mut w = world_of(&KEYS);
    let s = w.connect(Identity([1; 32]));
    w.subscribe(s, "thing", locus_protocol::Filter::All);
    let wide = [0xcf, 0, 0, 0, 0, 0, 0, 0, 7];
    let put = w.call_raw(s, "put", &[&[0x91][..], &wide].concat());
    tick_ok(&mut w, &[(s, put)]);
    let row = [&[0x92][..], &wide, &wide].concat();
    assert_eq!(w.cache(s).get_raw("thing", &wide), Some(&row[..]));
    w.take_messages(s);
    // Deleted by value (the shortest form): the delete still names the key as the row holds it.
    let remove = w.call_raw(s, "remove", &[0x91, 0x07]);
    tick_ok(&mut w, &[(s, remove)]);
    let deletes: Vec<Vec<u8>> = w
        .messages(s)
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Tick { tables, .. } => Some(tables),
            _ => None,
        })
        .flatten()
        .flat_map(|t| t.deletes.iter().map(|k| k.0.clone()))
        .collect();
    assert_eq!(deletes, [wide.to_vec()]);
    assert_consistent(&w, s);
    assert!(w.events(s).iter().any(
        |e| matches!(e, Event::Deleted { key, old, .. } if **key == wide && **old == row[..])
    ));
    assert_eq!(w.cache(s).len("thing"), 0);
}

/// Calls accepted before a fatal error are answered before it: a session's 20 calls, then the network closes it
/// (as for a flood); it gets the 20 results and the tick's rows, then the fatal `Error` last, then nothing; its
/// `Disconnect` frees its id, and the world holds the 20 calls' rows.
#[test]
fn a_fatal_close_delivers_the_earlier_results_before_the_error_frame() {
    const N: u8 = 20;
    let mut w = world_of(&KEYS);
    let s = w.connect(Identity([1; 32]));
    let watcher = w.connect(Identity([2; 32]));
    for session in [s, watcher] {
        w.subscribe(session, "thing", locus_protocol::Filter::All);
    }
    w.tick();
    w.take_messages(s);
    let calls: Vec<u32> = (1..=N).map(|k| w.call_raw(s, "put", &[0x91, k])).collect();
    w.close(s, ErrorCode::RateLimited, "too many messages", 2);
    let out = w.tick();
    assert_eq!(out.closes.len(), 1);
    let messages = w.take_messages(s);
    let results: Vec<(u32, CallOutcome)> = messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Result {
                request, outcome, ..
            } => Some((*request, outcome.clone())),
            _ => None,
        })
        .collect();
    let expected: Vec<_> = calls.iter().map(|&r| (r, CallOutcome::Ok)).collect();
    assert_eq!(results, expected, "every accepted call's result, in order");
    assert!(
        matches!(&messages[messages.len() - 2], ServerMessage::Tick { .. }),
        "the tick's rows before the error: {messages:?}"
    );
    assert_eq!(
        messages.last(),
        Some(&ServerMessage::Error {
            code: ErrorCode::RateLimited,
            message: "too many messages".into(),
            request: None,
            fatal: true
        })
    );
    assert_eq!(w.cache(s).len("thing"), usize::from(N));
    assert!(matches!(
        w.ended(s),
        Some(Ended::Closed { close_code: 2, .. })
    ));
    // The network's `Disconnect` follows; nothing more reaches the session (the harness checks every frame).
    let id = w.session_id(s);
    let out = w.tick();
    assert_eq!(out.freed, [id]);
    w.run(3);
    assert!(w.messages(s).is_empty());
    assert_eq!(w.cache(watcher).len("thing"), usize::from(N));
    assert_eq!(w.world().session_count(), 1);
}

/// A redirect through the harness ([`locus_server::world::Input::Redirect`], queued with `push`): the player's
/// session gets the tick's results and rows, then the `Redirect` last, and ends as closed with `CLOSE_REDIRECTED`;
/// the network's `Disconnect` follows and frees its id, and nothing more reaches it. Another player stays.
#[test]
fn a_redirected_session_ends_with_the_redirect_frame_in_the_harness() {
    let mut w = world_of(&KEYS);
    let s = w.connect(Identity([1; 32]));
    let other = w.connect(Identity([2; 32]));
    for session in [s, other] {
        w.subscribe(session, "thing", locus_protocol::Filter::All);
    }
    w.tick();
    w.take_messages(s);
    let call = w.call_raw(s, "put", &[0x91, 0x05]);
    let to = locus_protocol::Redirect {
        region: "east".into(),
        addr: "10.0.0.7:7878".into(),
        fingerprint: [9; 32],
        web: None,
    };
    w.push(locus_server::world::Input::Redirect {
        identity: Identity([1; 32]),
        to: to.clone(),
    });
    let out = w.tick();
    assert_eq!(out.closes.len(), 1);
    let messages = w.take_messages(s);
    assert!(
        matches!(
            &messages[..],
            [
                ServerMessage::Result { request, outcome: CallOutcome::Ok, .. },
                ServerMessage::Tick { .. },
                ServerMessage::Redirect(r),
            ] if *request == call && *r == to
        ),
        "{messages:?}"
    );
    assert!(matches!(
        w.ended(s),
        Some(Ended::Closed { close_code, .. }) if *close_code == locus_protocol::CLOSE_REDIRECTED
    ));
    let id = w.session_id(s);
    let out = w.tick();
    assert_eq!(out.freed, [id]);
    w.call_raw(other, "put", &[0x91, 0x06]);
    w.run(2);
    assert!(w.messages(s).is_empty());
    assert_eq!(w.cache(other).len("thing"), 2);
    assert_eq!(w.world().session_count(), 1);
}

/// A session's id is freed by the tick that ends it, with nothing of that tick for it; the same player reconnecting
/// gets the id back and hears only about what it asked itself.
#[test]
fn a_reused_session_id_never_gets_the_old_sessions_frames() {
    let mut w = demo();
    let token = Token([7; 32]);
    let walk = gm::move_dir::call(1.0, 0.0);
    let other = w.connect(Identity([9; 32]));
    w.tick();
    for round in 0..3 {
        let old = w.connect_token(token);
        w.subscribe(old, "player", locus_protocol::Filter::All);
        for _ in 0..19 {
            w.call(old, &walk);
        }
        w.tick();
        assert!(w.messages(old).len() > 19, "round {round}");
        // More calls, then gone in the same tick: their answers are never made.
        let lost: Vec<u32> = (0..5).map(|_| w.call(old, &walk)).collect();
        w.disconnect(old);
        let out = w.tick();
        let id = w.session_id(old);
        assert_eq!(out.freed, [id], "round {round}");
        assert!(out.frames.iter().all(|(s, _)| *s != id));
        for request in lost {
            assert_eq!(w.result(old, request), None);
        }
        // The same player reconnects at once: it gets the old id, its Welcome and its own result only.
        let new = w.connect_token(token);
        assert_eq!(w.session_id(new), id, "round {round}: the id is reused");
        let request = w.call(new, &walk);
        let out = w.tick();
        let welcomes = w
            .messages(new)
            .iter()
            .filter(|m| matches!(m, ServerMessage::Welcome(_)))
            .count();
        assert_eq!(welcomes, 1);
        let results: Vec<u32> = w
            .messages(new)
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Result { request, .. } => Some(*request),
                _ => None,
            })
            .collect();
        assert_eq!(results, [request], "round {round}");
        assert!(
            w.messages(new)
                .iter()
                .all(|m| !matches!(m, ServerMessage::Subscribed { .. }))
        );
        assert!(out.frames.iter().any(|(s, _)| *s == id));
        w.disconnect(new);
        w.tick();
        assert_eq!(w.session_ids().in_use(), 1, "round {round}");
    }
    assert!(w.ended(other).is_none());
}

#[test]
fn call_query_logs_and_snapshot_answer_the_operator() {
    let mut w = demo();
    let player = w.connect(Identity([1; 32]));
    let admin = w.connect(Identity([2; 32]));
    let r = w.call(player, &gm::set_name::call("Ada".into()));
    tick_ok(&mut w, &[(player, r)]);
    // call: an admin-only reducer, as the server; wrong arguments are refused by the host.
    let called = w.admin(
        admin,
        AdminCommand::Call {
            reducer: "admin_spawn_creatures_in".into(),
            args: gm::admin::admin_spawn_creatures_in::call(7, 100.0, 100.0, 300.0, 300.0).args,
        },
    );
    let bad = w.admin(
        admin,
        AdminCommand::Call {
            reducer: "admin_give".into(),
            args: vec![0x91, 0x01],
        },
    );
    // query: private tables too, WHERE / ORDER BY / LIMIT; only SELECT.
    let query = |sql: &str| AdminCommand::Query { sql: sql.into() };
    let rows = w.admin(
        admin,
        // (set_name stores names in lower case)
        query("SELECT name, level FROM player WHERE name = 'ada' ORDER BY id LIMIT 5"),
    );
    let count = w.admin(admin, query("SELECT COUNT(*) FROM inventory_item"));
    let delete = w.admin(admin, query("DELETE FROM player"));
    // logs: the module's lines (the demo logs every player entering).
    let logs = w.admin(
        admin,
        AdminCommand::Logs {
            tail: 50,
            follow: false,
        },
    );
    let follow = w.admin(
        admin,
        AdminCommand::Logs {
            tail: 0,
            follow: true,
        },
    );
    // A module must arrive compiled (the network compiles a `Publish`).
    let publish = w.admin(admin, AdminCommand::Publish { wasm: vec![0] });
    let tick = w.tick().tick.0;
    let reply = |request| w.admin_reply(admin, request).cloned();
    assert_eq!(
        reply(called),
        Some(AdminReply::Called {
            tick,
            outcome: CallOutcome::Ok
        })
    );
    assert!(
        matches!(
            reply(bad),
            Some(AdminReply::Called {
                outcome: CallOutcome::Err {
                    code: ErrorCode::BadArguments,
                    ..
                },
                ..
            })
        ),
        "{:?}",
        reply(bad)
    );
    let Some(AdminReply::Rows { json }) = reply(rows) else {
        panic!("{:?}", reply(rows))
    };
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["columns"], serde_json::json!(["name", "level"]));
    assert_eq!(json["rows"], serde_json::json!([["ada", 1]]));
    assert!(matches!(reply(count), Some(AdminReply::Rows { .. })));
    assert!(matches!(reply(delete), Some(AdminReply::Refused { .. })));
    let Some(AdminReply::Logs { lines }) = reply(logs) else {
        panic!("{:?}", reply(logs))
    };
    let entered = |lines: &[ModuleLogLine]| {
        lines
            .iter()
            .filter(|l| l.message.contains("entered the world"))
            .count()
    };
    assert_eq!(entered(&lines), 2, "{lines:?}");
    assert_eq!(reply(follow), Some(AdminReply::Logs { lines: vec![] }));
    assert!(
        matches!(reply(publish), Some(AdminReply::Refused { message }) if message.contains("compiled"))
    );
    assert_eq!(
        w.cache(player).len("creature"),
        0,
        "the player subscribed to nothing"
    );
    // logs -f: a line written later arrives, under the same request.
    w.take_messages(admin);
    w.connect(Identity([3; 32]));
    w.tick();
    let followed: Vec<&ModuleLogLine> = w
        .messages(admin)
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Admin {
                request,
                reply: AdminReply::Logs { lines },
            } if *request == follow => Some(lines),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(followed.len(), 1, "{followed:?}");
    assert!(followed[0].message.contains("entered the world"));
    // snapshot: made by the shell after the tick; a session's answer comes with the next tick's frames.
    let snapshot = w.admin(admin, AdminCommand::Snapshot);
    let tick = w.tick().tick;
    assert_eq!(w.admin_reply(admin, snapshot), None);
    assert_eq!(w.snapshot().tick(), tick);
    assert!(w.records().is_empty(), "the snapshot holds every record");
    w.tick();
    assert_eq!(
        w.admin_reply(admin, snapshot),
        Some(&AdminReply::Snapshot { tick: tick.0 })
    );
    // The server's own API is answered in the tick.
    let reply = w.local_admin(AdminCommand::Snapshot);
    assert_eq!(
        reply,
        AdminReply::Snapshot {
            tick: w.current_tick().0
        }
    );
}

#[test]
fn a_tick_reducer_failing_every_tick_is_logged_once_by_name_and_counted_every_time() {
    let mut w = world_of(&FAILING);
    for n in 1..=40 {
        let out = w.tick();
        let failures: Vec<&str> = out.server_failures.iter().map(|r| &**r).collect();
        assert_eq!(failures, ["on_tick"], "tick {n}");
    }
    let lines = module_log;
    // Forty failures (and more), one line: the first failure, at level error under the reducer's name.
    let first = lines(&mut w);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        (
            first[0].tick,
            first[0].level.as_str(),
            first[0].reducer.as_str()
        ),
        (1, "error", "on_tick")
    );
    assert!(
        first[0]
            .message
            .starts_with("reducer `on_tick` failed: no luck"),
        "{}",
        first[0].message
    );
    // Ten seconds after it, one line sums up the failures since.
    w.advance_clock(Duration::from_secs(10));
    w.tick();
    let then = lines(&mut w);
    assert_eq!(then.len(), 2, "{then:?}");
    let tick = w.current_tick().0;
    assert!(
        then[1]
            .message
            .starts_with(&format!("failed again {} times after tick 1;", tick - 2)),
        "{}",
        then[1].message
    );
}

/// As after `kill -9` and a restart: the world recovered from its records alone, the player found again by its
/// token's identity, with what it did.
#[test]
fn after_a_restart_from_the_records_state_and_identities_are_intact() {
    let mut w = demo();
    let token = Token([5; 32]);
    let s = w.connect_token(token);
    w.subscribe(s, "player", locus_protocol::Filter::All);
    let teleport = w.call(s, &gm::teleport::call(1234.0, 567.0));
    let name = w.call(s, &gm::set_name::call("survivor".into()));
    tick_ok(&mut w, &[(s, teleport), (s, name)]);
    let before = me(&w, s);
    w.run(5);
    assert!(!w.records().is_empty());
    let last = w.records().last().unwrap().tick();
    w.restart().unwrap();
    assert_eq!(w.ended(s), Some(&Ended::Lost));
    assert_eq!(
        w.current_tick(),
        last,
        "the ticks go on from the last record"
    );
    let again = w.connect_token(token);
    assert_eq!(w.identity(again), w.identity(s));
    w.subscribe(again, "player", locus_protocol::Filter::All);
    w.tick();
    let after = me(&w, again);
    assert_eq!(
        (after.id, after.name.as_str(), after.pos),
        (before.id, "survivor", before.pos)
    );
    assert!(after.online);
    assert!(w.current_tick() > last);
}

/// A publish swaps the module at a tick boundary: every session stays, gets a new `Welcome` and its view again;
/// an incompatible module is refused with every change named, and changes nothing.
#[test]
fn a_publish_keeps_every_session_and_an_incompatible_one_changes_nothing() {
    let mut w = demo();
    let s = w.connect(Identity([1; 32]));
    w.subscribe(s, "player", locus_protocol::Filter::All);
    w.tick();
    let held = players(&w, s);
    assert_eq!(held.len(), 1);
    let refused = w.publish(&KEYS);
    assert!(
        matches!(&refused, AdminReply::Refused { message } if message.contains("table `player` removed")),
        "{refused:?}"
    );
    let published = w.publish(&DEMO);
    assert!(
        matches!(&published, AdminReply::Published { changes, .. } if changes.is_empty()),
        "{published:?}"
    );
    w.take_messages(s);
    w.tick();
    assert!(
        matches!(w.messages(s).first(), Some(ServerMessage::Welcome(_))),
        "{:?}",
        w.messages(s)
    );
    assert!(w.ended(s).is_none());
    assert_eq!(
        players(&w, s),
        held,
        "the view is back after the new Welcome"
    );
    // The snapshot of the swap holds the world: a restart recovers it.
    assert!(w.snapshot().tick() > Tick(0));
    w.restart().unwrap();
    let again = w.connect(Identity([1; 32]));
    w.subscribe(again, "player", locus_protocol::Filter::All);
    w.tick();
    assert_eq!(me(&w, again).id, held[0].id);
}

/// The item kinds `session` holds in its cache, by id: (max_stack, name).
fn item_kinds(w: &TestWorld, s: TestSession) -> std::collections::BTreeMap<String, (u32, String)> {
    w.cache(s)
        .rows::<gm::ItemKind>("item_kind")
        .expect("item_kind rows decode")
        .into_iter()
        .map(|k| (k.id, (k.max_stack, k.name)))
        .collect()
}

/// New content reaches a live world: publishing the demo's next version runs its upgrade reducer, which writes the
/// new items and recipes into the world's tables, and clients see them; the snapshot of the publish holds them.
#[test]
fn a_publish_of_a_newer_version_brings_a_live_worlds_content_up_to_date() {
    LazyLock::force(&V2);
    // A world `init` filled with version 1's content (its terrain is generated at the first tick).
    let mut w = TestWorld::new(&DEMO, TestWorldConfig::default()).unwrap();
    assert_eq!(locus_host::data_version(w.world().db()), gm::MODULE_VERSION);
    let s = w.connect(Identity([1; 32]));
    w.subscribe(s, "item_kind", locus_protocol::Filter::All);
    w.subscribe(s, "recipe", locus_protocol::Filter::All);
    w.tick();
    w.tick();
    let before = item_kinds(&w, s);
    assert_eq!(before.get("hide").map(|k| k.0), Some(20));
    assert!(!before.contains_key("guild_banner"));

    let published = w.publish(&V2);
    let AdminReply::Published { changes, .. } = &published else {
        panic!("{published:?}")
    };
    assert!(
        changes.contains(&"module version 1 → 2 (upgrade reducer `upgrade` ran)".to_owned()),
        "{changes:?}"
    );
    assert_eq!(locus_host::data_version(w.world().db()), 2);
    let AdminReply::Rows { json } = w.local_admin(AdminCommand::Query {
        sql: "SELECT version FROM locus_module".into(),
    }) else {
        panic!("rows")
    };
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["rows"],
        serde_json::json!([[2]]),
        "as the operator sees it"
    );
    w.tick();
    let after = item_kinds(&w, s);
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(
        after.get("guild_banner"),
        Some(&(1, "Guild banner".to_owned()))
    );
    assert_eq!(
        after.get("hide").map(|k| k.0),
        Some(40),
        "a changed definition is updated"
    );
    assert!(
        w.cache(s)
            .rows::<gm::Recipe>("recipe")
            .unwrap()
            .iter()
            .any(|r| r.id == "guild_banner")
    );
    // The reducer said what it did in the module log.
    let lines = module_log(&mut w);
    assert!(
        lines.iter().any(|l| l.reducer == "upgrade"
            && l.message
                == "content from version 1 to 2: 2 definitions added, 1 changed, 0 removed"),
        "{lines:?}"
    );
    // The publish's snapshot holds the new content and version: a restart has them, and runs nothing again.
    w.restart().unwrap();
    assert_eq!(locus_host::data_version(w.world().db()), 2);
    let again = w.connect(Identity([1; 32]));
    w.subscribe(again, "item_kind", locus_protocol::Filter::All);
    w.tick();
    w.tick();
    assert_eq!(item_kinds(&w, again), after);
}

/// A server restarted with a newer build on a world's data does what a publish would: the upgrade reducer runs.
#[test]
fn a_restart_with_a_newer_build_brings_the_content_up_to_date_too() {
    let mut w = TestWorld::new(&DEMO, TestWorldConfig::default()).unwrap();
    w.tick();
    w.restart_with(&V2).unwrap();
    assert_eq!(locus_host::data_version(w.world().db()), 2);
    let s = w.connect(Identity([1; 32]));
    w.subscribe(s, "item_kind", locus_protocol::Filter::All);
    w.tick();
    w.tick();
    assert!(item_kinds(&w, s).contains_key("guild_banner"));
    // The migration's snapshot holds it: restarted again with the same build, nothing runs again.
    w.restart().unwrap();
    assert_eq!(locus_host::data_version(w.world().db()), 2);
}

/// If the upgrade reducer fails or traps, the publish is refused and the world keeps its module and its data; a
/// restart with that module is refused the same way.
#[test]
fn a_failing_upgrade_reducer_refuses_the_publish_and_the_world_keeps_its_module_and_data() {
    let mut w = world_of(&KEYS);
    let s = w.connect(Identity([1; 32]));
    w.subscribe(s, "thing", locus_protocol::Filter::All);
    let put = w.call_raw(s, "put", &[0x91, 0x05]);
    w.tick();
    assert_eq!(w.result(s, put), Some(&CallOutcome::Ok));
    let snapshot = w.snapshot().bytes().to_vec();
    let insert =
        "(drop (call $insert (call $thing) (i32.const 2000) (i32.const 3) (i32.const 320)))";
    let failing = compile(&keys::keys_module_at(Some((
        5,
        &format!(
            "{insert} (drop (call $log (i32.const 0) (i32.const 2010) (i32.const 14)))
             (drop (call $fail (i32.const 2010) (i32.const 14))) i32.const 1"
        ),
    ))));
    let trapping = compile(&keys::keys_module_at(Some((
        5,
        &format!("{insert} unreachable"),
    ))));
    for (module, why) in [
        (&failing, "reducer `upgrade` failed: content broken"),
        (
            &trapping,
            "reducer `upgrade` trapped: wasm `unreachable` instruction executed",
        ),
    ] {
        assert_eq!(
            w.publish(module),
            AdminReply::Refused {
                message: format!("the upgrade from module version 0 to 5 failed: {why}")
            }
        );
        assert_eq!(locus_host::data_version(w.world().db()), 0);
        assert_eq!(
            w.world()
                .db()
                .table_id("thing")
                .map(|t| w.world().db().table(t).unwrap().len()),
            Some(1)
        );
        assert_eq!(
            w.snapshot().bytes(),
            &snapshot[..],
            "no snapshot of the refused upgrade"
        );
        // The old module runs on.
        let put = w.call_raw(s, "put", &[0x91, 0x06]);
        let remove = w.call_raw(s, "remove", &[0x91, 0x06]);
        w.tick();
        assert_eq!(w.result(s, put), Some(&CallOutcome::Ok));
        assert_eq!(w.result(s, remove), Some(&CallOutcome::Ok));
        assert!(w.ended(s).is_none());
        let err = w.restart_with(module).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
    // The failed reducer's own line reached the module log.
    let lines = module_log(&mut w);
    assert!(
        lines
            .iter()
            .any(|l| l.reducer == "upgrade" && l.message == "content broken"),
        "{lines:?}"
    );
    // One that succeeds: its row and the version, kept by the publish's snapshot.
    let working = compile(&keys::keys_module_at(Some((
        5,
        &format!("{insert} i32.const 0"),
    ))));
    let published = w.publish(&working);
    assert!(
        matches!(&published, AdminReply::Published { changes, .. }
            if changes.contains(&"module version 0 → 5 (upgrade reducer `upgrade` ran)".to_owned())),
        "{published:?}"
    );
    w.tick();
    assert_eq!(
        w.cache(s).iter_raw("thing").count(),
        2,
        "the client sees the reducer's row"
    );
    w.restart().unwrap();
    assert_eq!(locus_host::data_version(w.world().db()), 5);
    let thing = w.world().db().table_id("thing").unwrap();
    assert_eq!(
        w.world().db().table(thing).unwrap().len(),
        2,
        "the reducer ran once"
    );
}

#[test]
fn ten_thousand_sessions_coming_and_going_leave_the_session_slots_where_they_started() {
    let mut w = demo();
    // A player who stays throughout.
    let stays = w.connect(Identity([1; 32]));
    w.subscribe(stays, "player", locus_protocol::Filter::All);
    w.tick();
    let slots = w.world().interest().client_slots();
    assert_eq!((slots, w.session_ids().span()), (1, 1));
    for cycle in 0..10_000u32 {
        let s = w.connect(Identity([2 + (cycle % 8) as u8; 32]));
        w.subscribe(s, "player", locus_protocol::Filter::All);
        let out = w.tick();
        assert!(out.frames.iter().any(|(id, _)| *id == w.session_id(s)));
        w.disconnect(s);
        let out = w.tick();
        assert_eq!(out.freed, [w.session_id(s)]);
    }
    assert_eq!(w.world().interest().client_slots(), slots);
    assert_eq!((w.session_ids().span(), w.session_ids().in_use()), (1, 1));
    assert_eq!(w.world().session_count(), 1);
}

// ---- a measurement -------------------------------------------------------------------------------------------

/// The demo module's world (empty: no `init`), driven directly as the server drives it (not through [`TestWorld`],
/// so that the measurement can also number sessions as the old code did, never reusing an id): the inputs of a
/// tick in, its output out, and the ids it freed given back as the release thread does once the tick's frames are
/// delivered.
struct Sim {
    world: locus_server::World,
    ids: locus_server::world::SessionIds,
    /// Whether `ids` numbers the sessions (otherwise the caller does, and nothing is given back).
    allocated: bool,
    tick: u64,
}

impl Sim {
    fn new(allocated: bool) -> Sim {
        let mut db = locus_store::Database::default();
        let instance = DEMO.instantiate(&mut db).unwrap();
        Sim {
            world: locus_server::World::new(
                db,
                instance,
                locus_interest::InterestConfig::default(),
                20,
                7,
            ),
            ids: locus_server::world::SessionIds::default(),
            allocated,
            tick: 0,
        }
    }

    fn tick(&mut self, inputs: Vec<locus_server::world::Input>) -> locus_server::world::TickOutput {
        self.tick += 1;
        let now = locus_types::Timestamp(1_700_000_000_000_000 + self.tick * 50_000);
        let out = self
            .world
            .run_tick(locus_types::Tick(self.tick), now, 0.05, inputs);
        for &session in out.freed.iter().filter(|_| self.allocated) {
            assert!(self.ids.release(session), "session {session} freed twice");
        }
        out
    }

    /// A session of player `n` joining, subscribed to the players.
    fn join(session: u32, n: u8) -> Vec<locus_server::world::Input> {
        use locus_server::world::Input;
        vec![
            Input::Connect {
                session,
                identity: Identity([n; 32]),
                token: locus_protocol::Token([n; 32]),
                version: PROTOCOL_VERSION,
                datagrams: false,
                places: false,
            },
            Input::Subscribe {
                session,
                request: 1,
                table: "player".into(),
                filter: locus_protocol::Filter::All,
            },
        ]
    }

    /// `cycles` sessions joining and leaving one after the other (of 8 players, so the world's rows stay the same),
    /// numbered by `id` (the allocator's, or another numbering).
    fn churn(&mut self, cycles: u32, mut id: impl FnMut(&mut Sim, u32) -> u32) {
        for cycle in 0..cycles {
            let session = id(self, cycle);
            let out = self.tick(Sim::join(session, 2 + (cycle % 8) as u8));
            assert!(
                out.frames.iter().any(|(s, _)| *s == session),
                "the session was welcomed"
            );
            let out = self.tick(vec![locus_server::world::Input::Disconnect { session }]);
            assert_eq!(out.freed, [session]);
            assert!(
                out.frames.iter().all(|(s, _)| *s != session),
                "nothing for a session gone"
            );
        }
    }

    /// The mean time of a tick with nothing to do but the module's tick and the interest stage's poll.
    fn idle_tick(&mut self) -> Duration {
        let start = Instant::now();
        for _ in 0..200 {
            self.tick(Vec::new());
        }
        start.elapsed() / 200
    }
}

/// The figures of the report: a tick's time and the interest stage's slots after 10,000 sessions came and went,
/// with ids reused and with ids numbered as before (each new: 1, 2, 3, …; the slots at the end as at the old code's,
/// emulated by the last session staying). Run with `--ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
#[expect(clippy::print_stderr, reason = "the measurement's output")]
fn measure_a_tick_after_ten_thousand_sessions() {
    for reuse in [true, false] {
        let mut sim = Sim::new(reuse);
        let stays = if reuse { sim.ids.allocate() } else { 1 };
        sim.tick(Sim::join(stays, 1));
        let (slots, tick) = (sim.world.interest().client_slots(), sim.idle_tick());
        let start = Instant::now();
        if reuse {
            sim.churn(10_000, |sim, _| sim.ids.allocate());
        } else {
            sim.churn(9_999, |_, cycle| 2 + cycle);
            sim.tick(Sim::join(10_001, 9));
        }
        let churn = start.elapsed();
        let (after_slots, after_tick) = (sim.world.interest().client_slots(), sim.idle_tick());
        eprintln!(
            "ids {}: interest slots {slots} -> {after_slots}; idle tick {tick:?} -> {after_tick:?}; \
             20,000 churn ticks took {churn:?}",
            if reuse {
                "reused"
            } else {
                "numbered as before"
            },
        );
    }
}

/// Each tick's number and its frames, by session.
type Frames = Vec<(u64, Vec<(u32, Vec<u8>)>)>;

/// The frames of every tick of a crowd scenario, with the world's per-client work on `threads` worker threads
/// (0: none, on the tick thread).
fn crowd_frames(threads: usize) -> Frames {
    let config = TestWorldConfig {
        init: false,
        // Spread even these 60 sessions over the pool.
        interest: locus_interest::InterestConfig {
            parallel_min: 0,
            ..locus_interest::InterestConfig::default()
        },
        ..TestWorldConfig::default()
    };
    let mut w = TestWorld::new(&DEMO, config).unwrap();
    if threads > 0 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        w.world_mut().set_pool(std::sync::Arc::new(pool));
    }
    // 60 players in three clusters, a few of them on protocol version 1 (whole rows instead of patches).
    let sessions: Vec<TestSession> = (0..60u8)
        .map(|i| {
            let identity = Identity([i + 1; 32]);
            if i % 7 == 0 {
                w.connect_version(identity, 1)
            } else {
                w.connect(identity)
            }
        })
        .collect();
    for (i, &s) in sessions.iter().enumerate() {
        w.subscribe(s, "player", locus_protocol::Filter::All);
        let cluster = (i % 3) as f32 * 400.0;
        w.call(
            s,
            &gm::teleport::call(
                1000.0 + cluster + (i % 10) as f32 * 9.0,
                1000.0 + (i / 10) as f32 * 9.0,
            ),
        );
    }
    let mut frames = Vec::new();
    for tick in 0..40u64 {
        // Everyone walks; some turn, some stop; one leaves and comes back.
        for (i, &s) in sessions.iter().enumerate() {
            let angle = (i as f32 * 0.7 + tick as f32 * 0.1).sin();
            if !(i as u64 + tick).is_multiple_of(5) {
                w.call(s, &gm::move_dir::call(angle, 1.0 - angle.abs()));
            }
        }
        let out = w.tick();
        frames.push((out.tick.0, out.frames.clone()));
    }
    frames
}

/// The frames every session gets are the same, byte for byte, whether the world's per-client work (interest and
/// frame encoding) runs on the tick thread or on 1, 2 or 16 worker threads.
#[test]
fn the_frames_are_the_same_on_any_number_of_worker_threads() {
    let alone = crowd_frames(0);
    let bytes: usize = alone
        .iter()
        .flat_map(|(_, f)| f)
        .map(|(_, b)| b.len())
        .sum();
    assert!(
        bytes > 100_000,
        "the scenario sends enough to compare ({bytes} bytes)"
    );
    for threads in [1, 2, 16] {
        let other = crowd_frames(threads);
        assert_eq!(other.len(), alone.len());
        for ((tick, a), (_, b)) in alone.iter().zip(&other) {
            assert!(
                a == b,
                "tick {tick}: the frames differ on {threads} threads"
            );
        }
    }
}

/// The admin is not a player: its sessions run neither lifecycle reducer, so the demo module makes it no player
/// (and no area), while another identity's session gets one; the admin's commands still work.
#[test]
fn admin_sessions_run_no_lifecycle_reducers() {
    let admin = Identity([0xad; 32]);
    let mut w = TestWorld::new(
        &DEMO,
        TestWorldConfig {
            admin: Some(admin),
            ..TestWorldConfig::default()
        },
    )
    .unwrap();
    let players = |w: &TestWorld| {
        let db = w.world().db();
        db.table(db.table_id("player").unwrap()).unwrap().len()
    };
    let a = w.connect(admin);
    w.tick();
    assert_eq!(players(&w), 0, "no player for the admin");
    assert!(
        locus_host::area(w.world().db(), admin).is_none(),
        "no area for the admin"
    );
    let query = w.admin(
        a,
        AdminCommand::Query {
            sql: "SELECT COUNT(*) FROM player".into(),
        },
    );
    w.tick();
    assert!(
        matches!(w.admin_reply(a, query), Some(AdminReply::Rows { .. })),
        "{:?}",
        w.admin_reply(a, query)
    );
    let p = w.connect(Identity([7; 32]));
    w.tick();
    assert_eq!(players(&w), 1, "a player for a client");
    w.disconnect(a);
    w.disconnect(p);
    w.tick();
    let db = w.world().db();
    let online = db
        .table(db.table_id("player").unwrap())
        .unwrap()
        .iter()
        .filter(|r| {
            rmp_serde::from_slice::<game_module::Player>(r)
                .unwrap()
                .online
        })
        .count();
    assert_eq!(online, 0, "the client's disconnect ran");
}
