//! The connection: connecting (and reconnecting) on a background thread, subscribing, entering the world with a
//! name, sending reducer calls, measuring the round trip, and following the server's clock.
//!
//! Nothing here blocks a frame: natively `Client::connect` (which waits for the server's `Welcome`) runs on its
//! own thread; in the browser the page's `locus.json` is fetched (the server's WebTransport URL and the current
//! hashes of its certificate, which rotates) and `Client::connect_async` runs as a task of the page. Either way the
//! finished [`Client`] is picked up by a later frame; the `Client` resource is then polled once per frame
//! by [`LocusPlugin`] (non-blocking) and its events arrive as [`LocusEvent`]s.
//!
//! [`LocusPlugin`]: locus_client::bevy::LocusPlugin

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bevy::platform::time::Instant;

use bevy::prelude::*;
use locus_client::bevy::{LocusEvent, LocusRow, LocusSystems, RowEntities};
use locus_client::{
    CallOutcome, Client, ClientConfig, ConnectError, Event, Filter, Identity, ReducerCall,
    RequestId, Token,
};
use tracing::{info, warn};

use crate::interp::ServerClock;
use crate::ui::ChatLog;

/// The tables the client subscribes to (spatial ones are limited by the server to the area around the avatar,
/// owned ones to this client's rows).
pub const TABLES: &[&str] = &[
    "chunk",
    "player",
    "creature",
    "resource_node",
    "ground_item",
    "inventory_item",
    "item_kind",
    "recipe",
    "local_message",
    "global_message",
    "whisper",
];

/// How long to wait before connecting again after a failure or a disconnect.
pub const RETRY: Duration = Duration::from_secs(3);

/// Where the connection stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// A connect is running on the background thread.
    Connecting,
    /// The `Client` resource is live.
    Connected,
    /// Not connected; the next attempt starts at `retry_at`.
    Disconnected {
        /// Why, for people.
        reason: String,
        /// When to try again.
        retry_at: Instant,
    },
}

/// Where the client finds the server.
#[derive(Clone, Debug)]
pub enum Source {
    /// This config (native builds: QUIC, the pinned certificate, a token file).
    Config(ClientConfig),
    /// In the browser: fetch this `locus.json` before each connect, and keep the identity token in
    /// `localStorage` under `token_key`.
    #[cfg(target_arch = "wasm32")]
    LocusJson {
        /// The URL of `locus.json` (by default the page's own).
        url: String,
        /// The `localStorage` key of the token.
        token_key: String,
    },
}

impl Source {
    /// Where it connects, for people.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Source::Config(config) => match &config.transport {
                locus_client::Transport::Quic => config.addr.to_string(),
                locus_client::Transport::WebTransport(web) => web.url.to_string(),
            },
            #[cfg(target_arch = "wasm32")]
            Source::Config(config) => match &config.transport {
                locus_client::Transport::WebTransport(web) => web.url.to_string(),
            },
            #[cfg(target_arch = "wasm32")]
            Source::LocusJson { url, .. } => url.clone(),
        }
    }
}

/// Why connecting failed.
#[derive(Debug)]
enum Failure {
    /// The client could not connect.
    Connect(ConnectError),
    /// `locus.json` could not be fetched or read (the browser).
    #[cfg_attr(
        not(target_arch = "wasm32"),
        expect(dead_code, reason = "the browser's")
    )]
    Discover(String),
}

/// The connection's state, and the way to send calls. See the [module docs](self).
#[derive(Resource)]
pub struct Net {
    source: Source,
    /// The token the server gave this client (kept for reconnects even without a stored one).
    token: Option<Token>,
    /// The name to enter the world with (`set_name`), if any.
    pub name: Option<String>,
    /// Where to jump on entering (`teleport`), if anywhere.
    pub teleport: Option<(f32, f32)>,
    /// Where the connection stands.
    pub status: Status,
    /// The connect thread's (or task's) answer (a `Mutex` only to make `Net` `Sync`; it is never contended).
    pending: Option<Mutex<Receiver<Result<Client, Failure>>>>,
    /// The client's identity, once connected.
    pub identity: Option<Identity>,
    /// Calls in flight: when each was sent and what it was.
    in_flight: HashMap<RequestId, (Instant, &'static str)>,
    /// The latest call round trip (send → result), including the wait for the tick to be durable.
    pub rtt: Option<Duration>,
    /// Local time ↔ server time.
    pub clock: ServerClock,
    /// The latest tick seen.
    pub tick: u64,
    /// The server timestamp of `tick` (µs since the Unix epoch).
    pub tick_time: u64,
    /// Local time zero (µs are counted from it).
    epoch: Instant,
    /// The reason of the last refused call, with the reducer's name (for the chat log).
    pub last_error: Option<(String, String)>,
}

impl Net {
    /// A connection to be made to `source`, entering with `name`.
    #[must_use]
    pub fn new(source: Source, name: Option<String>) -> Net {
        Net {
            source,
            token: None,
            name,
            teleport: None,
            status: Status::Disconnected {
                reason: "not connected yet".into(),
                retry_at: Instant::now(),
            },
            pending: None,
            identity: None,
            in_flight: HashMap::new(),
            rtt: None,
            clock: ServerClock::default(),
            tick: 0,
            tick_time: 0,
            epoch: Instant::now(),
            last_error: None,
        }
    }

    /// Local time in µs (monotonic, from app start).
    #[must_use]
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The round trip in µs (100 ms until one was measured).
    #[must_use]
    pub fn rtt_us(&self) -> u64 {
        self.rtt.map_or(100_000, |d| {
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
        })
    }

    /// Send `call` (if connected), remembering it as `what` for the round trip and error messages. Returns its id.
    pub fn call(
        &mut self,
        client: Option<&Client>,
        call: &ReducerCall,
        what: &'static str,
    ) -> Option<RequestId> {
        let client = client?;
        match client.call(call) {
            Ok(request) => {
                self.in_flight.insert(request, (Instant::now(), what));
                Some(request)
            }
            Err(e) => {
                warn!("cannot send {what}: {e}");
                None
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn start_connect(&mut self) {
        let (tx, rx) = mpsc::channel();
        let Source::Config(mut config) = self.source.clone();
        if self.token.is_some() {
            config.token = self.token;
        }
        let spawned = std::thread::Builder::new()
            .name("client-demo-connect".into())
            .spawn(move || {
                let _ = tx.send(Client::connect(config).map_err(Failure::Connect));
            });
        match spawned {
            Ok(_) => {
                info!("connecting to {}", self.source.describe());
                self.pending = Some(Mutex::new(rx));
                self.status = Status::Connecting;
            }
            Err(e) => self.fail(format!("cannot start a thread: {e}")),
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn start_connect(&mut self) {
        let (tx, rx) = mpsc::channel();
        let (source, token) = (self.source.clone(), self.token);
        wasm_bindgen_futures::spawn_local(async move {
            let config = match source {
                Source::Config(config) => Ok(config),
                Source::LocusJson { url, token_key } => {
                    crate::web::fetch_config(&url).await.map(|web| {
                        let mut config = ClientConfig::web_transport(web);
                        config.token_key = Some(token_key);
                        config
                    })
                }
            };
            let result = match config {
                Ok(mut config) => {
                    if token.is_some() {
                        config.token = token;
                    }
                    Client::connect_async(config)
                        .await
                        .map_err(Failure::Connect)
                }
                Err(e) => Err(Failure::Discover(e)),
            };
            let _ = tx.send(result);
        });
        info!("connecting to {}", self.source.describe());
        self.pending = Some(Mutex::new(rx));
        self.status = Status::Connecting;
    }

    fn fail(&mut self, reason: String) {
        warn!("{reason}; trying again in {} s", RETRY.as_secs());
        self.status = Status::Disconnected {
            reason,
            retry_at: Instant::now() + RETRY,
        };
        self.pending = None;
        self.in_flight.clear();
    }
}

/// Registers the connection systems.
pub struct NetPlugin;

impl Plugin for NetPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(
            PreUpdate,
            (
                connect.before(LocusSystems::Poll),
                follow_events.after(LocusSystems::Poll),
            ),
        );
    }
}

/// What the player reads when connecting to `to` failed. When no server answered, how to start one.
fn connect_failure(to: &str, e: &Failure) -> String {
    match e {
        #[cfg(not(target_arch = "wasm32"))]
        Failure::Connect(e @ ConnectError::NoServer { .. }) => format!(
            "cannot connect: {e}. Is a world running? Start one with \
             `cargo run --release -p locus-server -- serve`, or point --server at one"
        ),
        Failure::Connect(e) => format!("cannot connect to {to}: {e}"),
        Failure::Discover(e) => format!("cannot find the server in {to}: {e}"),
    }
}

/// Start connecting when due; install a finished connection.
fn connect(
    mut net: ResMut<'_, Net>,
    mut commands: Commands<'_, '_>,
    mirrored: Query<'_, '_, Entity, With<LocusRow>>,
    mut log: ResMut<'_, ChatLog>,
) {
    if let Some(rx) = net.pending.as_mut() {
        let received = rx
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .try_recv();
        match received {
            Ok(Ok(mut client)) => {
                net.pending = None;
                // A fresh client starts a fresh view: forget the entities of an earlier connection.
                for entity in &mirrored {
                    commands.entity(entity).despawn();
                }
                commands.insert_resource(RowEntities::default());
                for table in TABLES {
                    if let Err(e) = client.subscribe(table, Filter::All) {
                        warn!("cannot subscribe to {table}: {e}");
                    }
                }
                net.identity = Some(client.identity());
                // Keep the identity on reconnects even without a stored token.
                net.token = Some(client.welcome().token);
                if let Some(name) = net.name.clone() {
                    let call = game_module::set_name::call(name);
                    net.call(Some(&client), &call, "set_name");
                }
                if let Some((x, y)) = net.teleport.take() {
                    let call = game_module::teleport::call(x, y);
                    net.call(Some(&client), &call, "teleport");
                }
                info!("connected as {}", client.identity());
                log.system(format!("connected to {}", net.source.describe()));
                net.status = Status::Connected;
                commands.insert_resource(client);
            }
            Ok(Err(e)) => {
                let reason = connect_failure(&net.source.describe(), &e);
                log.system(reason.clone());
                net.fail(reason);
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => net.fail("the connect thread stopped".into()),
        }
        return;
    }
    if let Status::Disconnected { retry_at, .. } = net.status
        && Instant::now() >= retry_at
    {
        net.start_connect();
    }
}

/// Round trips, refused calls, disconnects, and the server clock.
fn follow_events(
    mut net: ResMut<'_, Net>,
    mut events: MessageReader<'_, '_, LocusEvent>,
    client: Option<Res<'_, Client>>,
    mut commands: Commands<'_, '_>,
    mut log: ResMut<'_, ChatLog>,
) {
    for LocusEvent(event) in events.read() {
        match event {
            Event::CallResult {
                request, outcome, ..
            } => {
                if let Some((sent, what)) = net.in_flight.remove(request) {
                    net.rtt = Some(sent.elapsed());
                    if let CallOutcome::Err { message, .. } = outcome {
                        log.system(format!("{what}: {message}"));
                        net.last_error = Some((what.to_owned(), message.clone()));
                    }
                }
            }
            Event::ServerError { message, .. } => log.system(format!("server: {message}")),
            Event::Disconnected { reason } => {
                log.system(format!("disconnected: {reason}"));
                net.fail(format!("disconnected: {reason}"));
                commands.remove_resource::<Client>();
            }
            _ => {}
        }
    }
    if let Some(client) = client {
        let cache = client.cache();
        if cache.tick() != net.tick || cache.tick_time() != net.tick_time {
            net.tick = cache.tick();
            net.tick_time = cache.tick_time();
            if net.tick_time != 0 {
                let (time, now) = (net.tick_time, net.now_us());
                net.clock.observe(time, now);
            }
        }
    }
    // Calls whose answer never came (a dropped connection) are not kept forever.
    net.in_flight
        .retain(|_, (sent, _)| sent.elapsed() < Duration::from_secs(30));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_address_is_explained_with_how_to_start_a_server() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 7878));
        let silent = Failure::Connect(ConnectError::NoServer {
            addr,
            timeout: Duration::from_secs(5),
        });
        assert_eq!(
            connect_failure("127.0.0.1:7878", &silent),
            "cannot connect: no server answered at 127.0.0.1:7878 within 5s. Is a world running? Start one with \
             `cargo run --release -p locus-server -- serve`, or point --server at one"
        );
        let mute = Failure::Connect(ConnectError::Timeout(Duration::from_secs(5)));
        assert_eq!(
            connect_failure("127.0.0.1:7878", &mute),
            "cannot connect to 127.0.0.1:7878: the server accepted the connection but sent no Welcome within 5s"
        );
    }
}
