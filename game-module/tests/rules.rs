//! The game's rules, tested against the real module with `locus-testing`: `game-module` built to wasm and run by
//! the engine's host, a fresh world per test, with a manual clock (50 ms ticks). What clients see is checked
//! through the real interest stage (`World::watch` / `World::seen`), fed the committed changesets and the areas
//! the module sets, exactly as the server does. The helpers here add the game's own words (players, items,
//! teleports) to `locus_testing::World`.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

use game_module::{self as gm, Vec2, terrain};
use locus_testing::Identity;

/// One tick of the default 20 Hz server (`locus_testing::WorldConfig::tick_secs`).
const TICK: f32 = 0.05;

/// A world of the demo module, generated.
struct World(locus_testing::World);

impl Deref for World {
    type Target = locus_testing::World;
    fn deref(&self) -> &locus_testing::World {
        &self.0
    }
}

impl DerefMut for World {
    fn deref_mut(&mut self) -> &mut locus_testing::World {
        &mut self.0
    }
}

impl World {
    /// A new world: `init`, then the first tick's scheduled generation.
    fn new() -> World {
        let world = World(locus_testing::World::new(locus_testing::module(env!(
            "CARGO_MANIFEST_DIR"
        ))));
        assert_eq!(world.count("chunk"), 128 * 128, "the world is generated");
        world
    }

    fn player(&self, who: Identity) -> gm::Player {
        self.rows::<gm::Player>("player")
            .into_iter()
            .find(|p| p.identity == who)
            .expect("a player")
    }

    /// What `who` carries: `(item, count)`, sorted.
    fn inventory(&self, who: Identity) -> Vec<(String, u32)> {
        let mut items: Vec<(String, u32)> = self
            .rows::<gm::InventoryItem>("inventory_item")
            .into_iter()
            .filter(|s| s.owner == who)
            .map(|s| (s.item, s.count))
            .collect();
        items.sort();
        items
    }

    fn holds(&self, who: Identity, item: &str) -> u32 {
        self.inventory(who)
            .into_iter()
            .find(|(i, _)| i == item)
            .map_or(0, |(_, n)| n)
    }

    fn give(&mut self, who: Identity, item: &str, count: u32) {
        let id = self.player(who).id;
        self.call(
            Identity::SERVER,
            gm::admin::admin_give::call(id, item.into(), count),
        )
        .unwrap();
    }

    fn teleport(&mut self, who: Identity, p: Vec2) {
        self.call(who, gm::teleport::call(p.x, p.y)).unwrap();
    }
}

/// A walkable point at distance `d` from `center` (trying directions around it).
fn walkable_near(center: Vec2, d: f32) -> Vec2 {
    (0..64)
        .map(|i| center + Vec2::from_angle(i as f32 * 0.098) * d)
        .find(|p| terrain::is_walkable(*p))
        .unwrap_or_else(|| panic!("no walkable point {d} m from {center}"))
}

/// The walkable point nearest to `p` on a 1 m grid (searching outward ring by ring).
fn land_near(p: Vec2) -> Vec2 {
    (0..200)
        .flat_map(|r| (-r..=r).flat_map(move |x| (-r..=r).map(move |y| (x, y))))
        .map(|(x, y)| p + Vec2::new(x as f32, y as f32))
        .find(|q| terrain::is_walkable(*q))
        .unwrap_or_else(|| panic!("no land near {p}"))
}

/// The node of `kind` nearest to `to`.
fn nearest_node(world: &World, kind: &str, to: Vec2) -> gm::ResourceNode {
    world
        .rows::<gm::ResourceNode>("resource_node")
        .into_iter()
        .filter(|n| n.kind == kind)
        .min_by(|a, b| a.pos.distance(to).total_cmp(&b.pos.distance(to)))
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// The creature of `kind` nearest to `to`.
fn nearest_creature(world: &World, kind: &str, to: Vec2) -> gm::Creature {
    world
        .rows::<gm::Creature>("creature")
        .into_iter()
        .filter(|c| c.kind == kind)
        .min_by(|a, b| a.pos.distance(to).total_cmp(&b.pos.distance(to)))
        .unwrap_or_else(|| panic!("no {kind}"))
}

// ---- the world ------------------------------------------------------------------------------------------------

#[test]
fn the_world_is_generated_from_the_assets_and_the_module_agrees_with_native_terrain() {
    let world = World::new();
    let content = gm::content();
    // Chunk rows hold exactly what the terrain function computes natively (the same bits in wasm and natively).
    let chunks: HashMap<u32, gm::Chunk> = world
        .rows::<gm::Chunk>("chunk")
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    for (cx, cy) in [(0, 0), (64, 64), (17, 99), (127, 127), (40, 3)] {
        let chunk = &chunks[&terrain::chunk_id(cx, cy)];
        assert_eq!(chunk.center, terrain::chunk_center(cx, cy));
        assert_eq!(
            chunk.tiles,
            terrain::chunk_tiles(cx, cy),
            "chunk ({cx}, {cy})"
        );
    }
    // Every kind is placed, on its own terrain, near its count; hostiles stay out of the spawn zone's safe radius.
    let nodes: Vec<gm::ResourceNode> = world.rows("resource_node");
    for kind in &content.spawns.resources {
        let of_kind: Vec<_> = nodes.iter().filter(|n| n.kind == kind.kind).collect();
        assert!(
            of_kind.len() as f64 > 0.95 * f64::from(kind.count)
                && of_kind.len() <= kind.count as usize,
            "{}: {} of {}",
            kind.kind,
            of_kind.len(),
            kind.count
        );
        for n in of_kind {
            let t = &content.terrain(terrain::terrain_at(n.pos)).name;
            assert!(kind.terrain.contains(t), "a {} on {t}", kind.kind);
            assert_eq!(n.amount, kind.amount);
        }
    }
    // Spread over the world, not stacked: the regions are generated by schedules due in the same tick, and each
    // must draw its own random numbers.
    let distinct: std::collections::HashSet<(u32, u32)> = nodes
        .iter()
        .map(|n| (n.pos.x.to_bits(), n.pos.y.to_bits()))
        .collect();
    assert!(
        distinct.len() as f64 > 0.99 * nodes.len() as f64,
        "{} distinct positions of {} nodes",
        distinct.len(),
        nodes.len()
    );
    let spawn = content.world.spawn;
    let creatures: Vec<gm::Creature> = world.rows("creature");
    for kind in &content.spawns.creatures {
        let of_kind: Vec<_> = creatures.iter().filter(|c| c.kind == kind.kind).collect();
        assert!(
            of_kind.len() as f64 > 0.95 * f64::from(kind.count)
                && of_kind.len() <= kind.count as usize,
            "{}: {} of {}",
            kind.kind,
            of_kind.len(),
            kind.count
        );
        for c in of_kind {
            assert!(terrain::is_walkable(c.pos));
            if kind.temperament == gm::content::Temperament::Hostile {
                assert!(c.home.distance(Vec2::from(spawn.center)) >= spawn.safe_radius);
            }
        }
    }
    assert_eq!(world.count("item_kind"), content.items.len());
    assert_eq!(world.count("recipe"), content.recipes.len());
}

#[test]
fn clients_receive_the_chunks_around_their_player_and_no_others() {
    let mut world = World::new();
    let a = world.connect(1);
    world.watch(a, &["chunk"]);
    // The byte budget (1,024 B a tick) sends a view's 9–16 chunks over a few ticks.
    world.step(4);
    let me = world.player(a).pos;
    let seen: Vec<gm::Chunk> = world.seen(a, "chunk");
    assert!(
        (9..=16).contains(&seen.len()),
        "{} chunks in view",
        seen.len()
    );
    for c in &seen {
        assert!(
            c.center.distance(me) <= gm::VIEW_LEAVE,
            "{} is far",
            c.center
        );
    }
    // Every point within 41 m of the player lies in a chunk the client has (see `terrain`'s docs).
    let has = |p: Vec2| {
        let (tx, ty) = terrain::tile_of(p);
        let id = terrain::chunk_id(tx / terrain::CHUNK_TILES, ty / terrain::CHUNK_TILES);
        seen.iter().any(|c| c.id == id)
    };
    for i in 0..72 {
        let p = me + Vec2::from_angle(i as f32 * 0.0873) * 41.0;
        assert!(has(p), "no chunk for {p} (player at {me})");
    }
    // Walking away brings new chunks in and old ones out.
    let far = land_near(me + Vec2::new(150.0, 0.0));
    world.teleport(a, far);
    world.step(1);
    let seen: Vec<gm::Chunk> = world.seen(a, "chunk");
    assert!(
        seen.iter()
            .all(|c| c.center.distance(far) <= gm::VIEW_LEAVE)
    );
    assert!(!seen.is_empty());
}

// ---- players ---------------------------------------------------------------------------------------------------

#[test]
fn the_player_is_the_movable_table_and_takes_what_its_identity_owns_along() {
    // As the host reads the module's descriptions.
    let tables = &locus_testing::module(env!("CARGO_MANIFEST_DIR"))
        .def()
        .tables;
    let movable: Vec<&str> = tables
        .iter()
        .filter(|t| t.movable)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(movable, ["player"]);
    let player = tables.iter().find(|t| t.name == "player").unwrap();
    assert_eq!(player.spatial_column(), player.column_id("pos"));
    assert_eq!(player.identity_column(), player.column_id("identity"));
    // The rows that move with a player: those its identity owns, and its state keyed by identity.
    let mut along: Vec<&str> = tables
        .iter()
        .filter(|t| t.identity_bound_columns().next().is_some())
        .map(|t| t.name.as_str())
        .collect();
    along.sort_unstable();
    assert_eq!(along, ["chat_quota", "inventory_item", "whisper"]);
}

#[test]
fn a_new_client_gets_a_player_on_land_with_starting_items_and_an_area_following_it() {
    let mut world = World::new();
    let a = world.connect(1);
    let p = world.player(a);
    assert!(terrain::is_walkable(p.pos));
    assert_eq!(p.name, format!("player-{}", p.id));
    assert!(p.online && p.is_alive());
    assert_eq!(world.inventory(a), [("wood".to_owned(), 5)]);
    let area = world.area(a).expect("an area");
    assert_eq!((area.enter, area.leave), (gm::VIEW_ENTER, gm::VIEW_LEAVE));
    // Reconnecting keeps the player (and gives nothing twice).
    world
        .call(a, gm::move_to::call(p.pos.x + 5.0, p.pos.y))
        .unwrap();
    world.disconnect(a);
    assert!(!world.player(a).online && !world.player(a).moving);
    world.connect(1);
    assert_eq!(world.player(a).id, p.id);
    assert_eq!(world.inventory(a), [("wood".to_owned(), 5)]);
}

#[test]
fn names_are_validated_and_unique() {
    let mut world = World::new();
    let (a, b) = (world.connect(1), world.connect(2));
    world.call(a, gm::set_name::call("Ada".into())).unwrap();
    assert_eq!(world.player(a).name, "ada");
    let err = world.call(b, gm::set_name::call("ADA".into())).unwrap_err();
    assert_eq!(err, "the name `ada` is taken");
    let b_id = world.player(b).id;
    let err = world
        .call(b, gm::set_name::call(format!("player-{}", b_id + 1)))
        .unwrap_err();
    assert!(err.contains("kept for new players"), "{err}");
    let err = world
        .call(b, gm::set_name::call(String::new()))
        .unwrap_err();
    assert!(err.contains("a name has 3 to 16 characters"), "{err}");
    assert_eq!(world.player(b).name, format!("player-{b_id}"));
    // Renaming to one's own name is fine.
    world.call(a, gm::set_name::call("ada".into())).unwrap();
}

#[test]
fn speed_limits_hold_whatever_the_client_asks() {
    let mut world = World::new();
    let a = world.connect(1);
    let start = world.player(a).pos;
    // A target 1 km away: one second of ticks moves the player exactly WALK_SPEED metres.
    world
        .call(a, gm::move_to::call(start.x + 1000.0, start.y))
        .unwrap();
    world.step(20);
    let moved = world.player(a).pos.distance(start);
    assert!(
        (moved - gm::WALK_SPEED).abs() < 0.01,
        "moved {moved} m in 1 s"
    );
    // A tick that claims 10 s have passed still moves it at most MAX_TICK_DT's worth.
    let before = world.player(a).pos;
    world.step_by(1, 10.0);
    let moved = world.player(a).pos.distance(before);
    assert!(
        moved <= gm::WALK_SPEED * gm::MAX_TICK_DT + 1e-3,
        "moved {moved} m in one tick"
    );
    // Direction input obeys the same limit, however long the vector.
    let before = world.player(a).pos;
    world.call(a, gm::move_dir::call(0.0, -300.0)).unwrap();
    world.step(10);
    let after = world.player(a).pos;
    assert!((after.distance(before) - gm::WALK_SPEED * 0.5).abs() < 0.01);
    assert!((after.x - before.x).abs() < 1e-3, "straight south");
    // Teleporting onto water is refused.
    let err = world.call(a, gm::teleport::call(1.0, 1.0)).unwrap_err();
    assert!(err.contains("water"), "{err}");
}

#[test]
fn nobody_walks_on_water() {
    let mut world = World::new();
    let a = world.connect(1);
    // Find a shore: walking east from a land point, the first water tile (the sea is at the east edge anyway).
    let land = Vec2::new(1000.0, 1000.0);
    assert!(terrain::is_walkable(land));
    let shore = (0..3100)
        .map(|i| land + Vec2::new(i as f32, 0.0))
        .find(|p| !terrain::is_walkable(*p))
        .expect("water east of (1000, 1000)");
    world.teleport(a, shore - Vec2::new(6.0, 0.0));
    world.call(a, gm::move_dir::call(1.0, 0.0)).unwrap();
    world.step(60);
    let p = world.player(a);
    assert!(terrain::is_walkable(p.pos), "{} is water", p.pos);
    assert!(!p.moving, "it stopped at the shore");
    let water_from = (shore.x / terrain::TILE_SIZE).floor() * terrain::TILE_SIZE;
    assert!(
        p.pos.x < water_from && water_from - p.pos.x <= gm::WALK_SPEED * TICK + 1e-3,
        "it walked up to the water: {} vs {water_from}",
        p.pos.x
    );
}

// ---- resources -------------------------------------------------------------------------------------------------

#[test]
fn gathering_range_is_enforced() {
    let mut world = World::new();
    let a = world.connect(1);
    let tree = nearest_node(&world, "tree", world.player(a).pos);
    world.teleport(a, walkable_near(tree.pos, 10.0));
    let err = world.call(a, gm::gather::call(tree.id)).unwrap_err();
    assert!(
        err.starts_with("too far from the tree: 10.0 m away"),
        "{err}"
    );
    assert_eq!(world.holds(a, "wood"), 5, "a refusal changes nothing");
    world.teleport(a, walkable_near(tree.pos, 2.0));
    world.call(a, gm::gather::call(tree.id)).unwrap();
    assert_eq!(world.holds(a, "wood"), 6);
    let node = nearest_node(&world, "tree", tree.pos);
    assert_eq!((node.id, node.amount), (tree.id, tree.amount - 1));
    assert_eq!(world.player(a).xp, 2);
    // One gather per second.
    let err = world.call(a, gm::gather::call(tree.id)).unwrap_err();
    assert!(err.starts_with("you are busy"), "{err}");
}

#[test]
fn a_depleted_node_grows_back_and_ore_needs_a_pickaxe() {
    let mut world = World::new();
    let a = world.connect(1);
    let bush = nearest_node(&world, "berry_bush", world.player(a).pos);
    world.teleport(a, walkable_near(bush.pos, 1.5));
    for _ in 0..bush.amount {
        world.call(a, gm::gather::call(bush.id)).unwrap();
        world.wait(1.0);
    }
    assert_eq!(world.holds(a, "berries"), 2 * bush.amount);
    let err = world.call(a, gm::gather::call(bush.id)).unwrap_err();
    assert!(err.contains("depleted"), "{err}");
    world.wait(gm::content().resource("berry_bush").unwrap().respawn_secs as f32 + 1.0);
    world.call(a, gm::gather::call(bush.id)).unwrap();

    let vein = nearest_node(&world, "iron_vein", world.player(a).pos);
    world.teleport(a, walkable_near(vein.pos, 1.5));
    world.wait(1.0);
    let err = world.call(a, gm::gather::call(vein.id)).unwrap_err();
    assert_eq!(err, "you need a pickaxe for this iron_vein");
    world.give(a, "pickaxe", 1);
    world.call(a, gm::gather::call(vein.id)).unwrap();
    assert_eq!(world.holds(a, "iron_ore"), 1);
}

// ---- items -----------------------------------------------------------------------------------------------------

#[test]
fn crafting_is_atomic() {
    let mut world = World::new();
    let a = world.connect(1);
    // Missing inputs: refused, nothing taken.
    let err = world
        .call(a, gm::craft::call("stone_axe".into()))
        .unwrap_err();
    assert_eq!(err, "cannot craft Stone axe: you need 2 Stone but have 0");
    assert_eq!(world.inventory(a), [("wood".to_owned(), 5)]);
    // An output that does not fit (one pickaxe is the most one may carry): the craft takes its inputs first and
    // then fails, and the transaction gives them back.
    world.give(a, "stone", 10);
    world.give(a, "pickaxe", 1);
    let before = world.inventory(a);
    let err = world
        .call(a, gm::craft::call("pickaxe".into()))
        .unwrap_err();
    assert_eq!(
        err,
        "cannot craft Pickaxe: you cannot carry more than 1 Pickaxe (you have 1)"
    );
    assert_eq!(world.inventory(a), before, "no input lost");
    // A craft that can happen does, all of it.
    world.call(a, gm::craft::call("stone_axe".into())).unwrap();
    assert_eq!(
        world.inventory(a),
        [
            ("pickaxe".to_owned(), 1),
            ("stone".to_owned(), 8),
            ("stone_axe".to_owned(), 1),
            ("wood".to_owned(), 2)
        ]
    );
    let err = world
        .call(a, gm::craft::call("no_such_thing".into()))
        .unwrap_err();
    assert_eq!(err, "no recipe `no_such_thing`");
}

#[test]
fn inventories_are_private() {
    let mut world = World::new();
    let (a, b) = (world.connect(1), world.connect(2));
    world.watch(a, &["inventory_item"]);
    world.watch(b, &["inventory_item"]);
    world.give(a, "stone", 7);
    world.step(1);
    let a_sees: Vec<gm::InventoryItem> = world.seen(a, "inventory_item");
    let b_sees: Vec<gm::InventoryItem> = world.seen(b, "inventory_item");
    assert_eq!(a_sees.len(), 2, "wood and stone");
    assert!(a_sees.iter().all(|s| s.owner == a));
    assert_eq!(b_sees.len(), 1, "b's own wood only");
    assert!(b_sees.iter().all(|s| s.owner == b));
    // And nobody can spend another's items: every item reducer works on the caller's own inventory.
    let err = world
        .call(b, gm::drop_item::call("stone".into(), 1))
        .unwrap_err();
    assert_eq!(err, "you need 1 Stone but have 0");
    assert_eq!(world.holds(a, "stone"), 7);
}

#[test]
fn dropped_items_lie_in_the_world_until_picked_up_within_reach() {
    let mut world = World::new();
    let (a, b) = (world.connect(1), world.connect(2));
    let spot = world.player(a).pos;
    world
        .call(a, gm::drop_item::call("wood".into(), 2))
        .unwrap();
    assert_eq!(world.holds(a, "wood"), 3);
    let ground: Vec<gm::GroundItem> = world.rows("ground_item");
    assert_eq!(ground.len(), 1);
    assert_eq!(
        (ground[0].pos, ground[0].item.as_str(), ground[0].count),
        (spot, "wood", 2)
    );
    world.teleport(b, walkable_near(spot, 8.0));
    let err = world.call(b, gm::pick_up::call(ground[0].id)).unwrap_err();
    assert!(err.starts_with("too far from the Wood"), "{err}");
    world.teleport(b, walkable_near(spot, 1.0));
    world.call(b, gm::pick_up::call(ground[0].id)).unwrap();
    assert_eq!(world.holds(b, "wood"), 7);
    assert_eq!(world.count("ground_item"), 0);
    let err = world.call(b, gm::pick_up::call(ground[0].id)).unwrap_err();
    assert_eq!(err, "that item is gone");
}

// ---- chat ------------------------------------------------------------------------------------------------------

#[test]
fn a_whisper_reaches_only_its_two_parties() {
    let mut world = World::new();
    let (a, b, c) = (world.connect(1), world.connect(2), world.connect(3));
    // All three stand together, so proximity would not hide anything.
    let here = world.player(a).pos;
    world.teleport(b, walkable_near(here, 2.0));
    world.teleport(c, walkable_near(here, 3.0));
    for who in [a, b, c] {
        world.watch(who, &["whisper", "local_message"]);
    }
    world.call(b, gm::set_name::call("bea".into())).unwrap();
    world
        .call(
            a,
            gm::whisper::call("Bea".into(), "meet me at the tree".into()),
        )
        .unwrap();
    world.step(1);
    let for_a: Vec<gm::Whisper> = world.seen(a, "whisper");
    let for_b: Vec<gm::Whisper> = world.seen(b, "whisper");
    let for_c: Vec<gm::Whisper> = world.seen(c, "whisper");
    assert_eq!(for_a.len(), 1);
    assert_eq!(for_b.len(), 1);
    assert!(for_c.is_empty(), "a third party sees nothing: {for_c:?}");
    let a_name = world.player(a).name;
    for (w, owner) in [(&for_a[0], a), (&for_b[0], b)] {
        assert_eq!(w.owner, owner);
        assert_eq!((w.from.as_str(), w.to.as_str()), (a_name.as_str(), "bea"));
        assert_eq!(w.text, "meet me at the tree");
    }
    assert!(
        world
            .seen::<gm::LocalMessage>(c, "local_message")
            .is_empty()
    );
    let err = world
        .call(a, gm::whisper::call("nobody".into(), "hi".into()))
        .unwrap_err();
    assert_eq!(err, "no player is named `nobody`");
    let err = world
        .call(a, gm::whisper::call(a_name, "hi".into()))
        .unwrap_err();
    assert_eq!(err, "you cannot whisper to yourself");
}

#[test]
fn local_speech_is_heard_within_earshot_only_and_expires() {
    let mut world = World::new();
    let (a, b, c) = (world.connect(1), world.connect(2), world.connect(3));
    let here = world.player(a).pos;
    world.teleport(b, walkable_near(here, 30.0));
    world.teleport(c, walkable_near(here, 150.0));
    for who in [a, b, c] {
        world.watch(who, &["local_message", "global_message"]);
    }
    world
        .call(a, gm::say::call("  hello there  ".into()))
        .unwrap();
    world
        .call(c, gm::shout::call("anyone selling wood?".into()))
        .unwrap();
    world.step(1);
    for (who, hears) in [(a, true), (b, true), (c, false)] {
        let heard: Vec<gm::LocalMessage> = world.seen(who, "local_message");
        assert_eq!(heard.len(), usize::from(hears));
        if hears {
            assert_eq!(heard[0].text, "hello there");
            assert_eq!(heard[0].pos, here);
        }
        let global: Vec<gm::GlobalMessage> = world.seen(who, "global_message");
        assert_eq!(global.len(), 1, "everyone gets the global channel");
    }
    world.wait(gm::chat::LOCAL_MESSAGE_SECS as f32 + 1.5);
    assert_eq!(world.count("local_message"), 0);
    assert!(
        world
            .seen::<gm::LocalMessage>(b, "local_message")
            .is_empty()
    );
    assert_eq!(
        world.count("global_message"),
        1,
        "global messages last longer"
    );
    assert!(
        world.take_region_calls().is_empty(),
        "a world that is not split into regions keeps its global chat to itself"
    );
}

/// The texts of the `global_message` rows of `world`, sorted.
fn global_texts(world: &World) -> Vec<String> {
    let mut texts: Vec<String> = world
        .rows::<gm::GlobalMessage>("global_message")
        .into_iter()
        .map(|m| m.text)
        .collect();
    texts.sort();
    texts
}

#[test]
fn global_chat_reaches_every_region_once_and_only_regions_deliver_it() {
    let regions = [
        ("west", [0.0, 0.0, 2048.0, 4096.0]),
        ("east", [2048.0, 0.0, 4096.0, 4096.0]),
    ];
    let (mut west, mut east) = (World::new(), World::new());
    west.split_into_regions(&regions, "west");
    east.split_into_regions(&regions, "east");
    let (a, e) = (west.connect(1), east.connect(2));
    west.watch(a, &["global_message"]);
    east.watch(e, &["global_message"]);
    east.call(e, gm::shout::call("east here".into())).unwrap();
    west.call(a, gm::shout::call("anyone selling wood?".into()))
        .unwrap();
    // The sender's region has it at once, before any other region does.
    assert_eq!(global_texts(&west), ["anyone selling wood?"]);

    // Each shout is one call to every region, this one included, as the player who shouted.
    let from_west = west.take_region_calls();
    let from_east = east.take_region_calls();
    for (sent, who) in [(&from_west, a), (&from_east, e)] {
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, None, "to every region");
        assert_eq!(sent[0].reducer, "deliver_global");
        assert_eq!(sent[0].sender, who);
    }
    // The network delivers each call to both regions, exactly once each.
    for call in from_west.iter().chain(&from_east) {
        west.deliver(call).unwrap();
        east.deliver(call).unwrap();
    }
    west.step(1);
    east.step(1);
    let both = ["anyone selling wood?", "east here"];
    for (world, who) in [(&west, a), (&east, e)] {
        assert_eq!(global_texts(world), both, "once each, in every region");
        let mut seen: Vec<String> = world
            .seen::<gm::GlobalMessage>(who, "global_message")
            .into_iter()
            .map(|m| m.text)
            .collect();
        seen.sort();
        assert_eq!(seen, both, "and every client sees them");
    }
    // Each region keys its rows from its own range, the copies of the other's messages too.
    for (world, base) in [(&west, 1u64 << 40), (&east, 2 << 40)] {
        for m in world.rows::<gm::GlobalMessage>("global_message") {
            assert!((base..base + (1 << 40)).contains(&m.id), "{}", m.id);
        }
    }

    // A message that arrives after its time is up is dropped.
    west.call(a, gm::shout::call("late".into())).unwrap();
    let late = west.take_region_calls();
    east.step_by(3, gm::chat::GLOBAL_MESSAGE_SECS as f32 / 2.0);
    east.deliver(&late[0]).unwrap();
    assert!(!global_texts(&east).contains(&"late".to_owned()));

    // Clients cannot use the delivery to post around the checks and the rate limit.
    let now = west.now();
    let forged = gm::deliver_global::call(7, 7, "admin".into(), "free gold".into(), now, now);
    assert!(matches!(
        west.try_call(a, forged),
        Err(locus_testing::CallError::NotCallable { .. })
    ));
}

#[test]
fn chat_is_checked_and_rate_limited() {
    let mut world = World::new();
    let a = world.connect(1);
    for i in 0..5 {
        world.call(a, gm::say::call(format!("line {i}"))).unwrap();
    }
    let err = world.call(a, gm::say::call("one more".into())).unwrap_err();
    assert_eq!(err, "you are sending messages too fast; wait 2 s");
    assert_eq!(world.count("local_message"), 5);
    world.wait(2.0);
    world.call(a, gm::shout::call("again".into())).unwrap();
    let err = world.call(a, gm::say::call(" \n ".into())).unwrap_err();
    assert_eq!(err, "say something");
    let err = world.call(a, gm::say::call("x".repeat(201))).unwrap_err();
    assert!(err.contains("at most 200"), "{err}");
}

// ---- a world split into regions -------------------------------------------------------------------------------

/// The demo world split into four quarters, as `assets/regions/world.toml` splits it.
const QUARTERS: [(&str, [f32; 4]); 4] = [
    ("sw", [0.0, 0.0, 2048.0, 2048.0]),
    ("se", [2048.0, 0.0, 4096.0, 2048.0]),
    ("nw", [0.0, 2048.0, 2048.0, 4096.0]),
    ("ne", [2048.0, 2048.0, 4096.0, 4096.0]),
];

/// A new world that is region `own` of [`QUARTERS`], split before `init` as the server starts a region.
fn quarter(own: &str) -> World {
    World(locus_testing::World::new_region(
        locus_testing::module(env!("CARGO_MANIFEST_DIR")),
        &QUARTERS,
        own,
    ))
}

/// How many rows of each kind `rows` has (`kind` of a creature or resource node).
fn by_kind(kinds: impl Iterator<Item = String>) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for k in kinds {
        *n.entry(k).or_default() += 1;
    }
    n
}

#[test]
fn each_region_generates_only_its_own_part_of_the_world_and_its_share_of_the_content() {
    let whole = World::new();
    let whole_creatures = whole.count("creature");
    let whole_nodes = whole.count("resource_node");
    let whole_kinds = by_kind(
        whole
            .rows::<gm::Creature>("creature")
            .into_iter()
            .map(|c| c.kind),
    );
    let mut chunk_ids = Vec::new();
    let (mut creatures, mut nodes) = (0, 0);
    for (name, [x0, y0, x1, y1]) in QUARTERS {
        let region = quarter(name);
        let inside = |p: Vec2| x0 <= p.x && p.x < x1 && y0 <= p.y && p.y < y1;
        // The chunks whose centre is in the region: a quarter of the 128 × 128.
        let chunks = region.rows::<gm::Chunk>("chunk");
        assert_eq!(chunks.len(), 64 * 64, "{name}");
        assert!(chunks.iter().all(|c| inside(c.center)), "{name}");
        chunk_ids.extend(chunks.iter().map(|c| c.id));
        // Creatures and resource nodes inside it only, about a quarter of the whole world's of each kind.
        let here = region.rows::<gm::Creature>("creature");
        // (Where generation placed each creature is its home; it has not had a tick to wander off yet either.)
        assert!(here.iter().all(|c| inside(c.home)), "{name}");
        let spots = region.rows::<gm::ResourceNode>("resource_node");
        assert!(spots.iter().all(|n| inside(n.pos)), "{name}");
        let quarter_of = |n: usize| n as f64 / 4.0;
        for (what, n, whole_n) in [
            ("creatures", here.len(), whole_creatures),
            ("resource nodes", spots.len(), whole_nodes),
        ] {
            let ratio = n as f64 / quarter_of(whole_n);
            assert!(
                (0.8..=1.2).contains(&ratio),
                "{name}: {n} {what}, a whole world has {whole_n}"
            );
        }
        for (kind, n) in by_kind(here.iter().map(|c| c.kind.clone())) {
            let whole_n = whole_kinds[&kind];
            assert!(
                n as f64 <= quarter_of(whole_n) * 1.2 + 2.0,
                "{name}: {n} of {kind}, a whole world has {whole_n}"
            );
        }
        creatures += here.len();
        nodes += spots.len();
        // Keys from the region's own range, `init`'s too.
        let index = QUARTERS.iter().position(|(n, _)| *n == name).unwrap() as u64;
        assert!(here.iter().all(|c| c.id >> 40 == index + 1), "{name}");
    }
    // Together: every chunk once, and about the content of one whole world.
    chunk_ids.sort_unstable();
    chunk_ids.dedup();
    assert_eq!(chunk_ids.len(), 128 * 128);
    for (what, n, whole_n) in [
        ("creatures", creatures, whole_creatures),
        ("resource nodes", nodes, whole_nodes),
    ] {
        assert!(
            (n as f64 - whole_n as f64).abs() <= whole_n as f64 * 0.05,
            "the regions hold {n} {what}, a whole world {whole_n}"
        );
    }
}

#[test]
fn a_region_is_generated_the_same_way_every_time_and_players_still_spawn() {
    let (a, b) = (quarter("ne"), quarter("ne"));
    let positions = |w: &World| {
        let mut p: Vec<(u64, [f32; 2])> = w
            .rows::<gm::Creature>("creature")
            .into_iter()
            .map(|c| (c.id, c.pos.to_array()))
            .collect();
        p.sort_by_key(|(id, _)| *id);
        p
    };
    assert_eq!(positions(&a), positions(&b));
    assert_eq!(a.count("resource_node"), b.count("resource_node"));
    // A client may connect to any region: it gets a player near the spawn point (which the four regions share a
    // corner of), wherever that is; the engine hands the avatar over to the region that holds it.
    let mut a = a;
    let who = a.connect(1);
    let p = a.player(who);
    assert!(terrain::is_walkable(p.pos));
    let spawn = Vec2::from(gm::content().world.spawn.center);
    assert!(p.pos.distance(spawn) <= gm::content().world.spawn.radius + 1.0);
}

// ---- combat and creatures -------------------------------------------------------------------------------------

#[test]
fn attacks_need_range_and_a_ready_cooldown_and_provoke() {
    let mut world = World::new();
    let a = world.connect(1);
    let boar = nearest_creature(&world, "boar", world.player(a).pos);
    world.teleport(a, walkable_near(boar.pos, 10.0));
    let err = world.call(a, gm::attack::call(boar.id)).unwrap_err();
    assert!(
        err.starts_with("too far from the boar: 10.0 m away"),
        "{err}"
    );
    world.teleport(a, walkable_near(boar.pos, 2.0));
    world.call(a, gm::attack::call(boar.id)).unwrap();
    let hit = nearest_creature(&world, "boar", boar.pos);
    assert_eq!(hit.id, boar.id);
    assert_eq!(hit.hp, boar.hp - gm::combat::BASE_DAMAGE);
    let me = world.player(a).id;
    assert_eq!(
        hit.state,
        gm::CreatureState::Chase { prey: me },
        "a boar fights back"
    );
    let err = world.call(a, gm::attack::call(boar.id)).unwrap_err();
    assert!(err.starts_with("you are busy"), "{err}");
    world.step(gm::combat::ATTACK_COOLDOWN_MS as usize / 50);
    world.call(a, gm::attack::call(boar.id)).unwrap();
}

#[test]
fn a_creature_dies_drops_its_loot_and_respawns_at_home() {
    let mut world = World::new();
    let a = world.connect(1);
    world.give(a, "iron_sword", 1);
    let rabbit = nearest_creature(&world, "rabbit", world.player(a).pos);
    world.teleport(a, walkable_near(rabbit.pos, 1.5));
    world.call(a, gm::attack::call(rabbit.id)).unwrap();
    let creatures: Vec<gm::Creature> = world.rows("creature");
    assert!(creatures.iter().all(|c| c.id != rabbit.id), "dead");
    let loot: Vec<gm::GroundItem> = world.rows("ground_item");
    assert_eq!(loot.len(), 1);
    assert_eq!(
        (loot[0].item.as_str(), loot[0].pos),
        ("raw_meat", rabbit.pos)
    );
    assert_eq!(world.player(a).xp, 5);
    let count = creatures.len();
    let respawn = gm::content().creature("rabbit").unwrap().respawn_secs as f32;
    world.wait(respawn - 1.0);
    assert_eq!(world.count("creature"), count, "not yet");
    world.wait(1.5);
    let creatures: Vec<gm::Creature> = world.rows("creature");
    assert_eq!(creatures.len(), count + 1);
    let reborn = creatures.iter().max_by_key(|c| c.id).unwrap();
    assert_eq!(
        (reborn.kind.as_str(), reborn.home, reborn.hp),
        ("rabbit", rabbit.home, rabbit.hp)
    );
}

#[test]
fn hostile_creatures_chase_and_kill_players_who_respawn() {
    let mut world = World::new();
    let a = world.connect(1);
    let wolf = nearest_creature(&world, "wolf", world.player(a).pos);
    world.teleport(a, walkable_near(wolf.pos, 6.0));
    let me = world.player(a).id;
    // The wolf notices at its next decision (it was resting: nobody was near) and closes in.
    let state = |world: &World| {
        world
            .rows::<gm::Creature>("creature")
            .into_iter()
            .find(|c| c.id == wolf.id)
            .unwrap()
            .state
    };
    let mut ticks = 0;
    while state(&world) != (gm::CreatureState::Chase { prey: me }) {
        world.step(1);
        ticks += 1;
        assert!(
            ticks as u64 <= 2 * gm::creatures::DORMANT_TICKS,
            "the wolf never noticed"
        );
    }
    world.step(40);
    assert!(world.player(a).hp < 100, "bitten");
    // Standing still, the player dies, and respawns at full health near the spawn point five seconds later.
    let mut died = false;
    for _ in 0..60 {
        world.wait(1.0);
        if !world.player(a).is_alive() {
            died = true;
            break;
        }
    }
    assert!(died, "the wolf killed the player");
    let err = world.call(a, gm::move_to::call(0.0, 0.0)).unwrap_err();
    assert!(err.starts_with("you are dead"), "{err}");
    world.wait(gm::players::PLAYER_RESPAWN_SECS as f32 + 0.5);
    let p = world.player(a);
    assert_eq!(p.hp, 100);
    let spawn = gm::content().world.spawn;
    assert!(p.pos.distance(Vec2::from(spawn.center)) <= spawn.radius + 0.01);
}

#[test]
fn admin_reducers_refuse_clients() {
    let mut world = World::new();
    let a = world.connect(1);
    let id = world.player(a).id;
    let err = world
        .call(a, gm::admin::admin_give::call(id, "iron_sword".into(), 1))
        .unwrap_err();
    assert_eq!(err, "only the server may call admin reducers");
    let err = world
        .call(a, gm::admin::admin_spawn_creatures::call(10))
        .unwrap_err();
    assert_eq!(err, "only the server may call admin reducers");
    let before = world.count("creature");
    world
        .call(Identity::SERVER, gm::admin::admin_spawn_creatures::call(10))
        .unwrap();
    assert!(world.count("creature") > before);
}
