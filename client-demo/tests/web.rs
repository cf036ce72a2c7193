//! End to end in a browser: the demo client built for the web (`locus_host::web_build`, as `locus serve --web`
//! builds it) is served by a real server (in this process, the demo module built to wasm) and opened in headless
//! Chromium (Debian's `chromium`, driven through `chromedriver` over WebDriver). It must enter the world over
//! WebTransport as `Webby`: a native client near it sees its row, the page draws the world around it (a
//! screenshot, checked as the native client's is), and a click beside the avatar makes it walk, which the native
//! client sees.
//!
//! The screenshot is kept at `target/web-client-screenshot.png`. It prints how long the build, the first frame and
//! the world took. Without `chromium` and `chromedriver` the test is skipped with a loud message, unless
//! `LOCUS_REQUIRE_BROWSER` is set (CI sets it), when it fails.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[expect(dead_code, reason = "the helpers only the native test uses")]
mod common;

use client_demo::palette::screenshot_stats;
use common::{say, start_server, target_dir, wait_for_world, workspace};
use fantoccini::actions::{InputSource as _, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use locus_client::{Client, ClientConfig, Filter, Trust};

/// How long the page may take to draw the world (compiling the wasm and drawing with SwiftShader).
const PAGE_TIMEOUT: Duration = Duration::from_secs(180);

/// A `chromedriver` on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(chromedriver: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The players `client` sees, polled until `done` holds (or panic after `limit`).
fn watch(
    client: &mut Client,
    what: &str,
    limit: Duration,
    done: impl Fn(&[game_module::Player]) -> bool,
) -> Vec<game_module::Player> {
    let started = Instant::now();
    loop {
        let _ = client.poll();
        let players: Vec<game_module::Player> = client.cache().rows("player").unwrap();
        if done(&players) {
            return players;
        }
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {what}: {players:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_web_client_enters_the_world_from_headless_chromium() {
    let Some(browser) = locus_host::web_build::Browser::find_or_skip("client-demo's web test")
    else {
        return;
    };
    let (chromium, chromedriver) = (browser.chromium, browser.chromedriver);

    // The web client, built as `locus serve --web` builds it (same directories: whichever runs first builds).
    let ws = workspace();
    let built = Instant::now();
    let app = locus_host::web_build::build_web_app(
        &ws,
        "client-demo",
        "client-demo",
        &ws.join("target/web-client/build"),
        &ws.join("target/tools"),
        &ws.join("client-demo/web"),
        &ws.join("target/web-client/site"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let wasm_bytes = std::fs::metadata(&app.wasm).unwrap().len();
    say(&format!(
        "web client built in {:.1} s: {} ({wasm_bytes} bytes)",
        built.elapsed().as_secs_f64(),
        app.wasm.display()
    ));

    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("world"), Some(app.dir.clone()));
    let web = server.web_addr().expect("the web port");
    let place = wait_for_world(&server);

    // A native client stands 4 m east of where the web client will enter.
    let mut native = Client::connect(ClientConfig::new(
        server.local_addr(),
        Trust::Fingerprint(server.fingerprint()),
    ))
    .expect("the native client connects");
    native.subscribe("player", Filter::All).unwrap();
    native
        .call(&game_module::teleport::call(place.x + 4.0, place.y))
        .unwrap();

    let profile = tempfile::tempdir().unwrap();
    let driver = Driver::start(&chromedriver);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let page = format!(
        "http://127.0.0.1:{}/?name=Webby&teleport={},{}",
        web.port(),
        place.x,
        place.y
    );
    let browser = rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    // WebGL2 without a GPU: SwiftShader through ANGLE.
                    "--use-angle=swiftshader",
                    "--enable-unsafe-swiftshader",
                    "--window-size=1280,720",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a WebDriver session")
    });
    let opened = Instant::now();
    rt.block_on(browser.goto(&page)).expect("the page opens");
    // The page's marks (client-demo/src/web.rs): the first frame, the world drawn, the identity.
    let marks = loop {
        let marks = rt
            .block_on(browser.execute(
                "return [window.locusFirstFrameMs, window.locusReadyMs, window.locusIdentity, \
                 document.getElementById('status').textContent]",
                vec![],
            ))
            .expect("the page answers");
        if marks[1].is_number() {
            break marks;
        }
        assert!(
            opened.elapsed() < PAGE_TIMEOUT,
            "the page did not draw the world in {PAGE_TIMEOUT:?}: {marks}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    say(&format!(
        "web client: first frame {:.0} ms, world drawn {:.0} ms after the page started loading",
        marks[0].as_f64().unwrap_or(f64::NAN),
        marks[1].as_f64().unwrap()
    ));

    // The server has the player, and the native client next to it sees it where it entered.
    let players = watch(&mut native, "Webby's row", Duration::from_secs(20), |ps| {
        ps.iter()
            .any(|p| p.name == "webby" && p.pos.distance(place) < 1.0)
    });
    let webby = players.iter().find(|p| p.name == "webby").unwrap();
    assert_eq!(
        marks[2].as_str(),
        Some(webby.identity.to_string().as_str()),
        "the page's identity is the row's"
    );

    // The page shows the world with the avatar in the middle.
    let png = rt.block_on(browser.screenshot()).expect("a screenshot");
    let shot = target_dir().join("web-client-screenshot.png");
    std::fs::write(&shot, &png).unwrap();
    let image = image::load_from_memory(&png).unwrap().to_rgb8();
    let (width, height) = image.dimensions();
    let stats = screenshot_stats(image.as_raw(), width, height);
    say(&format!(
        "web client screenshot: {} ({width}×{height}): {stats:?}",
        shot.display()
    ));
    assert!(
        stats.terrain_share > 0.5,
        "terrain colours should dominate the page: {stats:?}"
    );
    assert!(
        stats.self_pixels_at_center > 40,
        "the own avatar (orange) should be at the centre: {stats:?}"
    );

    // A click 150 px left of the avatar: it walks there (`move_to`), and the native client sees it go.
    let canvas = rt
        .block_on(browser.find(fantoccini::Locator::Css("#locus")))
        .expect("the canvas");
    let click = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: canvas,
            duration: None,
            x: -150.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    rt.block_on(browser.perform_actions(click))
        .expect("the click");
    watch(
        &mut native,
        "Webby walking west",
        Duration::from_secs(20),
        |ps| {
            ps.iter()
                .any(|p| p.name == "webby" && p.pos.x < place.x - 1.0)
        },
    );
    rt.block_on(browser.close()).expect("the browser closes");
    drop(driver);
    server.shutdown();
}
