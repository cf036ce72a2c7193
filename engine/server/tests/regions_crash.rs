//! Crashes in the middle of handoffs: two regions as `locus serve --region` processes and a real `nats-server`;
//! bots teleport back and forth across the border while the test SIGKILLs a region, and later the NATS server,
//! and starts them again. Afterwards every player exists exactly once in the world, with its items, where its
//! last acknowledged call put it (or where a later unanswered call did).

mod common;

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEMO, WAIT, free_port};
use game_module::Vec2;
use locus_client::{CallOutcome, Client, ClientConfig, Event, Filter, RequestId, Trust};
use locus_protocol::{AdminCommand, AdminReply};
use locus_server::admin_client::{AdminSession, AdminTarget};
use locus_server::nats_server::NatsServer;

/// A region's `locus serve` process (killed when dropped).
struct Region {
    name: String,
    dir: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Region {
    fn start(&mut self, config: &Path, module: &Path) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_locus"))
            .args(["serve", "--region", &self.name, "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--module")
            .arg(module)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn locus");
        let stdout = child.stdout.take().unwrap();
        let mut ready = false;
        for line in std::io::BufReader::new(stdout).lines() {
            if line.unwrap().contains("Press Ctrl-C") {
                ready = true;
                break;
            }
        }
        assert!(ready, "region {} did not start", self.name);
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn trust(&self) -> Trust {
        Trust::CertFile(self.dir.join("cert.der"))
    }

    /// `SELECT name, pos FROM player` as the admin: each player's name and position.
    fn players(&self) -> Option<Vec<(String, Vec2)>> {
        let json = self.query("SELECT name, pos FROM player")?;
        let v: serde_json::Value = serde_json::from_str(&json).ok()?;
        v["rows"]
            .as_array()?
            .iter()
            .map(|r| {
                let pos = r[1].as_array()?;
                Some((
                    r[0].as_str()?.to_owned(),
                    Vec2::new(pos[0].as_f64()? as f32, pos[1].as_f64()? as f32),
                ))
            })
            .collect()
    }

    fn count(&self, sql: &str) -> Option<u64> {
        let json = self.query(sql)?;
        let v: serde_json::Value = serde_json::from_str(&json).ok()?;
        v["rows"][0][0].as_u64()
    }

    fn query(&self, sql: &str) -> Option<String> {
        let target = AdminTarget {
            server: self.addr,
            trust: self.trust(),
            token_file: self.dir.join(locus_server::identity::ADMIN_TOKEN_FILE),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut s = AdminSession::connect(&target).await.ok()?;
            let reply = s.run(AdminCommand::Query { sql: sql.into() }).await.ok()?;
            s.close().await;
            match reply {
                AdminReply::Rows { json } => Some(json),
                _ => None,
            }
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A bot: a client teleporting between its two points, one each side of the border.
struct Bot {
    name: String,
    client: Client,
    points: [Vec2; 2],
    next: usize,
    pending: Option<(RequestId, Vec2)>,
    /// Where the last acknowledged call put it, and the targets of calls sent since (unanswered, or lost).
    acked: Option<Vec2>,
    since: Vec<Vec2>,
    down: bool,
    /// Acknowledged teleports (each one across the border: a handoff), and lost connections.
    acks: u32,
    drops: u32,
}

impl Bot {
    /// One step: handle what arrived; send the next teleport when nothing is in flight. `up` says whether the
    /// region it last talked to may be reached.
    fn step(&mut self, send: bool) {
        for event in self.client.poll() {
            match event {
                Event::CallResult {
                    request, outcome, ..
                } if self.pending.is_some_and(|(r, _)| r == request) => {
                    let (_, target) = self.pending.take().unwrap();
                    if outcome == CallOutcome::Ok {
                        self.acked = Some(target);
                        self.since.clear();
                        self.acks += 1;
                    }
                }
                Event::Disconnected { .. } => {
                    self.down = true;
                    self.drops += 1;
                    // Its answer will never come: the call may or may not have been done.
                    self.pending = None;
                }
                _ => {}
            }
        }
        if send
            && !self.down
            && self.pending.is_none()
            && self.client.is_connected()
            && !self.client.cache().is_redirecting()
        {
            let target = self.points[self.next];
            self.next = 1 - self.next;
            if let Ok(request) = self.client.call_raw(
                "teleport",
                &rmp_serde::to_vec(&(target.x, target.y)).unwrap(),
            ) {
                self.pending = Some((request, target));
                self.since.push(target);
            }
        }
    }
}

fn walkable_near(p: Vec2) -> Vec2 {
    (0..400)
        .map(|i| p + Vec2::new((i % 20) as f32 * 2.0, (i / 20) as f32 * 2.0))
        .find(|&q| game_module::terrain::is_walkable(q))
        .expect("walkable ground near the point")
}

/// A column `x` of the demo world with walkable ground on both sides near `y` (for a west/east border).
fn border_at() -> (f32, f32) {
    for (x, y) in [
        (2048.0, 2048.0),
        (1800.0, 2100.0),
        (2300.0, 1900.0),
        (2048.0, 1700.0),
    ] {
        let ok = (0..8).all(|i| {
            let y = y + i as f32 * 6.0;
            game_module::terrain::is_walkable(Vec2::new(x - 20.0, y))
                && game_module::terrain::is_walkable(Vec2::new(x + 20.0, y))
        });
        if ok {
            return (x, y);
        }
    }
    panic!("no walkable border found");
}

fn run_for(bots: &mut [Bot], d: Duration, send: bool) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        for b in bots.iter_mut() {
            b.step(send);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reconnect every bot that lost its connection (its region is up again).
fn reconnect(bots: &mut [Bot]) {
    for b in bots.iter_mut().filter(|b| b.down) {
        let start = Instant::now();
        loop {
            if b.client.reconnect().is_ok() {
                b.down = false;
                break;
            }
            assert!(start.elapsed() < WAIT, "{} cannot reconnect", b.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the crash run's counts, for the record"
)]
fn players_survive_a_region_and_nats_killed_in_the_middle_of_handoffs_exactly_once() {
    if !locus_server::nats_server::available_or_skip("regions_crash") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(&scratch.path().join("nats"), 0).unwrap();
    let (x, y) = border_at();
    let size = game_module::WORLD_SIZE;
    let (west_addr, east_addr) = (free_port(), free_port());
    let config = scratch.path().join("world.toml");
    std::fs::write(
        &config,
        format!(
            "world = \"crash\"\nsize = {size}\nborder = 80.0\nnats = \"{}\"\n\
             [[region]]\nname = \"west\"\nrect = [0.0, 0.0, {x}, {size}]\nlisten = \"{west_addr}\"\n\
             [[region]]\nname = \"east\"\nrect = [{x}, 0.0, {size}, {size}]\nlisten = \"{east_addr}\"\n",
            nats.url()
        ),
    )
    .unwrap();
    let module = scratch.path().join("demo.wasm");
    std::fs::write(&module, &*DEMO).unwrap();
    let mut regions: Vec<Region> = [("west", west_addr), ("east", east_addr)]
        .into_iter()
        .map(|(name, addr)| Region {
            name: name.into(),
            dir: scratch.path().join(name),
            addr,
            child: None,
        })
        .collect();
    for r in &mut regions {
        r.start(&config, &module);
    }
    let mut bots: Vec<Bot> = (0..8)
        .map(|i| {
            let y = y + i as f32 * 6.0;
            let points = [
                walkable_near(Vec2::new(x - 20.0, y)),
                walkable_near(Vec2::new(x + 12.0, y)),
            ];
            let r = &regions[0];
            let mut client = Client::connect(ClientConfig::new(r.addr, r.trust())).unwrap();
            common::wait_for(&mut client, "the welcome", |c, _| c.is_connected());
            client.subscribe("player", Filter::All).unwrap();
            Bot {
                name: format!("crash{i:02}"),
                client,
                points,
                next: 0,
                pending: None,
                acked: None,
                since: Vec::new(),
                down: false,
                acks: 0,
                drops: 0,
            }
        })
        .collect();
    // Each names its player (in whichever region it spawned and was sent to).
    for b in &mut bots {
        let me = b.client.identity();
        common::wait_for(&mut b.client, "its player", |c, _| {
            c.is_connected()
                && !c.cache().is_redirecting()
                && c.cache()
                    .rows::<game_module::Player>("player")
                    .is_ok_and(|ps| ps.iter().any(|p| p.identity == me))
        });
        let name = b.name.clone();
        let start = Instant::now();
        loop {
            let request = b
                .client
                .call_raw("set_name", &rmp_serde::to_vec(&(name.clone(),)).unwrap())
                .unwrap();
            let events = common::wait_for(&mut b.client, "set_name", |_, e| {
                common::result_of(e, request).is_some()
                    || e.iter().any(|e| matches!(e, Event::Redirected { .. }))
            });
            if common::result_of(&events, request) == Some(&CallOutcome::Ok) {
                break;
            }
            assert!(start.elapsed() < WAIT, "{name} cannot be named");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let items: u64 = regions
        .iter()
        .map(|r| r.count("SELECT COUNT(*) FROM inventory_item").unwrap())
        .sum();
    run_for(&mut bots, Duration::from_secs(3), true);
    // A region dies in the middle of handoffs, and comes back.
    regions[0].kill();
    run_for(&mut bots, Duration::from_millis(1500), true);
    regions[0].start(&config, &module);
    reconnect(&mut bots);
    run_for(&mut bots, Duration::from_secs(3), true);
    // NATS dies in the middle of handoffs, and comes back (its JetStream store kept).
    nats.kill();
    run_for(&mut bots, Duration::from_millis(1500), true);
    nats.restart().unwrap();
    run_for(&mut bots, Duration::from_secs(3), true);
    // Quiet: the last answers, then every message delivered.
    run_for(&mut bots, Duration::from_secs(2), false);
    let start = Instant::now();
    let (mut places, mut problems);
    loop {
        places = BTreeMap::<String, Vec<(usize, Vec2)>>::new();
        for (i, r) in regions.iter().enumerate() {
            for (name, pos) in r.players().unwrap_or_default() {
                places.entry(name).or_default().push((i, pos));
            }
        }
        problems = Vec::new();
        for b in &bots {
            let allowed: Vec<Vec2> = b.acked.iter().chain(&b.since).copied().collect();
            match places.get(&b.name).map(Vec::as_slice) {
                Some([(region, pos)]) => {
                    if !allowed.iter().any(|a| a.distance(*pos) < 0.5) {
                        problems.push(format!(
                            "{} is at {pos} in region {region}, not where its calls put it ({allowed:?})",
                            b.name
                        ));
                    }
                }
                other => problems.push(format!("{} is in the world as {other:?}", b.name)),
            }
        }
        let items_now: u64 = regions
            .iter()
            .map(|r| r.count("SELECT COUNT(*) FROM inventory_item").unwrap_or(0))
            .sum();
        if items_now != items {
            problems.push(format!("{items_now} inventory rows, {items} before"));
        }
        if problems.is_empty() || start.elapsed() > WAIT * 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // The operator sees the whole world: `locus query --config` asks every region.
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["query", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(scratch.path())
        .arg("SELECT COUNT(*) FROM player")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("== region west") && text.contains("== region east"),
        "{text}"
    );
    let total: u64 = text
        .lines()
        .filter_map(|l| l.trim().trim_matches('|').trim().parse::<u64>().ok())
        .sum();
    assert_eq!(total, bots.len() as u64, "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["query", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(scratch.path())
        .args(["--region", "east", "SELECT COUNT(*) FROM player"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("region west"),
        "{text}"
    );
    let handoffs: u32 = bots.iter().map(|b| b.acks).sum();
    let drops: u32 = bots.iter().map(|b| b.drops).sum();
    assert!(drops > 0, "the kill must cut some bots off");
    assert!(
        handoffs >= 40,
        "the bots must cross the border many times ({handoffs})"
    );
    eprintln!(
        "every player exactly once after a region and NATS were killed: {handoffs} acknowledged crossings, \
         {drops} lost connections; {places:?}"
    );
}
