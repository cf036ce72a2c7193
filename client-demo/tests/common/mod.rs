//! Helpers shared by the demo client's end-to-end tests (the native one under Xvfb, the web one in headless
//! Chromium).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use game_module::Vec2;
use game_module::terrain::is_walkable;
use locus_client::{Client, ClientConfig, Filter, Trust};
use locus_host::Budget;
use locus_server::{Server, ServerConfig};

/// The workspace.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether the environment variable `name` is set to something other than empty or `0` (CI sets the `REQUIRE`
/// ones: a test that would skip fails instead).
pub(crate) fn required(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// How long generating the world may take.
pub(crate) const WORLD_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Write a line to the real stderr, past the test harness's capture, so it shows even when the test passes.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

pub(crate) fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .to_owned()
}

pub(crate) fn start_server(dir: &Path, web: Option<PathBuf>) -> Server {
    let workspace = workspace();
    let wasm = locus_host::build::build_module(
        &workspace,
        "game-module",
        &locus_host::build::module_target_dir(&workspace, "wasm-modules"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut config = ServerConfig::new(wasm);
    config.data_dir = dir.to_owned();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // Generating the world (32 `generate_region` calls) in an unoptimised test build takes longer than the
    // default 100 ms budget per call.
    config.host.budget = Budget::Time(Duration::from_secs(30));
    // The web client's files, served with `locus.json` on a port of its own.
    if let Some(root) = web {
        config.web = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.web_root = Some(root);
    }
    Server::start(config).expect("the server starts")
}

/// Wait until the world around the spawn point exists (its chunks are generated at the first tick, which takes
/// a while in a test build), then look around it for resource nodes; returns a walkable point 3 m from one (so
/// that the screenshot shows more than grass), or the spawn point if none is found.
pub(crate) fn wait_for_world(server: &Server) -> Vec2 {
    let config = ClientConfig::new(
        server.local_addr(),
        Trust::Fingerprint(server.fingerprint()),
    );
    let started = Instant::now();
    let mut client = loop {
        match Client::connect(config.clone()) {
            Ok(client) => break client,
            Err(e) => assert!(started.elapsed() < WORLD_TIMEOUT, "cannot connect: {e}"),
        }
    };
    for table in ["chunk", "resource_node"] {
        client.subscribe(table, Filter::All).unwrap();
    }
    // Poll until `done`, for at most `limit`; whether it came.
    let poll_until = |client: &mut Client, done: &dyn Fn(&Client) -> bool, limit: Duration| {
        let since = Instant::now();
        while !done(client) {
            let _ = client.poll();
            assert!(
                started.elapsed() < WORLD_TIMEOUT,
                "the world was not ready in {WORLD_TIMEOUT:?}"
            );
            if since.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    };
    poll_until(&mut client, &|c| c.cache().len("chunk") >= 9, WORLD_TIMEOUT);
    let spawn = Vec2::from(game_module::content().world.spawn.center);
    // Look around the spawn point, on two rings.
    for i in 0..16 {
        let p = spawn + Vec2::from_angle(i as f32 * 0.8) * 120.0 * (1.0 + (i / 8) as f32);
        if !is_walkable(p) {
            continue;
        }
        client.call(&game_module::teleport::call(p.x, p.y)).unwrap();
        if poll_until(
            &mut client,
            &|c| c.cache().len("resource_node") > 0,
            Duration::from_secs(2),
        ) {
            let nodes: Vec<game_module::ResourceNode> =
                client.cache().rows("resource_node").unwrap();
            let node = nodes[0].pos;
            for angle in 0..8 {
                let near = node + Vec2::from_angle(angle as f32 * 0.785) * 3.0;
                if is_walkable(near) {
                    return near;
                }
            }
        }
    }
    spawn
}
