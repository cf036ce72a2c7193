//! The SDK in a browser, against a running `locus serve` with the demo module (`game-module`), over WebTransport.
//!
//! Run by `wasm-bindgen-test` in a headless browser (`cargo test -p locus-client --target wasm32-unknown-unknown`
//! with `wasm-bindgen-test-runner` as the target's runner). The server is found through two variables read when
//! the tests are compiled:
//! - `LOCUS_WEB_URL`: the session's URL, `https://HOST:PORT/locus` (`url` in the server's `/locus.json`);
//! - `LOCUS_WEB_HASHES`: the SHA-256 hashes of the server's web certificates, 64 hex digits each, separated by
//!   commas (`certificate_hashes` in `/locus.json`); empty when the server has a certificate from an authority.
//!
//! Without `LOCUS_WEB_URL` every test fails, naming it. The tests use the demo module's public `player` table
//! (its row type and typed calls come from `game-module`, built as a client library: its `client` feature)
//! and its `move_to` reducer; each uses its own `localStorage` key, cleared first, so each starts as a new player.

#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use game_module::Player;
use locus_client::{
    CallOutcome, Client, ClientConfig, ConnectError, Event, Filter, Identity, Token,
    WebTransportConfig,
};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_time::Instant;

wasm_bindgen_test_configure!(run_in_browser);

/// How long a test waits for what the server should send.
const WAIT: Duration = Duration::from_secs(10);

fn web_target() -> WebTransportConfig {
    let Some(url) = option_env!("LOCUS_WEB_URL") else {
        panic!(
            "compile the browser tests with LOCUS_WEB_URL (and LOCUS_WEB_HASHES) naming a running `locus serve`"
        );
    };
    WebTransportConfig::parse(url, option_env!("LOCUS_WEB_HASHES").unwrap_or(""))
        .expect("LOCUS_WEB_URL is an https URL and LOCUS_WEB_HASHES a list of SHA-256 hashes")
}

/// A config keeping its token under `key`, which starts empty.
fn config(key: &str) -> ClientConfig {
    let storage = local_storage();
    storage.remove_item(key).unwrap();
    let mut config = ClientConfig::web_transport(web_target());
    config.token_key = Some(key.to_owned());
    config.connect_timeout = WAIT;
    config
}

fn local_storage() -> web_sys::Storage {
    js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("localStorage"))
        .unwrap()
        .dyn_into()
        .unwrap()
}

/// Wait `duration` on the page's event loop.
async fn sleep(duration: Duration) {
    let millis = duration.as_millis() as i32;
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        let set_timeout: js_sys::Function =
            js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout"))
                .unwrap()
                .dyn_into()
                .unwrap();
        set_timeout
            .call2(&global, &resolve, &JsValue::from(millis))
            .unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
}

/// Poll every 10 ms until an event satisfies `done`; every event polled.
async fn poll_until(client: &mut Client, done: impl Fn(&Event) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + WAIT;
    let mut all = Vec::new();
    loop {
        let events = client.poll();
        let finished = events.iter().any(&done);
        all.extend(events);
        if finished {
            return all;
        }
        assert!(Instant::now() < deadline, "timed out; events: {all:?}");
        sleep(Duration::from_millis(10)).await;
    }
}

/// The player row of `identity` in an insert or update event.
fn player_of(event: &Event, identity: Identity) -> Option<Player> {
    let row = match event {
        Event::Inserted { name, row, .. } if &**name == "player" => row,
        Event::Updated { name, new, .. } if &**name == "player" => new,
        _ => return None,
    };
    let player: Player = rmp_serde::from_slice(row).expect("a demo player row");
    (player.identity == identity).then_some(player)
}

#[wasm_bindgen_test]
async fn connects_subscribes_calls_and_receives_ticks() {
    let key = "locus-test-play";
    let mut client = Client::connect_async(config(key)).await.expect("connect");
    let identity = client.identity();
    let events = client.poll();
    assert!(
        matches!(events.first(), Some(Event::Connected { identity: i, .. }) if *i == identity),
        "{events:?}"
    );
    // The new token was kept under the key.
    let stored = local_storage()
        .get_item(key)
        .unwrap()
        .expect("a stored token");
    assert_eq!(Token::from_hex(&stored), Some(client.welcome().token));

    // Subscribing brings this client's player in a Tick.
    client.subscribe("player", Filter::All).unwrap();
    let events = poll_until(&mut client, |e| player_of(e, identity).is_some()).await;
    assert!(events.iter().any(|e| matches!(e, Event::Subscribed { .. })));
    let me = events.iter().find_map(|e| player_of(e, identity)).unwrap();
    assert!(me.online);
    assert_eq!(
        client
            .cache()
            .rows::<Player>("player")
            .unwrap()
            .iter()
            .filter(|p| p.identity == identity)
            .count(),
        1
    );

    // A typed call: answered with its request id, and the row changes in a later Tick.
    let request = client
        .call(&game_module::move_to::call(me.pos.x + 3.0, me.pos.y))
        .expect("call");
    let events = poll_until(
        &mut client,
        |e| matches!(e, Event::CallResult { request: r, .. } if *r == request),
    )
    .await;
    let outcome = events
        .iter()
        .find_map(|e| match e {
            Event::CallResult {
                request: r,
                outcome,
                ..
            } if *r == request => Some(outcome.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(outcome, CallOutcome::Ok);
    poll_until(&mut client, |e| {
        player_of(e, identity).is_some_and(|p| p.pos != me.pos || p.target != me.target)
    })
    .await;
    assert!(client.is_connected());
}

#[wasm_bindgen_test]
async fn the_stored_token_keeps_the_identity_across_connects_and_reconnects() {
    let key = "locus-test-token";
    let config = config(key);
    let first = Client::connect_async(config.clone())
        .await
        .expect("connect");
    let identity = first.identity();
    drop(first);
    // A new client with the same key: the token comes from localStorage.
    let mut second = Client::connect_async(config).await.expect("connect again");
    assert_eq!(second.identity(), identity, "the identity is restored");

    // Reconnecting keeps the identity and the subscriptions, and refills the cache.
    second.subscribe("player", Filter::All).unwrap();
    poll_until(&mut second, |e| player_of(e, identity).is_some()).await;
    second.reconnect().await.expect("reconnect");
    assert!(second.is_connected());
    let events = poll_until(&mut second, |e| {
        matches!(e, Event::Inserted { .. }) && player_of(e, identity).is_some()
    })
    .await;
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    let connected = kinds.iter().position(|k| *k == "connected").unwrap();
    assert!(
        kinds[..connected].iter().all(|k| *k == "deleted"),
        "the old view leaves first: {kinds:?}"
    );
    assert_eq!(second.identity(), identity);
}

#[wasm_bindgen_test]
async fn a_certificate_hash_that_is_not_the_servers_is_refused() {
    let mut target = web_target();
    if target.certificate_hashes.is_empty() {
        // A certificate from an authority: there is no hash to get wrong.
        return;
    }
    target.certificate_hashes = vec![[0x5a; 32]];
    let mut config = ClientConfig::web_transport(target);
    config.connect_timeout = WAIT;
    let err = Client::connect_async(config).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::WebTransport(_) | ConnectError::Timeout(_)
        ),
        "{err:?}"
    );
}

/// Calls [`measure_round_trip_and_update_latency`] makes.
const MEASURED_CALLS: usize = 100;

/// The `p`-quantile of `sorted` (milliseconds).
fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Not a check but a measurement, printed: the reducer round trip (a `move_to` call until its `Result`) and the
/// update latency (the same call until a second client of the page sees the mover's row change), from the
/// browser. `engine/server/tests/browser.rs` measures the same with native clients against the same server and
/// prints both. Both poll as fast as their platform lets them (here `setTimeout`, whose delay browsers clamp to
/// 4 ms after a few nested calls; natively every millisecond).
#[wasm_bindgen_test]
async fn measure_round_trip_and_update_latency() {
    let mut mover = Client::connect_async(config("locus-measure-mover"))
        .await
        .expect("connect");
    let mut watcher = Client::connect_async(config("locus-measure-watcher"))
        .await
        .expect("connect");
    let me = mover.identity();
    mover.subscribe("player", Filter::All).unwrap();
    watcher.subscribe("player", Filter::All).unwrap();
    let events = poll_until(&mut mover, |e| player_of(e, me).is_some()).await;
    let start = events.iter().find_map(|e| player_of(e, me)).unwrap().pos;
    // The watcher stands 5 m from the mover.
    watcher
        .call(&game_module::teleport::call(start.x + 5.0, start.y))
        .unwrap();
    poll_until(&mut watcher, |e| player_of(e, me).is_some()).await;
    let (mut round_trips, mut updates) = (Vec::new(), Vec::new());
    for i in 0..MEASURED_CALLS {
        // Alternate between two targets 2 m apart, so every call changes the row.
        let target = [start.x + if i % 2 == 0 { 2.0 } else { -2.0 }, start.y];
        let sent = Instant::now();
        let request = mover
            .call(&game_module::move_to::call(target[0], target[1]))
            .unwrap();
        let (mut answered, mut seen) = (None, None);
        let deadline = sent + WAIT;
        while answered.is_none() || seen.is_none() {
            for event in mover.poll() {
                if matches!(&event, Event::CallResult { request: r, outcome, .. } if *r == request && *outcome == CallOutcome::Ok)
                {
                    answered.get_or_insert_with(|| sent.elapsed());
                }
            }
            for event in watcher.poll() {
                // Near the target asked for (the server may move it onto walkable ground).
                if player_of(&event, me).is_some_and(|p| (p.target.x - target[0]).abs() < 0.5) {
                    seen.get_or_insert_with(|| sent.elapsed());
                }
            }
            assert!(Instant::now() < deadline, "call {i} not answered and seen");
            sleep(Duration::from_millis(1)).await;
        }
        round_trips.push(answered.unwrap().as_secs_f64() * 1e3);
        updates.push(seen.unwrap().as_secs_f64() * 1e3);
        sleep(Duration::from_millis((i as u64 * 37) % 50)).await;
    }
    round_trips.sort_by(f64::total_cmp);
    updates.sort_by(f64::total_cmp);
    wasm_bindgen_test::console_log!(
        "MEASURED browser ({MEASURED_CALLS} calls): round trip p50 {:.1} ms p99 {:.1} ms; update latency p50 {:.1} ms p99 {:.1} ms",
        quantile(&round_trips, 0.5),
        quantile(&round_trips, 0.99),
        quantile(&updates, 0.5),
        quantile(&updates, 0.99)
    );
}
