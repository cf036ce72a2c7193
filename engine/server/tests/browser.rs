//! The client SDK's own browser tests (`engine/client/tests/web.rs`, under `wasm-bindgen-test`) in headless
//! Chromium, against a real server started here (the demo module, WebTransport on its QUIC port).
//!
//! This test builds them for `wasm32-unknown-unknown` with cargo (its own `--target-dir`, `target/web-sdk`: the
//! outer cargo holds the lock on `target/`), naming the server's WebTransport URL and certificate hashes in
//! `LOCUS_WEB_URL` and `LOCUS_WEB_HASHES`, and runs them with `wasm-bindgen-test-runner` (installed into
//! `target/tools` on first use, `locus_host::web_build::ensure_wasm_bindgen`) driving Debian's `chromium` through
//! `chromedriver`. Without `chromium` and `chromedriver` it is skipped with a loud message, unless
//! `LOCUS_REQUIRE_BROWSER` is set (CI sets it), when it fails (`locus_host::web_build::Browser::find_or_skip`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

#[expect(dead_code, reason = "the helpers this file does not use")]
mod common;

use std::time::Instant;

use common::{DEMO, WAIT, workspace};
use game_module as gm;
use locus_client::{CallOutcome, Client, ClientConfig, Event, Filter, Trust};
use locus_host::Budget;
use locus_server::{Server, ServerConfig, cert};

/// A line on the real stderr, past the harness's capture.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The calls each measurement makes (as the browser's, `engine/client/tests/web.rs`).
const MEASURED_CALLS: usize = 100;

fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The browser test `measure_round_trip_and_update_latency` with native clients (QUIC, the blocking `Client`):
/// a `move_to` call until its `Result` (round trip) and until a second client 5 m away sees the mover's row change
/// (update latency). Polls every millisecond.
fn measure_native(server: &Server) -> String {
    let config = ClientConfig::new(
        server.local_addr(),
        Trust::Fingerprint(server.fingerprint()),
    );
    let mut mover = Client::connect(config.clone()).expect("connect");
    let mut watcher = Client::connect(config).expect("connect");
    let me = mover.identity();
    mover.subscribe("player", Filter::All).unwrap();
    watcher.subscribe("player", Filter::All).unwrap();
    let row = |client: &Client| {
        client
            .cache()
            .rows::<gm::Player>("player")
            .unwrap()
            .into_iter()
            .find(|p| p.identity == me)
    };
    let started = Instant::now();
    let start = loop {
        let _ = mover.poll();
        if let Some(p) = row(&mover) {
            break p.pos;
        }
        assert!(started.elapsed() < WAIT, "the mover's row never came");
        std::thread::sleep(Duration::from_millis(1));
    };
    watcher
        .call(&gm::teleport::call(start.x + 5.0, start.y))
        .unwrap();
    while row(&watcher).is_none() {
        let _ = watcher.poll();
        assert!(started.elapsed() < WAIT, "the watcher never saw the mover");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (mut round_trips, mut updates) = (Vec::new(), Vec::new());
    for i in 0..MEASURED_CALLS {
        let x = start.x + if i % 2 == 0 { 2.0 } else { -2.0 };
        let sent = Instant::now();
        let request = mover.call(&gm::move_to::call(x, start.y)).unwrap();
        let (mut answered, mut seen) = (None, None);
        while answered.is_none() || seen.is_none() {
            for event in mover.poll() {
                if matches!(&event, Event::CallResult { request: r, outcome, .. } if *r == request && *outcome == CallOutcome::Ok)
                {
                    answered.get_or_insert_with(|| sent.elapsed());
                }
            }
            let _ = watcher.poll();
            if row(&watcher).is_some_and(|p| (p.target.x - x).abs() < 0.5) {
                seen.get_or_insert_with(|| sent.elapsed());
            }
            assert!(sent.elapsed() < WAIT, "call {i} not answered and seen");
            std::thread::sleep(Duration::from_millis(1));
        }
        round_trips.push(answered.unwrap().as_secs_f64() * 1e3);
        updates.push(seen.unwrap().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis((i as u64 * 37) % 50));
    }
    round_trips.sort_by(f64::total_cmp);
    updates.sort_by(f64::total_cmp);
    format!(
        "MEASURED native ({MEASURED_CALLS} calls): round trip p50 {:.1} ms p99 {:.1} ms; update latency p50 {:.1} ms p99 {:.1} ms",
        quantile(&round_trips, 0.5),
        quantile(&round_trips, 0.99),
        quantile(&updates, 0.5),
        quantile(&updates, 0.99)
    )
}

#[test]
fn the_sdk_passes_its_browser_tests_in_headless_chromium() {
    let Some(browser) = locus_host::web_build::Browser::find_or_skip("the SDK's browser tests")
    else {
        return;
    };
    let (chromium, chromedriver) = (browser.chromium, browser.chromedriver);
    let ws = workspace();
    locus_host::build::ensure_wasm_target(&ws).unwrap_or_else(|e| panic!("{e}"));
    let tools = locus_host::web_build::ensure_wasm_bindgen(&ws, &ws.join("target/tools"))
        .unwrap_or_else(|e| panic!("{e}"));

    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(DEMO.clone());
    config.data_dir = dir.path().join("world");
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // Generating the world in an unoptimised test build takes longer than the default budget per call.
    config.host.budget = Budget::Time(Duration::from_secs(30));
    let server = Server::start(config).expect("the server starts");
    let url = format!("https://127.0.0.1:{}/locus", server.local_addr().port());
    let hashes: Vec<String> = server
        .web_certificate_hashes()
        .iter()
        .map(|h| cert::hex(h))
        .collect();

    // The browser's options (merged by the runner with its own: headless, no sandbox).
    let profile = tempfile::tempdir().unwrap();
    let webdriver_json = dir.path().join("webdriver.json");
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        },
    });
    std::fs::write(&webdriver_json, capabilities.to_string()).unwrap();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(&ws)
        .args([
            "test",
            "--locked",
            "-p",
            "locus-client",
            "--target",
            locus_host::build::WASM_TARGET,
            "--test",
            "web",
            "--target-dir",
        ])
        .arg(ws.join("target/web-sdk"))
        // The runner prints what the page logged (the measurement) only with this.
        .args(["--", "--nocapture"])
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            tools.join("wasm-bindgen-test-runner"),
        )
        .env("CHROMEDRIVER", &chromedriver)
        .env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", &webdriver_json)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "180")
        .env("LOCUS_WEB_URL", &url)
        .env("LOCUS_WEB_HASHES", hashes.join(","))
        // Flags meant for the outer (native) build must not reach the wasm build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("cargo runs");
    let log = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    say(&log);
    assert!(
        output.status.success(),
        "the SDK's browser tests failed: {}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let passed = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("test result: ok. ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse::<u32>().ok())
        })
        .unwrap_or_else(|| panic!("no test result in the output\n{log}"));
    assert!(passed >= 3, "only {passed} browser tests ran");
    // The browser's figures (printed by its measurement) beside the native ones, against the same server.
    if let Some(line) = stdout.lines().find(|l| l.contains("MEASURED browser")) {
        say(line.trim());
    }
    say(&measure_native(&server));
    server.shutdown();
}
