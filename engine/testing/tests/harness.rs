//! The harness against the host's test module (`locus-test-module`, `engine/host/test-module`): what a failing
//! call shows, the clock, scheduling, and the interest stage's views.

use std::path::Path;

use locus_test_module as tm;
use locus_testing::{CallError, Identity, World, module};

fn test_module() -> &'static locus_testing::Module {
    module(Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/test-module"))
}

/// The counter `name` of the test module.
fn counter(world: &World, name: &str) -> Option<i64> {
    world
        .rows::<tm::Counter>("counter")
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.value)
}

#[test]
fn a_panicking_reducer_fails_the_test_with_its_message_and_location() {
    let mut world = World::new(test_module());
    let who = world.connect(1);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = world.call(who, tm::panic_after_write::call("boom".into()));
    }))
    .expect_err("the harness fails the test");
    let text = panicked
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(text.contains("deliberate panic: boom"), "{text}");
    assert!(
        text.contains("test-module/src/lib.rs:"),
        "the location: {text}"
    );
    assert!(
        !text.contains("wasm backtrace") && !text.contains("_ZN"),
        "{text}"
    );
    // try_call returns it; the write before the panic was rolled back.
    let events = world.count("event_log");
    match world.try_call(who, tm::panic_after_write::call("again".into())) {
        Err(CallError::Panicked {
            message, location, ..
        }) => {
            assert_eq!(message, "deliberate panic: again");
            assert!(location.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(world.count("event_log"), events, "rolled back");
}

#[test]
fn calls_return_the_reducers_own_error_and_write_nothing() {
    let mut world = World::new(test_module());
    let who = world.connect(1);
    let err = world
        .call(who, tm::rename::call(999, "x".into()))
        .unwrap_err();
    assert_eq!(err, "no player 999");
    assert!(matches!(
        world.try_call(
            who,
            locus_testing::ReducerCall::new("no_such_reducer", vec![0x90])
        ),
        Err(CallError::NoSuchReducer(_))
    ));
}

#[test]
fn the_clock_runs_ticks_and_schedules_only_when_stepped() {
    let mut world = World::new(test_module());
    assert_eq!(counter(&world, "init"), Some(1));
    let ticks = counter(&world, "ticks").unwrap_or(0);
    let start = world.now();
    world.step(10);
    assert_eq!(counter(&world, "ticks"), Some(ticks + 10));
    assert_eq!(world.now().0 - start.0, 500_000, "10 ticks of 50 ms");
    // A ping scheduled 1 s ahead runs once the clock passes it, not before.
    world
        .call(Identity::SERVER, tm::schedule_ping::call(1000, "hi".into()))
        .unwrap();
    world.step(19);
    assert_eq!(counter(&world, "pings"), None);
    world.step(2);
    assert_eq!(counter(&world, "pings"), Some(1));
}

#[test]
fn a_watcher_sees_its_own_rows_through_the_interest_stage() {
    let mut world = World::new(test_module());
    let a = world.connect(1);
    let b = world.connect(2);
    world
        .call(a, tm::spawn::call("ada".into(), 0.0, 0.0, 1))
        .unwrap();
    world
        .call(b, tm::spawn::call("bob".into(), 5.0, 0.0, 1))
        .unwrap();
    // Ada's area: 64 m around the point (0, 0); Bob, 5 m away, is in it, but his row is his own.
    let ada = world.rows::<tm::Player>("player")[0].id;
    world.call(a, tm::follow::call(ada, 64.0, 72.0)).unwrap();
    world.watch(a, &["player"]);
    world.step(1);
    // `player` has an owner column: a client is sent its own rows only.
    let seen = world.seen::<tm::Player>(a, "player");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].name, "ada");
    assert_eq!(world.count("player"), 2);
}

/// The test module's `event_log`, in order.
fn events(world: &World) -> Vec<String> {
    let mut e: Vec<tm::EventLog> = world.rows("event_log");
    e.sort_by_key(|e| e.id);
    e.into_iter().map(|e| e.text).collect()
}

/// Two regions, the halves of a 4096 m world.
const WEST_EAST: [(&str, [f32; 4]); 2] = [
    ("west", [0.0, 0.0, 2048.0, 4096.0]),
    ("east", [2048.0, 0.0, 4096.0, 4096.0]),
];

#[test]
fn split_worlds_exchange_calls_through_the_test() {
    let regions = WEST_EAST;
    let mut west = World::new(test_module());
    let mut east = World::new(test_module());
    // Not split yet: the module is told so, and nothing is sent.
    let ada = west.connect(1);
    assert_eq!(
        west.call(ada, tm::broadcast_note::call("early".into())),
        Err("this world is not split into regions".into())
    );
    assert!(west.take_region_calls().is_empty());

    west.split_into_regions(&regions, "west");
    east.split_into_regions(&regions, "east");
    west.call(ada, tm::send_note::call("east".into(), "hi".into()))
        .unwrap();
    west.call(ada, tm::broadcast_note::call("all".into()))
        .unwrap();
    let sent = west.take_region_calls();
    assert!(west.take_region_calls().is_empty(), "taken");
    let note = |to: Option<&str>, text: &str| locus_testing::SentCall {
        to: to.map(str::to_owned),
        reducer: "region_note".into(),
        args: tm::region_note::call(text.into()).into_call().args,
        sender: ada,
    };
    assert_eq!(sent, [note(Some("east"), "hi"), note(None, "all")]);
    for (name, world) in [("west", &mut west), ("east", &mut east)] {
        for call in sent.iter().filter(|c| c.reaches(name)) {
            world.deliver(call).unwrap();
        }
    }
    let from = |text: &str| format!("region_note {text} from {ada}");
    assert_eq!(events(&east), ["init", &from("hi"), &from("all")]);
    assert_eq!(
        events(&west),
        [
            "init",
            &format!("connected {ada}"),
            "send_note east hi",
            "broadcast_note all",
            &from("all")
        ]
    );
    // A region reducer is no client's to call.
    assert!(matches!(
        east.try_call(ada, tm::region_note::call("x".into())),
        Err(CallError::NotCallable { .. })
    ));
    // Each region gives out keys from its own range.
    east.call(ada, tm::spawn::call("eve".into(), 0.0, 0.0, 1))
        .unwrap();
    let eve: Vec<tm::Player> = east.rows("player");
    assert_eq!(eve[0].id, 2 << 40);
}

#[test]
fn a_new_region_knows_its_region_from_init_on_and_a_whole_world_has_none() {
    let mut east = World::new_region(test_module(), &WEST_EAST, "east");
    let mut whole = World::new(test_module());
    let ada = east.connect(1);
    east.call(ada, tm::where_am_i::call()).unwrap();
    whole.call(ada, tm::where_am_i::call()).unwrap();
    assert_eq!(
        events(&east),
        [
            "init".to_owned(),
            format!("connected {ada}"),
            "where_am_i east#1 2048,0..4096,4096 / west,east*".to_owned()
        ]
    );
    assert_eq!(events(&whole).last().unwrap(), "where_am_i none / ");
    // Split before `init`: the keys `init` made are the region's already.
    let log: Vec<tm::EventLog> = east.rows("event_log");
    assert!(log.iter().all(|e| e.id >> 40 == 2), "{log:?}");
    east.call(ada, tm::spawn::call("eve".into(), 3000.0, 10.0, 1))
        .unwrap();
    assert_eq!(east.rows::<tm::Player>("player")[0].id, 2 << 40);
}
