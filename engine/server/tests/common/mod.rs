//! Helpers shared by the server's end-to-end tests.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use locus_client::{CallOutcome, Client, Event, RequestId};

/// How long a test waits for something the server should do.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// The workspace (modules are built from it).
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The demo module (`game-module`), built to wasm by the test (into `target/wasm-modules`).
pub(crate) static DEMO: LazyLock<Vec<u8>> = LazyLock::new(|| {
    locus_host::build::build_module(
        &workspace(),
        "game-module",
        &locus_host::build::module_target_dir(&workspace(), "wasm-modules"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
});

/// Poll `client` until `done` holds (given every event so far), or panic after [`WAIT`].
pub(crate) fn wait_for(
    client: &mut Client,
    what: &str,
    mut done: impl FnMut(&Client, &[Event]) -> bool,
) -> Vec<Event> {
    let start = Instant::now();
    let mut events = Vec::new();
    loop {
        events.extend(client.poll());
        if done(client, &events) {
            return events;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for {what}; events: {:?}",
            events.iter().map(Event::kind).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The outcome of call `request` among `events`.
pub(crate) fn result_of(events: &[Event], request: RequestId) -> Option<&CallOutcome> {
    events.iter().find_map(|e| match e {
        Event::CallResult {
            request: r,
            outcome,
            ..
        } if *r == request => Some(outcome),
        _ => None,
    })
}

/// A free UDP port on loopback (bound and released; the server binds it again right away).
pub(crate) fn free_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
