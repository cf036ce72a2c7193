//! End to end, headless: a real server (in this process, running the demo module built to wasm) and the real
//! `client-demo` binary under `xvfb-run` (bevy rendering through Vulkan on llvmpipe), which enters the world as
//! `Ada`, saves a screenshot and dumps its client cache; then the screenshot must show the world (terrain colours
//! dominate, the own avatar at the centre) and the cache the expected rows.
//!
//! The screenshot is kept at `target/client-demo-screenshot.png` (CI keeps it as an artifact). Without
//! `xvfb-run` the test is skipped with a loud message, unless `LOCUS_REQUIRE_HEADLESS` is set (CI sets it), when
//! it fails.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

/// How long the client may take beyond its run before it is killed (slow software rendering, a cold shader cache).
const GRACE: Duration = Duration::from_secs(90);

use client_demo::palette::screenshot_stats;
use common::{find_in_path, say, start_server, target_dir, wait_for_world};
use game_module::Vec2;
use game_module::terrain::CHUNK_SIZE;
use locus_client::fingerprint_hex;

/// How long the client runs.
const CLIENT_SECS: u32 = 25;

#[test]
fn the_client_shows_the_world_around_its_avatar() {
    let required = common::required("LOCUS_REQUIRE_HEADLESS");
    let Some(xvfb_run) = find_in_path("xvfb-run") else {
        assert!(
            !required,
            "LOCUS_REQUIRE_HEADLESS is set but `xvfb-run` is not installed \
             (apt-get install xvfb mesa-vulkan-drivers libvulkan1 libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6 libx11-xcb1)"
        );
        say(
            "\n\n*** SKIPPED client-demo headless test: `xvfb-run` is not installed. ***\n\
             *** Install xvfb and mesa-vulkan-drivers, or set LOCUS_REQUIRE_HEADLESS=1 to make this a failure. ***\n\n",
        );
        return;
    };

    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("world"), None);
    let place = wait_for_world(&server);
    let screenshot = target_dir().join("client-demo-screenshot.png");
    let _ = std::fs::remove_file(&screenshot);
    let dump = target_dir().join("client-demo-cache.json");
    let _ = std::fs::remove_file(&dump);
    let token = dir.path().join("ada.token");

    let started = Instant::now();
    let mut child = Command::new(xvfb_run)
        .args(["-a", "-s", "-screen 0 1280x720x24"])
        .arg(env!("CARGO_BIN_EXE_client-demo"))
        .arg("--server")
        .arg(server.local_addr().to_string())
        .arg("--fingerprint")
        .arg(fingerprint_hex(&server.fingerprint()))
        .args(["--name", "Ada", "--width", "1280", "--height", "720"])
        .arg("--token-file")
        .arg(&token)
        .arg("--screenshot")
        .arg(&screenshot)
        .arg("--exit-after-secs")
        .arg(CLIENT_SECS.to_string())
        .arg("--teleport")
        .arg(format!("{},{}", place.x, place.y))
        .arg("--dump-cache")
        .arg(&dump)
        .env("RUST_LOG", "info,wgpu=error,naga=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xvfb-run starts");
    let deadline = Duration::from_secs(u64::from(CLIENT_SECS)) + GRACE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let log = format!(
        "client stdout:\n{}\nclient stderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let status = status.unwrap_or_else(|| panic!("the client did not exit in {deadline:?}\n{log}"));
    assert!(status.success(), "the client failed: {status}\n{log}");
    say(&format!(
        "client-demo screenshot: {} (client ran {:.1} s)",
        screenshot.display(),
        started.elapsed().as_secs_f64()
    ));

    // The picture: the world, with Ada in the middle.
    let image = image::open(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{log}", screenshot.display()))
        .to_rgb8();
    let (width, height) = image.dimensions();
    assert!(width >= 640 && height >= 360, "{width}×{height}");
    let stats = screenshot_stats(image.as_raw(), width, height);
    say(&format!("screenshot {width}×{height}: {stats:?}"));
    assert!(
        stats.terrain_share > 0.5,
        "terrain colours should dominate the screenshot: {stats:?}"
    );
    assert!(
        stats.self_pixels_at_center > 40,
        "the own avatar (orange) should be at the centre: {stats:?}"
    );

    // The cache: Ada's row, named, and the chunks around her.
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&dump).unwrap_or_else(|e| panic!("no cache dump: {e}\n{log}")),
    )
    .unwrap();
    assert_eq!(json["connected"], true, "{log}");
    let me = &json["me"];
    assert_eq!(me["name"], "ada", "{me}");
    let pos = [
        me["pos"][0].as_f64().unwrap() as f32,
        me["pos"][1].as_f64().unwrap() as f32,
    ];
    assert!(
        Vec2::new(pos[0], pos[1]).distance(place) < 1.0,
        "Ada should stand where she teleported to, {place}: {pos:?}"
    );
    let nodes = json["resource_nodes"].as_array().unwrap().len();
    say(&format!("Ada at {pos:?} sees {nodes} resource nodes"));
    let chunks = json["chunks"].as_array().unwrap();
    assert!(chunks.len() >= 9, "{} chunks", chunks.len());
    let centres: Vec<[f32; 2]> = chunks
        .iter()
        .map(|c| {
            [
                c["center"][0].as_f64().unwrap() as f32,
                c["center"][1].as_f64().unwrap() as f32,
            ]
        })
        .collect();
    // The chunk under her and its eight neighbours.
    for dy in [-1.0, 0.0, 1.0] {
        for dx in [-1.0, 0.0, 1.0] {
            let p = [pos[0] + dx * CHUNK_SIZE, pos[1] + dy * CHUNK_SIZE];
            let holds = centres.iter().any(|c| {
                (p[0] - c[0]).abs() <= CHUNK_SIZE / 2.0 && (p[1] - c[1]).abs() <= CHUNK_SIZE / 2.0
            });
            assert!(holds, "no chunk holds {p:?} (Ada at {pos:?})");
        }
    }
    assert!(
        chunks
            .iter()
            .all(|c| c["tiles"].as_array().is_some_and(|t| t.len() == 64))
    );
    assert!(!json["recipes"].as_array().unwrap().is_empty());
    assert!(
        json["inventory"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["item"] == "wood"),
        "new players carry wood: {}",
        json["inventory"]
    );
    // The identity persisted.
    assert!(token.is_file(), "the token file was written");
    server.shutdown();
}
