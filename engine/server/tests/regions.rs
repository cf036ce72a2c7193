//! A world split into four regions, each its own server, over a real NATS server (`nats-server`, which `.ci/run`
//! installs from Debian): clients near a border see the rows of the neighbouring regions exactly as clients of one
//! whole world at the same positions do.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{DEMO, WAIT, free_port, result_of, wait_for};
use game_module::Vec2;
use locus_client::{Client, ClientConfig, Filter, Trust};
use locus_region::{RegionId, WorldLayout};
use locus_server::nats_server::NatsServer;
use locus_server::region::RegionSetup;
use locus_server::{Server, ServerConfig};

/// 2 × 2 regions of the demo world meeting at `c`, with an 80 m border band (more than the demo's 72 m leave
/// radius).
fn layout(nats: &str, c: Vec2) -> WorldLayout {
    let s = game_module::WORLD_SIZE;
    let text = format!(
        r#"
        world = "test"
        size = {s}
        border = 80.0
        nats = "{nats}"
        [[region]]
        name = "sw"
        rect = [0.0, 0.0, {x}, {y}]
        listen = "127.0.0.1:1"
        [[region]]
        name = "se"
        rect = [{x}, 0.0, {s}, {y}]
        listen = "127.0.0.1:2"
        [[region]]
        name = "nw"
        rect = [0.0, {y}, {x}, {s}]
        listen = "127.0.0.1:3"
        [[region]]
        name = "ne"
        rect = [{x}, {y}, {s}, {s}]
        listen = "127.0.0.1:4"
        "#,
        x = c.x,
        y = c.y,
    );
    WorldLayout::from_toml(&text).unwrap()
}

/// Four regions meeting at `corner`, each a server, over a `nats-server` of their own.
struct World {
    layout: WorldLayout,
    regions: Vec<Server>,
    _dirs: Vec<tempfile::TempDir>,
    _nats: NatsServer,
    _store: tempfile::TempDir,
}

impl World {
    fn start(corner: Vec2) -> World {
        let store = tempfile::tempdir().unwrap();
        let nats = NatsServer::start(store.path(), 0).unwrap();
        let layout = layout(&nats.url(), corner);
        let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let regions = (0..4u16)
            .map(|r| {
                start(
                    dirs[usize::from(r)].path(),
                    Some(RegionSetup {
                        layout: layout.clone(),
                        own: RegionId(r),
                    }),
                )
            })
            .collect();
        World {
            layout,
            regions,
            _dirs: dirs,
            _nats: nats,
            _store: store,
        }
    }
}

fn start(dir: &Path, region: Option<RegionSetup>) -> Server {
    let mut config = ServerConfig::new(DEMO.clone());
    config.data_dir = dir.to_owned();
    config.listen = free_port();
    config.workers = 1;
    config.region = region;
    Server::start(config).unwrap()
}

/// A client of `servers[first]`, subscribed to players, once it is connected to the server that holds its own
/// player (`server_of` its position): its avatar may spawn in another region, and the client follows it there by
/// itself.
fn connect(servers: &[Server], first: usize, server_of: &impl Fn(Vec2) -> usize) -> Client {
    let server = &servers[first];
    let config = ClientConfig::new(
        server.local_addr(),
        Trust::Fingerprint(server.fingerprint()),
    );
    let mut client = Client::connect(config).unwrap();
    wait_for(&mut client, "the welcome", |c, _| c.is_connected());
    client.subscribe("player", Filter::All).unwrap();
    let me = client.identity();
    wait_for(&mut client, "its own player, in its region", |c, _| {
        c.is_connected()
            && !c.cache().is_redirecting()
            && own_player(c, me)
                .is_some_and(|p| servers[server_of(p.pos)].local_addr() == c.config().addr)
    });
    client
}

fn own_player(client: &Client, me: locus_types::Identity) -> Option<game_module::Player> {
    client
        .cache()
        .rows::<game_module::Player>("player")
        .ok()?
        .into_iter()
        .find(|p| p.identity == me)
}

/// Where 12 players stand: 3 in each region, within 60 m of the corner where the four meet, none at a distance from
/// another between the demo's enter and leave radii (so hysteresis cannot make two worlds differ), on walkable
/// ground; and the corner itself.
fn positions() -> (Vec2, Vec<Vec2>) {
    use game_module::terrain::is_walkable;
    let near = |a: Vec2, b: Vec2| {
        let d = a.distance(b);
        d < 4.0 || (56.0..80.0).contains(&d)
    };
    let mut tried = 0;
    for ring in 0..40 {
        for k in 0..(8 * ring.max(1)) {
            tried += 1;
            let angle = k as f32 / (8 * ring.max(1)) as f32 * std::f32::consts::TAU;
            let c = (Vec2::splat(2048.0) + Vec2::from_angle(angle) * (ring as f32 * 64.0)).round();
            let mut chosen: Vec<Vec2> = Vec::new();
            for quadrant in [
                Vec2::new(-1.0, -1.0),
                Vec2::new(1.0, -1.0),
                Vec2::new(-1.0, 1.0),
                Vec2::new(1.0, 1.0),
            ] {
                let mut mine = 0;
                'grid: for i in 1..9 {
                    for j in 1..9 {
                        let p =
                            c + quadrant * Vec2::new(i as f32 * 6.5 + 0.5, j as f32 * 6.5 + 0.5);
                        if mine < 3 && is_walkable(p) && !chosen.iter().any(|&q| near(p, q)) {
                            chosen.push(p);
                            mine += 1;
                            if mine == 3 {
                                break 'grid;
                            }
                        }
                    }
                }
            }
            if chosen.len() == 12 {
                return (c, chosen);
            }
        }
    }
    panic!("no walkable corner found after {tried} tries");
}

/// Connect a client per position to `server_of(position)`, name it, teleport it there, subscribe to players; then
/// wait until every client's view is settled. Returns each client's visible player names (by position index).
fn views(
    servers: &[Server],
    server_of: impl Fn(Vec2) -> usize,
    at: &[Vec2],
) -> Vec<BTreeSet<String>> {
    let mut clients = Vec::new();
    for (i, &p) in at.iter().enumerate() {
        let mut client = connect(servers, server_of(p), &server_of);
        for (reducer, args) in [
            (
                "set_name",
                rmp_serde::to_vec(&(format!("p{i:02}"),)).unwrap(),
            ),
            ("teleport", rmp_serde::to_vec(&(p.x, p.y)).unwrap()),
        ] {
            let request = client.call_raw(reducer, &args).unwrap();
            let events = wait_for(&mut client, reducer, |_, e| result_of(e, request).is_some());
            assert_eq!(
                result_of(&events, request),
                Some(&locus_client::CallOutcome::Ok),
                "{reducer} for p{i} at {p}"
            );
        }
        clients.push(client);
    }
    // Settled: the same view for a second.
    let mut last: Vec<BTreeSet<String>> = Vec::new();
    let mut stable_since = Instant::now();
    let start = Instant::now();
    loop {
        let now: Vec<BTreeSet<String>> = clients
            .iter_mut()
            .map(|c| {
                c.poll();
                c.cache()
                    .rows::<game_module::Player>("player")
                    .unwrap()
                    .into_iter()
                    .map(|p| p.name)
                    .collect()
            })
            .collect();
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() > Duration::from_secs(1)
            && last.iter().all(|v| !v.is_empty())
        {
            return last;
        }
        assert!(
            start.elapsed() < WAIT * 2,
            "views did not settle: {last:?}; clients: {:?}; players: {:?}",
            clients
                .iter()
                .map(|c| (
                    c.is_connected(),
                    c.cache().is_redirecting(),
                    c.config().addr,
                    own_player(c, c.identity()).map(|p| (p.name, p.pos))
                ))
                .collect::<Vec<_>>(),
            servers
                .iter()
                .map(|s| (s.local_addr(), query(s, "SELECT id, name, pos FROM player")))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the border traffic's figures, for the record"
)]
fn clients_near_a_border_see_the_neighbouring_regions_as_in_one_world() {
    if !locus_server::nats_server::available_or_skip("regions") {
        return;
    }
    let (corner, at) = positions();
    let world = World::start(corner);
    let (layout, regions) = (&world.layout, &world.regions);
    let split = views(
        regions,
        |p| usize::from(layout.region_at(p).unwrap().0),
        &at,
    );
    let whole_dir = tempfile::tempdir().unwrap();
    let whole_server = [start(whole_dir.path(), None)];
    let whole = views(&whole_server, |_| 0, &at);
    let cross: usize = (0..at.len())
        .map(|i| {
            whole[i]
                .iter()
                .filter(|name| {
                    let j: usize = name[1..].parse().unwrap();
                    layout.region_at(at[j]) != layout.region_at(at[i])
                })
                .count()
        })
        .sum();
    assert!(
        cross >= 12,
        "the positions must put players in view across borders ({cross} pairs)"
    );
    let by_player: BTreeMap<usize, (&BTreeSet<String>, &BTreeSet<String>)> =
        (0..at.len()).map(|i| (i, (&split[i], &whole[i]))).collect();
    for (i, (s, w)) in &by_player {
        assert_eq!(
            s, w,
            "p{i} at {} sees other players in the split world than in the whole one",
            at[*i]
        );
    }
    for (r, server) in regions.iter().enumerate() {
        let stats = server.region_stats().unwrap();
        assert!(
            stats.received > 0 && stats.copies_held > 0,
            "region {r}: {stats:?}"
        );
        eprintln!("region {r}: {stats:?}");
    }
}

/// Run `sql` as the admin of `server`; its rows.
fn query(server: &Server, sql: &str) -> Vec<Vec<serde_json::Value>> {
    match server.admin(locus_protocol::AdminCommand::Query { sql: sql.into() }) {
        Some(locus_protocol::AdminReply::Rows { json }) => {
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            serde_json::from_value(v["rows"].clone()).unwrap()
        }
        other => panic!("{sql}: {other:?}"),
    }
}

/// A walkable point near `p`.
fn walkable_near(p: Vec2) -> Vec2 {
    (0..400)
        .map(|i| p + Vec2::new((i % 20) as f32 * 3.0, (i / 20) as f32 * 3.0))
        .find(|&q| game_module::terrain::is_walkable(q))
        .expect("walkable ground near the point")
}

#[test]
#[expect(clippy::print_stderr, reason = "the handoff's timing, for the record")]
fn a_player_walking_across_a_border_moves_to_the_next_region_with_its_items_and_its_client_follows()
{
    if !locus_server::nats_server::available_or_skip("regions") {
        return;
    }
    let (corner, _) = positions();
    let world = World::start(corner);
    let (layout, regions) = (&world.layout, &world.regions);
    // South-west of the corner, then across the border into the south-east region.
    let west = walkable_near(corner + Vec2::new(-30.0, -40.0));
    let east = walkable_near(corner + Vec2::new(30.0, -40.0));
    let sw = usize::from(layout.region_at(west).unwrap().0);
    let se = usize::from(layout.region_at(east).unwrap().0);
    assert_ne!(sw, se);
    let region_of = |p: Vec2| usize::from(layout.region_at(p).unwrap().0);
    let mut client = connect(regions, sw, &region_of);
    let identity = client.identity();
    // To the south-west region first (it may have spawned elsewhere).
    let request = client
        .call_raw("teleport", &rmp_serde::to_vec(&(west.x, west.y)).unwrap())
        .unwrap();
    let events = wait_for(&mut client, "teleport", |_, e| {
        result_of(e, request).is_some()
    });
    assert_eq!(
        result_of(&events, request),
        Some(&locus_client::CallOutcome::Ok)
    );
    wait_for(
        &mut client,
        "its player in the south-west region",
        |c, _| {
            c.is_connected()
                && !c.cache().is_redirecting()
                && c.config().addr == regions[sw].local_addr()
                && own_player(c, identity).is_some_and(|p| p.pos.distance(west) < 1.0)
        },
    );
    for (reducer, args) in [
        ("set_name", rmp_serde::to_vec(&("walker",)).unwrap()),
        ("teleport", rmp_serde::to_vec(&(west.x, west.y)).unwrap()),
    ] {
        let request = client.call_raw(reducer, &args).unwrap();
        let events = wait_for(&mut client, reducer, |_, e| result_of(e, request).is_some());
        assert_eq!(
            result_of(&events, request),
            Some(&locus_client::CallOutcome::Ok)
        );
    }
    client.subscribe("inventory_item", Filter::All).unwrap();
    wait_for(&mut client, "its own player", |c, _| {
        c.cache()
            .rows::<game_module::Player>("player")
            .unwrap()
            .iter()
            .any(|p| p.identity == identity)
    });
    let items_before = query(&regions[sw], "SELECT COUNT(*) FROM inventory_item");
    assert!(
        items_before[0][0].as_u64().unwrap() > 0,
        "the player starts with items"
    );
    let request = client
        .call_raw("teleport", &rmp_serde::to_vec(&(east.x, east.y)).unwrap())
        .unwrap();
    let started = Instant::now();
    // The client is sent to the south-east region and reconnects there by itself; its avatar stays in view.
    let events = wait_for(&mut client, "the redirect", |_, e| {
        e.iter()
            .any(|e| matches!(e, locus_client::Event::Redirected { .. }))
    });
    assert_eq!(
        result_of(&events, request),
        Some(&locus_client::CallOutcome::Ok)
    );
    let redirected = started.elapsed();
    wait_for(&mut client, "its player in the new region", |c, _| {
        c.is_connected()
            && c.cache()
                .rows::<game_module::Player>("player")
                .unwrap()
                .iter()
                .any(|p| p.identity == identity && p.pos.distance(east) < 1.0)
    });
    assert_eq!(
        client.identity(),
        identity,
        "the same identity after the redirect"
    );
    eprintln!("handoff to redirect: {redirected:?}");
    // Exactly once in the world: in the south-east region, with its items; none left behind.
    let count = |r: usize, sql: &str| query(&regions[r], sql)[0][0].as_u64().unwrap();
    assert_eq!(
        count(sw, "SELECT COUNT(*) FROM player WHERE name = 'walker'"),
        0
    );
    assert_eq!(
        count(se, "SELECT COUNT(*) FROM player WHERE name = 'walker'"),
        1
    );
    assert_eq!(count(sw, "SELECT COUNT(*) FROM inventory_item"), 0);
    assert_eq!(
        query(&regions[se], "SELECT COUNT(*) FROM inventory_item"),
        items_before,
        "its items moved with it"
    );
    // The client works in its new region: a call there moves the player.
    let step = walkable_near(east + Vec2::new(5.0, 0.0));
    let request = client
        .call_raw("teleport", &rmp_serde::to_vec(&(step.x, step.y)).unwrap())
        .unwrap();
    let events = wait_for(&mut client, "a call in the new region", |_, e| {
        result_of(e, request).is_some()
    });
    assert_eq!(
        result_of(&events, request),
        Some(&locus_client::CallOutcome::Ok)
    );
    // A reducer reaches every region: a shout (global chat) reaches a client of another region once.
    let far = (0..4)
        .find(|&r| r != se && r != sw)
        .expect("a third region");
    let far_point = walkable_near(
        layout.regions()[far]
            .rect
            .min
            .lerp(layout.regions()[far].rect.max, 0.5),
    );
    let mut listener = connect(regions, far, &region_of);
    let request = listener
        .call_raw(
            "teleport",
            &rmp_serde::to_vec(&(far_point.x, far_point.y)).unwrap(),
        )
        .unwrap();
    wait_for(&mut listener, "teleport", |_, e| {
        result_of(e, request).is_some()
    });
    listener.subscribe("global_message", Filter::All).unwrap();
    let sent = Instant::now();
    let request = client
        .call_raw("shout", &rmp_serde::to_vec(&("hello, regions",)).unwrap())
        .unwrap();
    let events = wait_for(&mut client, "the shout", |_, e| {
        result_of(e, request).is_some()
    });
    assert_eq!(
        result_of(&events, request),
        Some(&locus_client::CallOutcome::Ok)
    );
    wait_for(&mut listener, "the shout in another region", |c, _| {
        c.cache()
            .rows::<game_module::GlobalMessage>("global_message")
            .is_ok_and(|m| m.iter().any(|m| m.text == "hello, regions"))
    });
    eprintln!("global chat across regions: {:?}", sent.elapsed());
    // Once in every region (the sender's own copy came back and was recognised).
    let start = Instant::now();
    loop {
        let counts: Vec<u64> = regions
            .iter()
            .map(|r| {
                query(
                    r,
                    "SELECT COUNT(*) FROM global_message WHERE text = 'hello, regions'",
                )[0][0]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        if counts == [1, 1, 1, 1] {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "the shout in each region: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every message was confirmed and applied.
    let start = Instant::now();
    while regions
        .iter()
        .any(|s| s.region_stats().unwrap().unconfirmed > 0)
    {
        assert!(start.elapsed() < WAIT, "messages stay unconfirmed");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{:?}", regions[se].region_stats().unwrap());
}

#[test]
fn each_region_generates_only_its_own_part_of_the_world() {
    if !locus_server::nats_server::available_or_skip("regions") {
        return;
    }
    let (corner, _) = positions();
    let world = World::start(corner);
    let (layout, regions) = (&world.layout, &world.regions);
    // The server describes the regions before a new world's `init`, whose generation (at the first tick) writes
    // exactly the chunks whose centre each region holds.
    let mut expected = vec![0u64; regions.len()];
    let side = game_module::terrain::CHUNKS_PER_SIDE;
    for cy in 0..side {
        for cx in 0..side {
            let c = game_module::terrain::chunk_center(cx, cy);
            expected[usize::from(layout.region_at(c).unwrap().0)] += 1;
        }
    }
    let start = Instant::now();
    loop {
        let counts: Vec<u64> = regions
            .iter()
            .map(|r| {
                query(r, "SELECT COUNT(*) FROM chunk")[0][0]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        if counts == expected {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "chunks per region: {counts:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Creatures (by their home: they wander) and resource nodes inside the region only; together about what one
    // whole world holds.
    let point = |v: &serde_json::Value| {
        let xy: [f32; 2] = serde_json::from_value(v.clone()).unwrap();
        Vec2::from(xy)
    };
    let mut creatures = 0;
    for (r, server) in regions.iter().enumerate() {
        let rect = layout.regions()[r].rect;
        let inside = |p: Vec2| {
            rect.min.x <= p.x && p.x < rect.max.x && rect.min.y <= p.y && p.y < rect.max.y
        };
        for sql in ["SELECT home FROM creature", "SELECT pos FROM resource_node"] {
            let rows = query(server, sql);
            assert!(!rows.is_empty(), "region {r}: {sql}");
            let outside: Vec<Vec2> = rows
                .iter()
                .map(|row| point(&row[0]))
                .filter(|&p| !inside(p))
                .collect();
            assert!(outside.is_empty(), "region {r}: {sql}: {outside:?}");
        }
        creatures += query(server, "SELECT COUNT(*) FROM creature")[0][0]
            .as_u64()
            .unwrap();
    }
    let whole: u32 = game_module::content()
        .spawns
        .creatures
        .iter()
        .map(|k| k.count)
        .sum();
    assert!(
        (creatures as f64 - f64::from(whole)).abs() <= f64::from(whole) * 0.05,
        "the regions hold {creatures} creatures, a whole world {whole}"
    );
}
