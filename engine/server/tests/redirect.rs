//! A player moved to another region (`engine/docs/protocol.md` §5, "Version 5: redirects"), end to end: two real
//! servers (their own data directories, the same module), a real client connected to the first, and
//! [`Server::redirect`]. The client must end up on the second server by itself, as the same identity, with its
//! subscription there, and the application must see only the rows that differ between the two views: no gap, and
//! no delete and re-insert of a row both servers hold with the same bytes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use locus_client::{Client, ClientConfig, Event, Filter, Redirect, Trust};
use locus_protocol::CallOutcome;
use locus_server::{Server, ServerConfig};

/// A hand-written module: one public table `thing` (`id: U64` primary key, `n: U64`), and a client reducer
/// `put(id: u64, n: u64)` that inserts its arguments (the array `[id, n]`, which is the row) as they are.
fn thing_module() -> Vec<u8> {
    use locus_types::{ColumnDef, ColumnType, ReducerDef, ReducerKind, TableAccess, TableDef};
    let table = TableDef::builder("thing")
        .column("id", ColumnType::U64)
        .column("n", ColumnType::U64)
        .primary_key("id")
        .access(TableAccess::Public)
        .build()
        .unwrap();
    let put = ReducerDef {
        name: "put".into(),
        kind: ReducerKind::Client,
        params: vec![
            ColumnDef::new("id", ColumnType::U64),
            ColumnDef::new("n", ColumnType::U64),
        ],
    };
    let (mut data, mut describe, mut at) = (String::new(), String::new(), 4096u64);
    for (kind, name, bytes) in [
        ("table", "thing", rmp_serde::to_vec_named(&table).unwrap()),
        ("reducer", "put", rmp_serde::to_vec_named(&put).unwrap()),
    ] {
        let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
        data.push_str(&format!("(data (i32.const {at}) \"{escaped}\")\n"));
        describe.push_str(&format!(
            "(func (export \"__locus_describe_{kind}_{name}\") (result i64) i64.const {})\n",
            (at << 32) | bytes.len() as u64
        ));
        at += bytes.len() as u64 + 8;
    }
    let wat = format!(
        r#"(module
  (import "locus_v1" "table_id" (func $table_id (param i32 i32 i32) (result i32)))
  (import "locus_v1" "insert" (func $insert (param i32 i32 i32 i32) (result i32)))
  (import "locus_v1" "reducer_args" (func $args (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "thing")
  {data}
  (func (export "__locus_abi_version") (result i32) i32.const 1)
  {describe}
  (func (export "__locus_reducer_put") (param $len i32) (result i32)
    (if (call $table_id (i32.const 256) (i32.const 5) (i32.const 300)) (then unreachable))
    (if (call $args (i32.const 1024) (i32.const 1024) (i32.const 308)) (then unreachable))
    (i32.ne
      (call $insert (i32.load (i32.const 300)) (i32.const 1024) (i32.load (i32.const 308)) (i32.const 320))
      (i32.const 0)))
)"#
    );
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}

fn start(dir: &Path) -> Server {
    let mut config = ServerConfig::new(thing_module());
    config.data_dir = dir.to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    Server::start(config).expect("the server starts")
}

/// Insert the row `[id, n]` of `thing` on `server`.
fn put(server: &Server, id: u64, n: u64) {
    let args = rmp_serde::to_vec(&(id, n)).unwrap();
    assert_eq!(
        server.admin_call_raw("put", &args).unwrap(),
        CallOutcome::Ok
    );
}

/// The `thing` rows the client holds, as `(id, n)`.
fn things(client: &Client) -> Vec<(u64, u64)> {
    client.cache().rows("thing").expect("thing rows decode")
}

/// The kind of each row event with its row's `(id, n)` (the new row's for an update, with the old one's `n`
/// after it); other events by kind alone.
fn row_events(events: &[Event]) -> Vec<(&'static str, u64, u64, Option<u64>)> {
    let decode = |row: &[u8]| rmp_serde::from_slice::<(u64, u64)>(row).unwrap();
    events
        .iter()
        .map(|e| match e {
            Event::Inserted { row, .. } => {
                let (id, n) = decode(row);
                ("inserted", id, n, None)
            }
            Event::Updated { old, new, .. } => {
                let ((id, n), (_, before)) = (decode(new), decode(old));
                ("updated", id, n, Some(before))
            }
            Event::Deleted { old, .. } => {
                let (id, n) = decode(old);
                ("deleted", id, n, None)
            }
            e => (e.kind(), 0, 0, None),
        })
        .collect()
}

/// How long the test waits for something the servers or the client should do.
const WAIT: Duration = Duration::from_secs(20);

/// Poll `client` until `done` holds (given every event since the call), or panic after [`WAIT`].
fn wait_for(
    client: &mut Client,
    what: &str,
    mut done: impl FnMut(&Client, &[Event]) -> bool,
) -> Vec<Event> {
    let start = Instant::now();
    let mut events = Vec::new();
    loop {
        events.extend(client.poll());
        if done(client, &events) {
            return events;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for {what}; events: {:?}",
            events.iter().map(Event::kind).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until `server` counts `sessions` connected sessions.
fn wait_sessions(server: &Server, sessions: u64, what: &str) {
    let start = Instant::now();
    while server.metrics().sessions != sessions {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_redirected_client_moves_to_the_other_region_with_its_identity_subscriptions_and_view() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (start(dir_a.path()), start(dir_b.path()));
    // Thing 1 is the same on both servers, byte for byte; 2 differs; 3 is only on A, 4 only on B.
    for (id, n) in [(1, 10), (2, 20), (3, 30)] {
        put(&a, id, n);
    }
    for (id, n) in [(1, 10), (2, 21), (4, 40)] {
        put(&b, id, n);
    }
    let mut config = ClientConfig::new(a.local_addr(), Trust::Fingerprint(a.fingerprint()));
    config.connect_timeout = WAIT;
    let mut client = Client::connect(config).expect("the client connects to A");
    let identity = client.identity();
    client.subscribe("thing", Filter::All).unwrap();
    wait_for(&mut client, "A's rows", |c, _| {
        things(c) == [(1, 10), (2, 20), (3, 30)]
    });

    a.redirect(
        identity,
        Redirect {
            region: "b".into(),
            addr: b.local_addr().to_string(),
            fingerprint: b.fingerprint(),
            web: None,
        },
    )
    .unwrap();
    let mut seen = Vec::new();
    let events = wait_for(&mut client, "B's view", |c, events| {
        // The view is A's, whole, until it is B's, whole: never a mixture, never empty.
        let held = things(c);
        assert!(
            held == [(1, 10), (2, 20), (3, 30)] || held == [(1, 10), (2, 21), (4, 40)],
            "the client held {held:?} (events {:?})",
            row_events(events)
        );
        seen.push(c.cache().is_redirecting());
        held == [(1, 10), (2, 21), (4, 40)]
    });
    assert!(
        seen.contains(&true),
        "the old view was held while B's arrived"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| !matches!(
                e,
                Event::Inserted { .. } | Event::Updated { .. } | Event::Deleted { .. }
            ))
            .collect::<Vec<_>>(),
        [&Event::Redirected {
            region: "b".into(),
            web: None,
            followed: true
        }],
        "no disconnect, no new `Connected`, no answer to the subscription made again"
    );
    // Exactly the differences: thing 1 (the same bytes on both) is neither deleted nor re-inserted.
    assert_eq!(
        row_events(&events),
        [
            ("redirected", 0, 0, None),
            ("deleted", 3, 30, None),
            ("updated", 2, 21, Some(20)),
            ("inserted", 4, 40, None),
        ]
    );
    // Connected to B, as the same identity, with the config naming B (for a later reconnect).
    assert!(client.is_connected());
    assert_eq!(client.identity(), identity);
    assert_eq!(
        client.welcome().identity,
        identity,
        "B derived it from the same token"
    );
    assert_eq!(client.config().addr, b.local_addr());
    wait_sessions(&a, 0, "A to drop the redirected session");
    wait_sessions(&b, 1, "the client's session on B");
    // The subscription is B's now: a new row there arrives as usual.
    put(&b, 5, 50);
    let events = wait_for(&mut client, "B's new row", |c, _| things(c).len() == 4);
    assert_eq!(row_events(&events), [("inserted", 5, 50, None)]);
    put(&a, 6, 60);
    // A reconnect goes to B (a new view: the old one leaves, B's arrives).
    client.reconnect().expect("the client reconnects to B");
    let events = wait_for(&mut client, "B's view again", |c, _| {
        things(c) == [(1, 10), (2, 21), (4, 40), (5, 50)]
    });
    assert!(events.iter().any(|e| matches!(e, Event::Connected { .. })));
    assert_eq!(client.identity(), identity);
    wait_sessions(&b, 1, "one session on B after the reconnect");
    assert_eq!(a.metrics().sessions, 0);
    drop(client);
    a.shutdown();
    b.shutdown();
}
