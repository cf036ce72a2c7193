//! Operating a live world: hot-swapping the module under load, the admin commands (`locus publish`, `call`,
//! `query`, `logs`, `snapshot`) against a running server, the Prometheus endpoint, and graceful shutdown.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::LazyLock;
use std::time::Duration;

mod common;
#[path = "common/failing.rs"]
mod failing;

use common::{DEMO, free_port, result_of, wait_for, workspace};
use game_module as gm;
use locus_client::{Client, ClientConfig, Event, Trust};
use locus_protocol::{AdminCommand, AdminReply, CallOutcome, ErrorCode};
use locus_server::{Server, ServerConfig};
use locus_types::{Value, codec};

/// The demo module with a `guild` table, a `found_guild` reducer and a `player.title` column.
static V2: LazyLock<Vec<u8>> = LazyLock::new(|| {
    locus_host::build::build_module_with_features(
        &workspace(),
        "game-module",
        &["upgrade-demo"],
        &locus_host::build::module_target_dir(&workspace(), "wasm-modules-upgrade-demo"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
});

/// A different module altogether: publishing it over the demo world must be refused.
static OTHER: LazyLock<Vec<u8>> = LazyLock::new(|| {
    locus_host::build::build_module(
        &workspace(),
        "locus-test-module",
        &locus_host::build::module_target_dir(&workspace(), "wasm-modules"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
});

fn server_config(dir: &Path, wasm: &[u8]) -> ServerConfig {
    let mut config = ServerConfig::new(wasm.to_vec());
    config.data_dir = dir.to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config
}

fn start(dir: &Path, metrics: bool) -> Server {
    let mut config = server_config(dir, &DEMO);
    config.metrics = metrics.then(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    Server::start(config).expect("the server starts")
}

fn connect(server: &Server) -> Client {
    let config = ClientConfig::new(
        server.local_addr(),
        Trust::Fingerprint(server.fingerprint()),
    );
    Client::connect(config).expect("the client connects")
}

fn call(client: &mut Client, reducer: &str, args: &[u8]) -> CallOutcome {
    let request = client.call_raw(reducer, args).expect("send");
    let events = wait_for(client, "a call result", |_, ev| {
        result_of(ev, request).is_some()
    });
    result_of(&events, request).unwrap().clone()
}

/// The named column of every row of `table` in the client's cache, decoded by the cache's current schema.
fn column(client: &Client, table: &str, name: &str) -> Vec<Value> {
    let def = client.cache().table_def(table).expect("a table").clone();
    let at = def
        .columns
        .iter()
        .position(|c| c.name == name)
        .expect("a column");
    client
        .cache()
        .iter_raw(table)
        .map(|(_, row)| codec::decode_row(&def.columns, row).unwrap()[at].clone())
        .collect()
}

/// Run `locus` with `args` against `server`'s data directory.
fn locus(dir: &Path, server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args(["--server", &server.local_addr().to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run locus")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_hot_swap_under_load_keeps_everyone_connected_and_migrates_the_data() {
    // Build the new version first: clients that are not polled for the minutes a cold build takes would (rightly)
    // be dropped as too slow.
    LazyLock::force(&V2);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), false);
    let mut clients: Vec<Client> = (0..4).map(|_| connect(&server)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.subscribe("player", locus_protocol::Filter::All).unwrap();
        let outcome = call(
            c,
            "teleport",
            // In the spawn zone: land, and no hostile creature spawns there (a player killed during the test would
            // respawn out of the others' view).
            &gm::teleport::call(2048.0 + 5.0 * i as f32, 2048.0).args,
        );
        assert_eq!(outcome, CallOutcome::Ok);
    }
    for c in &mut clients {
        wait_for(c, "all four players", |c, _| c.cache().len("player") >= 4);
    }
    // Keep everyone walking while the new module is published from another process.
    let v2 = dir.path().join("v2.wasm");
    std::fs::write(&v2, &*V2).unwrap();
    let publish = {
        let (bin, data, addr) = (
            env!("CARGO_BIN_EXE_locus"),
            dir.path().to_owned(),
            server.local_addr().to_string(),
        );
        let v2 = v2.clone();
        std::thread::spawn(move || {
            Command::new(bin)
                .arg("publish")
                .arg(&v2)
                .arg("--data-dir")
                .arg(&data)
                .args(["--server", &addr])
                .env("RUST_LOG", "warn")
                .output()
                .unwrap()
        })
    };
    let mut events: Vec<Vec<Event>> = vec![Vec::new(); clients.len()];
    let mut step = 0u32;
    while !publish.is_finished() {
        step += 1;
        for (i, c) in clients.iter_mut().enumerate() {
            if step.is_multiple_of(10) {
                let x = 2048.0 + 5.0 * i as f32 + (step % 20) as f32;
                c.call(&gm::move_to::call(x, 2058.0)).unwrap();
            }
            events[i].extend(c.poll());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = publish.join().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("new table `guild`"), "{text}");
    assert!(text.contains("new column `player.title`"), "{text}");
    assert!(text.contains("new reducer `found_guild`"), "{text}");
    // Nobody was disconnected; everyone got the new schema and their view back, with the default filled in.
    for (i, c) in clients.iter_mut().enumerate() {
        wait_for(c, "the new schema and the players again", |c, _| {
            c.cache()
                .table_def("player")
                .is_some_and(|d| d.columns.iter().any(|col| col.name == "title"))
                && c.cache().len("player") >= 4
        });
        events[i].extend(c.poll());
        assert!(
            !events[i]
                .iter()
                .any(|e| matches!(e, Event::Disconnected { .. })),
            "client {i} was disconnected"
        );
        assert!(c.is_connected());
        let titles = column(c, "player", "title");
        assert!(
            titles
                .iter()
                .all(|t| *t == Value::String("Adventurer".into())),
            "{titles:?}"
        );
    }
    // Old rows are intact: every player kept its name and is still where it walked.
    let names = column(&clients[0], "player", "name");
    assert_eq!(names.len(), 4);
    assert!(
        names
            .iter()
            .all(|n| matches!(n, Value::String(s) if s.starts_with("player-")))
    );
    // The new reducer works, and its table is there to subscribe to.
    let c = &mut clients[0];
    c.subscribe("guild", locus_protocol::Filter::All).unwrap();
    let args = rmp_serde::to_vec(&("Wolves",)).unwrap();
    assert_eq!(call(c, "found_guild", &args), CallOutcome::Ok);
    wait_for(c, "the guild row", |c, _| c.cache().len("guild") == 1);
    let me = c.identity();
    wait_for(c, "my new title", |c, _| {
        let def = c.cache().table_def("player").unwrap().clone();
        c.cache().iter_raw("player").any(|(_, row)| {
            let v = codec::decode_row(&def.columns, row).unwrap();
            v[2] == Value::Identity(me)
                && *v.last().unwrap() == Value::String("Guild founder".into())
        })
    });
    // Walking still works.
    assert_eq!(
        call(c, "move_to", &gm::move_to::call(2070.0, 2070.0).args),
        CallOutcome::Ok
    );
    // The published module is stored, and a restart runs it on the migrated data.
    assert_eq!(
        std::fs::read(dir.path().join(locus_server::MODULE_FILE)).unwrap(),
        *V2
    );
    drop(clients);
    server.shutdown();
    // The old module no longer fits the data: starting it is refused with the change named.
    let config = server_config(dir.path(), &DEMO);
    let err = Server::start(config).unwrap_err().to_string();
    assert!(err.contains("column `player.title` removed"), "{err}");
    let config = server_config(dir.path(), &V2);
    let server = Server::start(config).expect("the upgraded world restarts");
    assert_query_has(&server, "SELECT name FROM guild", "Wolves");
    server.shutdown();
}

#[test]
fn an_incompatible_publish_is_refused_and_changes_nothing() {
    LazyLock::force(&OTHER);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), false);
    let mut c = connect(&server);
    let other = dir.path().join("other.wasm");
    std::fs::write(&other, &*OTHER).unwrap();
    let out = locus(dir.path(), &server, &["publish", other.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    // Every offending change is named.
    for change in [
        "table `creature` removed",
        "column `player.pos Vec2` changed to `name` String",
        "table `player`: its owner column changed",
        "reducer `move_to` removed",
    ] {
        assert!(err.contains(change), "{change} missing from: {err}");
    }
    // The stored module is still the running one.
    assert_eq!(
        std::fs::read(dir.path().join(locus_server::MODULE_FILE)).unwrap(),
        *DEMO
    );
    // The old module keeps running.
    assert_eq!(
        call(&mut c, "set_name", &gm::set_name::call("Ada".into()).args),
        CallOutcome::Ok
    );
    // Over the in-process API too, and a module that is not wasm at all.
    assert!(matches!(
        server.publish(&OTHER),
        Err(locus_server::PublishError::Refused(m)) if m.contains("table `creature` removed")
    ));
    assert!(matches!(
        server.publish(b"not wasm"),
        Err(locus_server::PublishError::Load(_))
    ));
    server.shutdown();
}

#[test]
fn call_query_logs_and_snapshot_work_for_the_admin_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), false);
    let mut c = connect(&server);
    assert_eq!(
        call(&mut c, "set_name", &gm::set_name::call("Ada".into()).args),
        CallOutcome::Ok
    );
    // call: an admin-only reducer, as the server.
    let out = locus(
        dir.path(),
        &server,
        &[
            "call",
            "admin_spawn_creatures_in",
            "[7, 100, 100, 300, 300]",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok (tick "), "{}", stdout(&out));
    let bad = locus(dir.path(), &server, &["call", "admin_give", "[1]"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("takes 3 arguments"),
        "{}",
        stderr(&bad)
    );
    // query: private tables too, WHERE / ORDER BY / LIMIT.
    let out = locus(
        dir.path(),
        &server,
        &[
            "query",
            // (set_name stores names in lower case)
            "SELECT name, level FROM player WHERE name = 'ada' ORDER BY id LIMIT 5",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["columns"], serde_json::json!(["name", "level"]));
    assert_eq!(json["rows"], serde_json::json!([["ada", 1]]));
    let out = locus(
        dir.path(),
        &server,
        &["query", "SELECT COUNT(*) FROM inventory_item"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = locus(dir.path(), &server, &["query", "DELETE FROM player"]);
    assert!(!out.status.success());
    // logs: the module's lines (the demo logs every player entering).
    let out = locus(dir.path(), &server, &["logs", "-n", "50"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("entered the world"),
        "{}",
        stdout(&out)
    );
    // logs -f: a line written after the command started arrives.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["logs", "-f", "-n", "0", "--data-dir"])
        .arg(dir.path())
        .args(["--server", &server.local_addr().to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut late = connect(&server);
    let lines = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut seen = false;
    for line in lines.lines() {
        late.poll();
        if line.unwrap().contains("entered the world") {
            seen = true;
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(seen, "logs -f printed the new line");
    // snapshot.
    let out = locus(dir.path(), &server, &["snapshot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let tick: u64 = text
        .trim()
        .strip_prefix("snapshot of tick ")
        .and_then(|t| t.strip_suffix(" written"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        dir.path()
            .join("log")
            .join(format!("snap-{tick:020}.snap"))
            .exists()
    );
    // Anyone else is refused, with the Forbidden code, and nothing happens.
    let stranger = dir.path().join("stranger.token");
    std::fs::write(&stranger, "ab".repeat(32)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args([
            "call",
            "admin_spawn_creatures_in",
            "[1000, 0, 0, 4000, 4000]",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--token-file")
        .arg(&stranger)
        .args(["--server", &server.local_addr().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only the world's admin"),
        "{}",
        stderr(&out)
    );
    let request = c
        .admin(AdminCommand::Query {
            sql: "SELECT * FROM chat_quota".into(),
        })
        .unwrap();
    let events = wait_for(&mut c, "the refusal", |_, ev| {
        ev.iter()
            .any(|e| matches!(e, Event::ServerError { request: Some(r), .. } if *r == request))
    });
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ServerError {
            code: ErrorCode::Forbidden,
            fatal: false,
            ..
        }
    )));
    server.shutdown();
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: locus\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

fn sample(metrics: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    let s = metrics
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"));
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn the_metrics_endpoint_parses_as_prometheus_text_and_its_counters_move() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), true);
    let addr = server.metrics_addr().expect("metrics are served");
    let parse = |text: &str| {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
    };
    let first = parse(&scrape(addr));
    let mut c = connect(&server);
    assert_eq!(
        call(&mut c, "set_name", &gm::set_name::call("Ada".into()).args),
        CallOutcome::Ok
    );
    assert!(matches!(
        call(&mut c, "set_name", &gm::set_name::call(String::new()).args),
        CallOutcome::Err { .. }
    ));
    std::thread::sleep(Duration::from_millis(1200));
    let text = scrape(addr);
    let second = parse(&text);
    assert!(sample(&second, "locus_ticks_total", None) > sample(&first, "locus_ticks_total", None));
    assert_eq!(sample(&second, "locus_clients_connected", None), 1.0);
    assert_eq!(
        sample(
            &second,
            "locus_reducer_calls_total",
            Some(("reducer", "set_name"))
        ),
        2.0
    );
    assert_eq!(
        sample(
            &second,
            "locus_reducer_errors_total",
            Some(("reducer", "set_name"))
        ),
        1.0
    );
    assert!(sample(&second, "locus_bytes_out_total", None) > 0.0);
    assert!(sample(&second, "locus_bytes_in_total", None) > 0.0);
    assert!(sample(&second, "locus_table_rows", Some(("table", "player"))) >= 1.0);
    // An idle world's log keeps up: at most a second of ticks waits for its fsync.
    let lag = sample(&second, "locus_durability_lag_ticks", None);
    assert!((0.0..20.0).contains(&lag), "durability lag {lag} ticks");
    assert!(
        text.contains("# TYPE locus_tick_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("locus_tick_duration_seconds_bucket{le=\"0.001\"}"),
        "{text}"
    );
    server.shutdown();
}

/// The ticks of the snapshots in a log directory.
fn snapshot_ticks(log: &Path) -> Vec<u64> {
    let mut ticks: Vec<u64> = std::fs::read_dir(log)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("snap-")?
                .strip_suffix(".snap")?
                .parse()
                .ok()
        })
        .collect();
    ticks.sort_unstable();
    ticks
}

#[test]
fn periodic_snapshots_taken_while_the_world_changes_recover_to_their_tick() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = server_config(&data, &DEMO);
    config.log.snapshot_every_ticks = Some(4);
    let server = Server::start(config).unwrap();
    // A player whose row changes every tick, besides the demo's wandering creatures.
    let mut c = connect(&server);
    assert_eq!(
        call(&mut c, "set_name", &gm::set_name::call("Ada".into()).args),
        CallOutcome::Ok
    );
    let log = data.join("log");
    let deadline = std::time::Instant::now() + common::WAIT;
    while snapshot_ticks(&log).last().is_none_or(|&t| t < 12) {
        assert!(std::time::Instant::now() < deadline, "no periodic snapshot");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Each periodic snapshot (images taken on the tick thread, encoded on the durability thread while the next ticks
    // changed the rows) recovers on its own, to its own tick.
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    let mut copied = Vec::new();
    for tick in snapshot_ticks(&log) {
        let name = format!("snap-{tick:020}.snap");
        // Older ones are removed as new ones are written.
        if std::fs::copy(log.join(&name), copy.join(&name)).is_ok() {
            copied.push(tick);
        }
    }
    let newest = *copied.last().expect("a snapshot copied");
    assert!(newest >= 12, "{copied:?}");
    let storage = locus_log::storage::FsStorage::open(&copy).unwrap();
    let (_, recovered) = locus_log::Log::open(
        std::sync::Arc::new(storage),
        locus_log::LogConfig::default(),
        locus_store::StoreConfig::default(),
    )
    .expect("the copied snapshot recovers");
    assert_eq!(recovered.snapshot, Some(locus_types::Tick(newest)));
    assert_eq!(recovered.tick.0, newest);
    let player = recovered.db.table_id("player").expect("player table");
    assert_eq!(recovered.db.table(player).unwrap().len(), 1);
    server.shutdown();
    // The whole directory recovers as well (the last snapshot and the records after it).
    let server = Server::start(server_config(&data, &DEMO)).unwrap();
    assert!(server.recovered_tick().0 >= newest);
    assert_query_has(&server, "SELECT name FROM player", "ada");
    server.shutdown();
}

#[test]
fn sigterm_finishes_the_tick_writes_a_snapshot_tells_clients_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wasm = dir.path().join("game_module.wasm");
    std::fs::write(&wasm, &*DEMO).unwrap();
    let addr = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .arg("--module")
        .arg(&wasm)
        .args(["--listen", &addr.to_string()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("Press Ctrl-C") {
            break;
        }
    }
    let mut c = Client::connect(ClientConfig::new(
        addr,
        Trust::CertFile(data.join("cert.der")),
    ))
    .unwrap();
    assert_eq!(
        call(&mut c, "set_name", &gm::set_name::call("Ada".into()).args),
        CallOutcome::Ok
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "locus exited with {exit:?}");
    // The client was told.
    let events = wait_for(&mut c, "the shutdown", |c, _| !c.is_connected());
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::ServerError {
                code: ErrorCode::ShuttingDown,
                fatal: true,
                ..
            }
        ) || matches!(e, Event::Disconnected { reason } if reason.contains("shutting down"))),
        "{events:?}"
    );
    // The last tick is in a snapshot, and a restart recovers to it with the name intact.
    let mut stderr_text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr_text)
        .unwrap();
    let last: u64 = stderr_text
        .lines()
        .filter(|l| l.contains("stopped;"))
        .find_map(|l| l.split("tick=").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no final tick in: {stderr_text}"));
    assert!(
        data.join("log")
            .join(format!("snap-{last:020}.snap"))
            .exists(),
        "{stderr_text}"
    );
    let config = server_config(&data, &DEMO);
    let server = Server::start(config).unwrap();
    assert_eq!(server.recovered_tick().0, last);
    assert_query_has(&server, "SELECT name FROM player", "ada");
    server.shutdown();
}

#[test]
fn a_restart_with_a_newer_compatible_module_migrates_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), false);
    let mut c = connect(&server);
    assert_eq!(
        call(&mut c, "set_name", &gm::set_name::call("Ada".into()).args),
        CallOutcome::Ok
    );
    drop(c);
    server.shutdown();
    let config = server_config(dir.path(), &V2);
    let server = Server::start(config).expect("a newer compatible module starts on old data");
    assert_query_has(
        &server,
        "SELECT name, title FROM player",
        r#"["ada","Adventurer"]"#,
    );
    // Its upgrade reducer ran at the start, as a publish would run it: the new content is in the world.
    assert_query_has(&server, "SELECT version FROM locus_module", "[[2]]");
    assert_query_has(
        &server,
        "SELECT id, max_stack FROM item_kind WHERE id = 'guild_banner'",
        r#"["guild_banner",1]"#,
    );
    server.shutdown();
    // The migration was snapshotted: a second restart recovers it without migrating again.
    let config = server_config(dir.path(), &V2);
    let server = Server::start(config).unwrap();
    assert!(matches!(
        server.admin(AdminCommand::Query {
            sql: "SELECT COUNT(*) FROM guild".into()
        }),
        Some(AdminReply::Rows { .. })
    ));
    assert_query_has(&server, "SELECT version FROM locus_module", "[[2]]");
    server.shutdown();
}

/// Run `sql` as the admin and assert that its JSON result contains `needle`.
fn assert_query_has(server: &Server, sql: &str, needle: &str) {
    let reply = server.admin(AdminCommand::Query { sql: sql.into() });
    assert!(
        matches!(&reply, Some(AdminReply::Rows { json }) if json.contains(needle)),
        "{sql}: {reply:?}"
    );
}

// ---- `locus serve` options, failures of server-run reducers, the stored module, failed starts ----------------------

/// A module with no tables: its tick reducer `on_tick` fails with "no luck" every tick, its client reducer `spin`
/// loops forever, and `crash` traps.
static FAILING: LazyLock<Vec<u8>> = LazyLock::new(failing::failing_module);

/// A `locus serve` child process, killed when dropped.
struct Serving {
    child: std::process::Child,
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `locus serve --data-dir DIR --listen <a free port> ARGS…` until it says it is ready.
fn serve(dir: &Path, args: &[&str]) -> Serving {
    let addr = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--listen", &addr.to_string()])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn locus");
    let stdout = child.stdout.take().unwrap();
    let mut serving = Serving {
        child,
        addr,
        metrics: None,
    };
    let mut ready = false;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(url) = line.trim().strip_prefix("metrics") {
            let at = url
                .trim()
                .trim_start_matches("http://")
                .trim_end_matches("/metrics");
            serving.metrics = Some(at.parse().expect("a metrics address"));
        }
        if line.starts_with("Press Ctrl-C") {
            ready = true;
            break;
        }
    }
    assert!(ready, "locus serve {args:?} did not start");
    serving
}

/// Run `locus ARGS…` against the world in `dir` served at `addr`.
fn locus_at(dir: &Path, addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args(["--server", &addr.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run locus")
}

fn failing_module(dir: &Path) -> String {
    let path = dir.join("failing.wasm");
    std::fs::write(&path, &*FAILING).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn the_reducer_budget_options_of_serve_reach_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let module = failing_module(dir.path());
    for (option, value, budget) in [
        ("--reducer-fuel", "2000000", "fuel"),
        ("--reducer-time-limit", "20", "time"),
    ] {
        let data = dir.path().join(budget);
        let world = serve(
            &data,
            &[
                "--module",
                &module,
                option,
                value,
                "--metrics",
                "127.0.0.1:0",
            ],
        );
        // No arguments: `call` sends the empty array.
        let out = locus_at(&data, world.addr, &["call", "spin"]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("ReducerAborted")
                && err.contains(&format!("it exceeded its {budget} budget")),
            "{option}: {err}"
        );
        // The tick reducer's failures (every tick) reach the metrics and `locus logs`, under its name; how they are
        // counted and summed up is tested in `world.rs`.
        let metrics = scrape(world.metrics.expect("metrics are served"));
        let metrics =
            prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let failures = sample(
            &metrics,
            "locus_server_reducer_failures_total",
            Some(("reducer", "on_tick")),
        );
        assert!(failures >= 1.0, "{failures}");
        let out = locus_at(&data, world.addr, &["logs", "-n", "10"]);
        let text = stdout(&out);
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.contains(" error ")
                && first.contains(" on_tick ")
                && first.contains("reducer `on_tick` failed: no luck"),
            "{text}"
        );
    }
}

#[test]
fn serve_keeps_a_module_given_with_dash_dash_module_and_runs_it_on_a_restart_without() {
    let dir = tempfile::tempdir().unwrap();
    let module = failing_module(dir.path());
    let data = dir.path().join("data");
    let stored = data.join(locus_server::MODULE_FILE);
    let world = serve(&data, &["--module", &module]);
    assert_eq!(std::fs::read(&stored).unwrap(), *FAILING);
    drop(world); // SIGKILL
    // No `--module`: the stored module runs (the demo module would have no reducer `spin`).
    let world = serve(&data, &["--reducer-fuel", "1000000"]);
    let out = locus_at(&data, world.addr, &["call", "spin"]);
    let err = stderr(&out);
    assert!(err.contains("exceeded its fuel budget"), "{err}");
    // Nothing but the module itself was written beside it.
    let names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("module"))
        .collect();
    assert_eq!(names, [locus_server::MODULE_FILE]);
}

#[test]
fn a_failed_start_removes_the_data_directory_it_created_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let start = |data: &Path, wasm: &[u8], listen: SocketAddr| {
        let mut config = server_config(data, wasm);
        config.listen = listen;
        Server::start(config)
    };
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    // A module that does not load: nothing is created, not even the missing parents.
    let nested = dir.path().join("a/b/data");
    let err = start(&nested, b"not wasm", any).unwrap_err();
    assert!(matches!(err, locus_server::StartError::Load(_)), "{err}");
    assert!(!dir.path().join("a").exists());
    // A failure after the world was made (the address is taken): everything it made is removed.
    let taken = std::net::UdpSocket::bind(any).unwrap();
    let busy = taken.local_addr().unwrap();
    let err = start(&nested, &FAILING, busy).unwrap_err();
    assert!(
        matches!(err, locus_server::StartError::Listen { .. }),
        "{err}"
    );
    assert!(!dir.path().join("a").exists());
    // A directory that existed keeps what it held.
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("notes.txt"), "mine").unwrap();
    assert!(start(&existing, b"not wasm", any).is_err());
    assert!(start(&existing, &FAILING, busy).is_err());
    assert_eq!(
        std::fs::read_to_string(existing.join("notes.txt")).unwrap(),
        "mine"
    );
    // And a good start still works there.
    start(&existing, &FAILING, any).unwrap().shutdown();
}
