//! {{name}}'s rules, tested against the real module: built to wasm and run by the engine's host, a fresh world per
//! test, with a manual clock (`locus-testing`).

use locus_testing::{Identity, World, module};
use {{crate}}::{Player, SPEED, VIEW_ENTER, Vec2, walk};

fn new_world() -> World {
    World::new(module(env!("CARGO_MANIFEST_DIR")))
}

fn player(world: &World, who: Identity) -> Player {
    world
        .rows::<Player>("player")
        .into_iter()
        .find(|p| p.identity == who)
        .expect("a player")
}

#[test]
fn a_new_client_gets_a_player_that_walks_at_its_speed() {
    let mut world = new_world();
    let ada = world.connect(1);
    assert_eq!(player(&world, ada).pos, Vec2::ZERO);
    world.call(ada, walk::call(3.0, 4.0)).unwrap();
    world.step(20); // one second at 20 ticks a second
    let pos = player(&world, ada).pos;
    assert!((pos.length() - SPEED).abs() < 1e-3, "{pos}");
    world.call(ada, walk::call(0.0, 0.0)).unwrap();
    world.step(20);
    assert_eq!(player(&world, ada).pos, pos, "stopped");
    // Reconnecting keeps the player.
    world.disconnect(ada);
    world.connect(1);
    assert_eq!(world.count("player"), 1);
}

#[test]
fn bad_directions_are_refused_and_change_nothing() {
    let mut world = new_world();
    let ada = world.connect(1);
    let err = world.call(ada, walk::call(f32::NAN, 0.0)).unwrap_err();
    assert_eq!(err, "the direction must be finite numbers");
    assert!(!player(&world, ada).moving);
    // Nobody without a player may walk.
    let ghost = locus_testing::identity(9);
    assert_eq!(
        world.call(ghost, walk::call(1.0, 0.0)),
        Err("you have no player".to_owned())
    );
}

#[test]
fn a_client_sees_players_near_it_only() {
    let mut world = new_world();
    let ada = world.connect(1);
    let bob = world.connect(2);
    world.watch(ada, &["player"]);
    world.step(1);
    assert_eq!(world.seen::<Player>(ada, "player").len(), 2, "both stand at the origin");
    // Bob walks away: once he is beyond the view's leave radius, Ada's client is told to drop him.
    world.call(bob, walk::call(1.0, 0.0)).unwrap();
    world.wait((VIEW_ENTER + 20.0) / SPEED);
    let seen = world.seen::<Player>(ada, "player");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].identity, ada);
}
