//! The polling client: a [`Connection`] run in the background, a [`Cache`] and row callbacks, for games and tools
//! that are not async (and for browser games, whose frame loop is not async either).
//!
//! The background task owns the connection and forwards server messages (and protocol version 4's position
//! datagrams, in the order they arrived) to the client: natively it is a thread with a current-thread tokio
//! runtime, in the browser a task on the page's event loop (`wasm_bindgen_futures::spawn_local`). Nothing happens
//! to the cache or callbacks until the owner calls [`Client::poll`] (typically once per frame), which never
//! blocks. Requests are queued without blocking too.
//!
//! The two builds differ only in how a connection starts: natively `Client::connect` and `Client::reconnect`
//! block until `Welcome` came; in the browser, which must not block, they are async
//! (`Client::connect_async(config).await`, `client.reconnect().await`). Everything else (polling, the cache, callbacks,
//! calls, subscriptions) is the same code on both.
//!
//! Requests go into a queue of the client's own ([`Sender::queue`]), which the network task hands to whichever
//! connection is current: so a redirect ([`crate::Event::Redirected`]) changes the connection under the client
//! without changing its [`Sender`], and requests made while the task connects to the new region wait and go
//! there (after the subscriptions it makes again). Natively over QUIC the network task follows a redirect by
//! itself: it connects to the new region's server as the same identity, subscribes again to every table the
//! client is subscribed to, and hands the client the new `Welcome`; the client's [`Cache`] then keeps the view
//! held until the new one is in ([`Cache::begin_redirect`]), which [`Client::poll`] decides: on a message of a
//! later tick (the cache sees it), or after [`REDIRECT_SETTLE_TICKS`] tick periods without any message once the
//! subscriptions were answered, or at the latest [`REDIRECT_LIMIT`] after the new `Welcome`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU32;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
#[cfg(not(target_arch = "wasm32"))]
use std::thread::JoinHandle;
use std::time::Duration;

use locus_protocol::{CallOutcome, Filter, ServerMessage, TickView};
use locus_types::{Identity, ReducerCall};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::cache::decode_row;
use crate::connection::Received;
use crate::rt::Instant;
use crate::transport::WebTransportConfig;
use crate::{
    Cache, ClientConfig, ConnectError, Connection, Event, RequestId, SendError, Sender, Welcome,
};
#[cfg(not(target_arch = "wasm32"))]
use crate::{rt, transport::Transport};
#[cfg(not(target_arch = "wasm32"))]
use locus_protocol::Redirect;

/// After the subscriptions made again in a redirected connection are answered, how many tick periods without any
/// message [`Client::poll`] waits before it takes the new region's view as complete ([`Cache::finish_redirect`]).
/// The server sends each subscription's rows right after its answer, in the same tick, and no `Tick` at all for a
/// tick that changed nothing; a message of a later tick finishes the redirect sooner.
pub const REDIRECT_SETTLE_TICKS: u32 = 2;

/// How long after the new region's `Welcome` [`Client::poll`] takes its view as complete whatever came: rows that
/// arrive later are ordinary inserts.
pub const REDIRECT_LIMIT: Duration = Duration::from_secs(5);

/// The table names and filters the client is subscribed to, shared with the network task (which subscribes again
/// after following a redirect).
type Subscriptions = Arc<Mutex<BTreeMap<String, Filter>>>;

/// What the network task hands the client.
enum Incoming {
    Message(ServerMessage),
    /// A `Tick` frame's payload, checked by the network task: applied in place ([`Cache::apply_tick`]).
    Tick(Vec<u8>),
    /// A QUIC datagram: protocol version 4's positions ([`Cache::apply_datagram`]).
    Datagram(Vec<u8>),
    /// The server redirected the client and the task follows it over QUIC: the config that reaches the new region
    /// (the client's from now on, so that [`Client::reconnect`] goes there too).
    #[cfg(not(target_arch = "wasm32"))]
    Redirecting(Box<ClientConfig>),
    /// The task followed a redirect: connected to region `region`, which answered with `welcome`, and subscribed
    /// again with the requests `resubscribed`. What comes next is that connection's.
    #[cfg(not(target_arch = "wasm32"))]
    Redirected {
        welcome: Box<Welcome>,
        region: String,
        web: Option<String>,
        resubscribed: Vec<RequestId>,
    },
    /// The connection ended; why, for people.
    Ended(String),
}

/// When a redirect began, and when a message last arrived since: [`Client::poll`] finishes it from these.
#[derive(Clone, Copy, Debug)]
struct Settling {
    began: Instant,
    quiet_since: Instant,
}

/// A live connection run by a background task: natively a thread with a current-thread tokio runtime, in the
/// browser a task on the page's event loop.
struct Link {
    /// The client's queue of requests, which the task hands to the current connection.
    sender: Sender,
    inbox: Mutex<mpsc::Receiver<Incoming>>,
    stop: Option<oneshot::Sender<()>>,
    #[cfg(not(target_arch = "wasm32"))]
    thread: Option<JoinHandle<()>>,
    /// `poll` has delivered [`Event::Disconnected`].
    ended: bool,
}

impl Link {
    /// Start the network thread and connect; returns once `Welcome` came (or connecting failed). The task
    /// follows redirects by itself over QUIC, subscribing again to `subscriptions`.
    #[cfg(not(target_arch = "wasm32"))]
    fn start(
        config: &ClientConfig,
        next_request: Arc<AtomicU32>,
        subscriptions: Subscriptions,
    ) -> Result<(Link, Welcome), ConnectError> {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (inbox_tx, inbox_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (sender, outbound) = Sender::queue(next_request.clone());
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("locus-client".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ConnectError::Thread(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let conn =
                        match Connection::connect_counting(&config, next_request.clone()).await {
                            Ok(conn) => conn,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        };
                    if ready_tx.send(Ok(conn.welcome().clone())).is_err() {
                        conn.close().await;
                        return;
                    }
                    let follow = Follow {
                        config,
                        next_request,
                        subscriptions,
                    };
                    run(conn, inbox_tx, stop_rx, outbound, follow).await;
                });
            })
            .map_err(ConnectError::Thread)?;
        let ready = ready_rx.recv();
        match ready {
            Ok(Ok(welcome)) => Ok((
                Link {
                    sender,
                    inbox: Mutex::new(inbox_rx),
                    stop: Some(stop_tx),
                    thread: Some(thread),
                    ended: false,
                },
                welcome,
            )),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(ConnectError::Thread(std::io::Error::other(
                    "the network thread stopped while connecting",
                )))
            }
        }
    }

    /// Connect, then run the connection in a task on the page's event loop. (The browser has no QUIC: a redirect
    /// is the application's to follow, so `subscriptions` is not needed here.)
    #[cfg(target_arch = "wasm32")]
    async fn start(
        config: &ClientConfig,
        next_request: Arc<AtomicU32>,
        _subscriptions: Subscriptions,
    ) -> Result<(Link, Welcome), ConnectError> {
        let conn = Connection::connect_counting(config, next_request.clone()).await?;
        let (inbox_tx, inbox_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (sender, outbound) = Sender::queue(next_request);
        let link = Link {
            sender,
            inbox: Mutex::new(inbox_rx),
            stop: Some(stop_tx),
            ended: false,
        };
        let welcome = conn.welcome().clone();
        wasm_bindgen_futures::spawn_local(run(conn, inbox_tx, stop_rx, outbound));
        Ok((link, welcome))
    }

    /// Close the connection (natively waiting for the thread, which waits briefly for the server to be told).
    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("the network thread panicked");
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// What the network task needs to follow a redirect by itself (natively, over QUIC).
#[cfg(not(target_arch = "wasm32"))]
struct Follow {
    /// The config of the current connection (the redirect's target's after one).
    config: ClientConfig,
    next_request: Arc<AtomicU32>,
    subscriptions: Subscriptions,
}

/// What the network task's loop does next.
enum Step {
    Stop,
    /// A request from the client's queue (`None`: the queue is gone, with the client).
    Send(Option<Vec<u8>>),
    Received(Result<Received, crate::ReceiveError>),
}

/// The network task's loop: forward messages until the connection ends, a fatal error comes, or the client
/// stops it; hand the client's requests (`outbound`) to the current connection. Natively over QUIC it follows a
/// redirect by itself ([`follow_redirect`]) and goes on with the new connection; otherwise a redirect is handed to
/// the client like any message, and the server's close ends the loop.
async fn run(
    mut conn: Connection,
    inbox: mpsc::Sender<Incoming>,
    mut stop: oneshot::Receiver<()>,
    mut outbound: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    #[cfg(not(target_arch = "wasm32"))] mut follow: Follow,
) {
    loop {
        let step = tokio::select! {
            _ = &mut stop => Step::Stop,
            frame = outbound.recv() => Step::Send(frame),
            received = conn.next_received() => Step::Received(received),
        };
        match step {
            Step::Stop => {
                debug!("closing the connection");
                break;
            }
            Step::Send(None) => break,
            Step::Send(Some(frame)) => {
                // A connection that ended says why on its read side.
                let _ = conn.send_frame(frame);
            }
            Step::Received(Ok(Received::Tick(payload))) => {
                if inbox.send(Incoming::Tick(payload)).is_err() {
                    break;
                }
            }
            Step::Received(Ok(Received::Datagram(bytes))) => {
                if inbox.send(Incoming::Datagram(bytes)).is_err() {
                    break;
                }
            }
            Step::Received(Ok(Received::Message(ServerMessage::Redirect(to)))) => {
                #[cfg(not(target_arch = "wasm32"))]
                if follow.config.transport == Transport::Quic {
                    match follow_redirect(conn, &to, &mut follow, &inbox, &mut stop).await {
                        Some(next) => {
                            conn = next;
                            continue;
                        }
                        None => return,
                    }
                }
                // WebTransport: the application follows it (`Client::follow_redirect`); the server closes this
                // connection next.
                if inbox
                    .send(Incoming::Message(ServerMessage::Redirect(to)))
                    .is_err()
                {
                    break;
                }
            }
            Step::Received(Ok(Received::Message(message))) => {
                let fatal = match &message {
                    ServerMessage::Error {
                        fatal: true,
                        code,
                        message,
                        ..
                    } => Some(format!(
                        "the server closed the connection: {code:?}: {message}"
                    )),
                    _ => None,
                };
                if inbox.send(Incoming::Message(message)).is_err() {
                    break;
                }
                if let Some(reason) = fatal {
                    let _ = inbox.send(Incoming::Ended(reason));
                    break;
                }
            }
            Step::Received(Err(e)) => {
                let _ = inbox.send(Incoming::Ended(e.describe()));
                break;
            }
        }
    }
    conn.close().await;
}

/// Follow a redirect to `to` over QUIC, leaving `old` (closed in the background: the server closes it too): tell
/// the client the new config ([`Incoming::Redirecting`]), connect to the target as the same identity (`old`'s
/// token), subscribe again to every table the client is subscribed to, and tell the client
/// ([`Incoming::Redirected`]) before anything of the new connection. `None` if the client stopped the task or it
/// could not connect (the client was told why, [`Incoming::Ended`]).
#[cfg(not(target_arch = "wasm32"))]
async fn follow_redirect(
    old: Connection,
    to: &Redirect,
    follow: &mut Follow,
    inbox: &mpsc::Sender<Incoming>,
    stop: &mut oneshot::Receiver<()>,
) -> Option<Connection> {
    let token = old.welcome().token;
    rt::spawn(old.close());
    let config = match follow.config.redirected(to, token) {
        Ok(config) => config,
        Err(e) => {
            let _ = inbox.send(Incoming::Ended(format!(
                "redirected to region `{}`, which this client cannot reach: {e}",
                to.region
            )));
            return None;
        }
    };
    tracing::info!(region = %to.region, addr = %config.addr, "redirected: connecting to the region's server");
    if inbox
        .send(Incoming::Redirecting(Box::new(config.clone())))
        .is_err()
    {
        return None;
    }
    follow.config = config;
    let connected = tokio::select! {
        _ = &mut *stop => return None,
        connected = Connection::connect_counting(&follow.config, follow.next_request.clone()) => connected,
    };
    let conn = match connected {
        Ok(conn) => conn,
        Err(e) => {
            let _ = inbox.send(Incoming::Ended(format!(
                "redirected to region `{}` at {}, but connecting there failed: {e}",
                to.region, follow.config.addr
            )));
            return None;
        }
    };
    let subscriptions: Vec<(String, Filter)> = follow
        .subscriptions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(table, filter)| (table.clone(), filter.clone()))
        .collect();
    let resubscribed = subscriptions
        .into_iter()
        .filter_map(|(table, filter)| {
            conn.subscribe(&table, filter)
                .inspect_err(|e| warn!("cannot subscribe to `{table}` again: {e}"))
                .ok()
        })
        .collect();
    let redirected = Incoming::Redirected {
        welcome: Box::new(conn.welcome().clone()),
        region: to.region.clone(),
        web: to.web.clone(),
        resubscribed,
    };
    if inbox.send(redirected).is_err() {
        conn.close().await;
        return None;
    }
    Some(conn)
}

type RowCallback = Box<dyn FnMut(&Event) + Send>;
type ResultCallback = Box<dyn FnMut(RequestId, &CallOutcome) + Send>;

#[derive(Default)]
struct Callbacks {
    /// By table name.
    rows: HashMap<String, Vec<RowCallback>>,
    results: Vec<ResultCallback>,
}

impl Callbacks {
    fn fire(&mut self, event: &Event) {
        match event {
            Event::Inserted { name, .. }
            | Event::Updated { name, .. }
            | Event::Deleted { name, .. } => {
                if let Some(callbacks) = self.rows.get_mut(&**name) {
                    for f in callbacks {
                        f(event);
                    }
                }
            }
            Event::CallResult {
                request, outcome, ..
            } => {
                for f in &mut self.results {
                    f(*request, outcome);
                }
            }
            _ => {}
        }
    }
}

/// Decode a row for a callback, logging rows that do not decode as `T`.
fn decode_for_callback<T: DeserializeOwned>(table: &str, row: &[u8]) -> Option<T> {
    decode_row(table, row)
        .inspect_err(|e| warn!("row callback skipped: {e}"))
        .ok()
}

/// A polling client: connection, client cache and callbacks. See the [module docs](self).
///
/// Call [`Client::poll`] regularly: the network task reads eagerly, so messages not yet polled wait in memory.
/// Dropping the client closes the connection (natively waiting briefly for the server to be told).
#[cfg_attr(feature = "bevy", derive(bevy_ecs::resource::Resource))]
pub struct Client {
    config: ClientConfig,
    welcome: Welcome,
    cache: Cache,
    link: Option<Link>,
    next_request: Arc<AtomicU32>,
    /// Table name → filter, replayed by [`Client::reconnect`] and after a redirect.
    subscriptions: Subscriptions,
    callbacks: Mutex<Callbacks>,
    /// Events produced outside `poll` (connect, reconnect), delivered by the next `poll`.
    pending: Vec<Event>,
    /// A redirect whose new view is being received ([`Cache::begin_redirect`]).
    settling: Option<Settling>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.config.server())
            .field("identity", &self.welcome.identity)
            .field("connected", &self.is_connected())
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connect (see [`Connection::connect`]) on a new background thread; returns once the server has answered
    /// with `Welcome`. The first [`Client::poll`] reports [`Event::Connected`]. Native builds.
    ///
    /// # Errors
    ///
    /// [`ConnectError`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn connect(config: ClientConfig) -> Result<Client, ConnectError> {
        let next_request = Arc::new(AtomicU32::new(1));
        let subscriptions = Subscriptions::default();
        let (link, welcome) = Link::start(&config, next_request.clone(), subscriptions.clone())?;
        Ok(Client::started(
            config,
            next_request,
            subscriptions,
            link,
            welcome,
        ))
    }

    /// Connect (see [`Connection::connect`]) and run the connection on the page's event loop; completes once the
    /// server has answered with `Welcome`. The first [`Client::poll`] reports [`Event::Connected`]. Browser
    /// builds.
    ///
    /// # Errors
    ///
    /// [`ConnectError`].
    #[cfg(target_arch = "wasm32")]
    pub async fn connect_async(config: ClientConfig) -> Result<Client, ConnectError> {
        let next_request = Arc::new(AtomicU32::new(1));
        let subscriptions = Subscriptions::default();
        let (link, welcome) =
            Link::start(&config, next_request.clone(), subscriptions.clone()).await?;
        Ok(Client::started(
            config,
            next_request,
            subscriptions,
            link,
            welcome,
        ))
    }

    fn started(
        config: ClientConfig,
        next_request: Arc<AtomicU32>,
        subscriptions: Subscriptions,
        link: Link,
        welcome: Welcome,
    ) -> Client {
        let mut cache = Cache::new();
        let pending = cache.apply_welcome(&welcome);
        Client {
            config,
            welcome,
            cache,
            link: Some(link),
            next_request,
            subscriptions,
            callbacks: Mutex::new(Callbacks::default()),
            pending,
            settling: None,
        }
    }

    /// The client's identity (the same after [`Client::reconnect`]).
    #[must_use]
    pub fn identity(&self) -> Identity {
        self.welcome.identity
    }

    /// What the server said in the latest `Welcome` (after a redirect, the new region's).
    #[must_use]
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// How the client reaches its server: the config it was made with, but after a redirect followed over QUIC
    /// the new region's address and fingerprint (and after [`Client::follow_redirect`], its WebTransport
    /// session), which [`Client::reconnect`] uses.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The client cache: the rows in view as of the last [`Client::poll`].
    #[must_use]
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Whether the connection is up: `false` once [`Client::poll`] has returned [`Event::Disconnected`], until
    /// [`Client::reconnect`] succeeds.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.link.as_ref().is_some_and(|l| !l.ended)
    }

    fn sender(&self) -> Result<&Sender, SendError> {
        match &self.link {
            Some(link) if !link.ended => Ok(&link.sender),
            _ => Err(SendError::Closed),
        }
    }

    /// Call a reducer with typed arguments (`my_reducer::call(args…)` of a module crate). Its outcome arrives as
    /// [`Event::CallResult`] with the returned id (and fires [`Client::on_result`] callbacks).
    ///
    /// # Errors
    ///
    /// [`SendError`] ([`SendError::Closed`] when not connected).
    pub fn call(&self, call: &ReducerCall) -> Result<RequestId, SendError> {
        self.sender()?.call(call)
    }

    /// Call reducer `reducer` with encoded `args` (one MessagePack array, one element per parameter).
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn call_raw(&self, reducer: &str, args: &[u8]) -> Result<RequestId, SendError> {
        self.sender()?.call_raw(reducer, args)
    }

    /// Send an operator's command (only the server's admin identity may); the answer arrives as
    /// [`Event::Admin`], a refusal as [`Event::ServerError`], with the returned id.
    ///
    /// # Errors
    ///
    /// [`SendError`].
    pub fn admin(&self, command: locus_protocol::AdminCommand) -> Result<RequestId, SendError> {
        self.sender()?.admin(command)
    }

    /// Subscribe to public table `table` (replacing an earlier subscription to it). Remembered, so
    /// [`Client::reconnect`] subscribes again.
    ///
    /// # Errors
    ///
    /// [`SendError`]; the subscription is then not remembered.
    pub fn subscribe(&mut self, table: &str, filter: Filter) -> Result<RequestId, SendError> {
        let request = self.sender()?.subscribe(table, filter.clone())?;
        self.subscriptions().insert(table.to_owned(), filter);
        Ok(request)
    }

    fn subscriptions(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Filter>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// End the subscription to `table` (and forget it).
    ///
    /// # Errors
    ///
    /// [`SendError`]; the subscription is forgotten all the same.
    pub fn unsubscribe(&mut self, table: &str) -> Result<RequestId, SendError> {
        self.subscriptions().remove(table);
        self.sender()?.unsubscribe(table)
    }

    /// Apply everything received since the last call to the cache, fire the callbacks, and return the events in
    /// order. Never blocks. While a redirect's new view is being received, it also decides when that view is
    /// complete (see the [module docs](self)).
    pub fn poll(&mut self) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.pending);
        let mut received = Vec::new();
        if let Some(link) = self.link.as_mut().filter(|l| !l.ended) {
            let inbox = link.inbox.get_mut().unwrap_or_else(PoisonError::into_inner);
            loop {
                match inbox.try_recv() {
                    Ok(incoming) => {
                        let ended = matches!(incoming, Incoming::Ended(_));
                        received.push(incoming);
                        if ended {
                            link.ended = true;
                            break;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        link.ended = true;
                        received.push(Incoming::Ended("the network task stopped".into()));
                        break;
                    }
                }
            }
        }
        let arrived = !received.is_empty();
        for incoming in received {
            self.receive(incoming, &mut events);
        }
        self.settle_redirect(arrived, &mut events);
        let callbacks = self
            .callbacks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for event in &events {
            callbacks.fire(event);
        }
        events
    }

    /// Apply one thing the network task handed over.
    fn receive(&mut self, incoming: Incoming, events: &mut Vec<Event>) {
        match incoming {
            // Not followed by the task (WebTransport): the application follows it; the connection ends next.
            Incoming::Message(ServerMessage::Redirect(to)) => events.push(Event::Redirected {
                region: to.region,
                web: to.web,
                followed: false,
            }),
            Incoming::Message(message) => self.cache.apply_into(&message, events),
            Incoming::Tick(payload) => match TickView::parse(&payload) {
                Ok(Some(tick)) => self.cache.apply_tick_into(&tick, events),
                // The network task checked it: not reached.
                Ok(None) | Err(_) => warn!("skipped a Tick frame that no longer reads"),
            },
            Incoming::Datagram(bytes) => self.cache.apply_datagram_into(&bytes, events),
            #[cfg(not(target_arch = "wasm32"))]
            Incoming::Redirecting(config) => self.config = *config,
            #[cfg(not(target_arch = "wasm32"))]
            Incoming::Redirected {
                welcome,
                region,
                web,
                resubscribed,
            } => {
                events.push(Event::Redirected {
                    region,
                    web,
                    followed: true,
                });
                self.redirected(*welcome, resubscribed);
            }
            Incoming::Ended(reason) => {
                // The new region's view was not complete: the view held stays, as after any disconnect.
                self.cache.cancel_redirect();
                self.settling = None;
                events.push(Event::Disconnected { reason });
            }
        }
    }

    /// A redirected connection said `welcome`, and the subscriptions were made again with `resubscribed`: the
    /// cache builds the new view apart from the one held.
    fn redirected(&mut self, welcome: Welcome, resubscribed: Vec<RequestId>) {
        self.cache.begin_redirect(&welcome, resubscribed);
        self.welcome = welcome;
        let now = Instant::now();
        self.settling = Some(Settling {
            began: now,
            quiet_since: now,
        });
    }

    /// Finish a redirect whose new view is complete: the subscriptions made again were answered and nothing
    /// arrived for [`REDIRECT_SETTLE_TICKS`] tick periods, or [`REDIRECT_LIMIT`] passed (the cache finishes it
    /// itself on a message of a later tick). `arrived`: something arrived in this poll.
    fn settle_redirect(&mut self, arrived: bool, events: &mut Vec<Event>) {
        let Some(settling) = self.settling.as_mut() else {
            return;
        };
        if !self.cache.is_redirecting() {
            self.settling = None;
            return;
        }
        let now = Instant::now();
        if arrived {
            settling.quiet_since = now;
        }
        let period = Duration::from_secs_f64(1.0 / f64::from(self.welcome.tick_rate.max(1)));
        let quiet = now.saturating_duration_since(settling.quiet_since);
        let settled = self.cache.redirect_answered() && quiet >= period * REDIRECT_SETTLE_TICKS;
        if settled || now.saturating_duration_since(settling.began) >= REDIRECT_LIMIT {
            self.cache.finish_redirect_into(events);
            self.settling = None;
        }
    }

    /// Close the connection (natively waiting briefly for the server to be told). The cache keeps its last view;
    /// the next [`Client::poll`] reports [`Event::Disconnected`].
    pub fn disconnect(&mut self) {
        // The new region's view of a redirect in progress would never complete: the view held stays.
        self.cache.cancel_redirect();
        self.settling = None;
        if let Some(mut link) = self.link.take() {
            link.shut_down();
            if !link.ended {
                self.pending.push(Event::Disconnected {
                    reason: "closed by the client".into(),
                });
            }
        }
    }

    /// Connect again with the same identity (the token of the last `Welcome`) and subscriptions, closing the
    /// current connection if it is up, to the server of [`Client::config`] (after a redirect, the new region's).
    /// The cache starts a new view: the next [`Client::poll`] reports every row
    /// of the old view as [`Event::Deleted`], then [`Event::Connected`], then the server's fresh inserts.
    /// Messages of the old connection not yet polled are dropped. Blocks until `Welcome` (native builds).
    ///
    /// # Errors
    ///
    /// [`ConnectError`]; the client is then disconnected and its cache keeps the old view.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn reconnect(&mut self) -> Result<(), ConnectError> {
        let config = self.reconnect_config();
        let (link, welcome) = Link::start(
            &config,
            self.next_request.clone(),
            self.subscriptions.clone(),
        )?;
        self.restarted(link, welcome);
        Ok(())
    }

    /// Follow a redirect the client could not follow by itself ([`Event::Redirected`] with `followed: false`:
    /// WebTransport, whose session URL and certificate hashes are in the new region's `/locus.json`, the event's
    /// `web`): connect to the session `web` names with the same identity, subscribe again, and keep the view
    /// held until the new region's has arrived, then report only the rows that differ, as a redirect followed by
    /// itself does ([`Cache::begin_redirect`]). Closes the current connection if it is up; [`Client::config`]
    /// then names `web`. Blocks until `Welcome` (native builds).
    ///
    /// # Errors
    ///
    /// [`ConnectError`]; the client is then disconnected, its cache keeps the view, and its config is unchanged.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn follow_redirect(&mut self, web: WebTransportConfig) -> Result<(), ConnectError> {
        let config = self.follow_config(web);
        let (link, welcome) = Link::start(
            &config,
            self.next_request.clone(),
            self.subscriptions.clone(),
        )?;
        self.followed(config, link, welcome);
        Ok(())
    }

    /// Follow a redirect the client could not follow by itself: see the native `follow_redirect`. Completes once
    /// `Welcome` came (browser builds).
    ///
    /// # Errors
    ///
    /// [`ConnectError`]; the client is then disconnected, its cache keeps the view, and its config is unchanged.
    #[cfg(target_arch = "wasm32")]
    pub async fn follow_redirect(&mut self, web: WebTransportConfig) -> Result<(), ConnectError> {
        let config = self.follow_config(web);
        let (link, welcome) = Link::start(
            &config,
            self.next_request.clone(),
            self.subscriptions.clone(),
        )
        .await?;
        self.followed(config, link, welcome);
        Ok(())
    }

    /// Close the current connection; the config to follow a redirect to `web` with this identity.
    fn follow_config(&mut self, web: WebTransportConfig) -> ClientConfig {
        let mut config = self.reconnect_config();
        config.transport = crate::Transport::WebTransport(web);
        config
    }

    /// Install the connection that followed a redirect: the subscriptions again, and the cache building the new
    /// view apart from the one held.
    fn followed(&mut self, config: ClientConfig, link: Link, welcome: Welcome) {
        let resubscribed = self
            .subscriptions()
            .iter()
            .filter_map(|(table, filter)| {
                link.sender
                    .subscribe(table, filter.clone())
                    .inspect_err(|e| warn!("cannot subscribe to `{table}` again: {e}"))
                    .ok()
            })
            .collect();
        self.config = config;
        self.link = Some(link);
        self.redirected(welcome, resubscribed);
    }

    /// Connect again with the same identity (the token of the last `Welcome`) and subscriptions, closing the
    /// current connection if it is up. The cache starts a new view: the next [`Client::poll`] reports every row
    /// of the old view as [`Event::Deleted`], then [`Event::Connected`], then the server's fresh inserts.
    /// Messages of the old connection not yet polled are dropped. Completes once `Welcome` came (browser builds).
    ///
    /// # Errors
    ///
    /// [`ConnectError`]; the client is then disconnected and its cache keeps the old view.
    #[cfg(target_arch = "wasm32")]
    pub async fn reconnect(&mut self) -> Result<(), ConnectError> {
        let config = self.reconnect_config();
        let (link, welcome) = Link::start(
            &config,
            self.next_request.clone(),
            self.subscriptions.clone(),
        )
        .await?;
        self.restarted(link, welcome);
        Ok(())
    }

    /// Close the current connection; the config to connect again with this identity.
    fn reconnect_config(&mut self) -> ClientConfig {
        if let Some(mut link) = self.link.take() {
            link.shut_down();
        }
        let mut config = self.config.clone();
        config.token = Some(self.welcome.token);
        config
    }

    /// Install the new connection: a new view in the cache (a redirect in progress is dropped), the
    /// subscriptions again.
    fn restarted(&mut self, link: Link, welcome: Welcome) {
        let events = self.cache.apply_welcome(&welcome);
        self.pending.extend(events);
        self.settling = None;
        for (table, filter) in self.subscriptions().iter() {
            if let Err(e) = link.sender.subscribe(table, filter.clone()) {
                warn!("cannot subscribe to `{table}` again: {e}");
            }
        }
        self.welcome = welcome;
        self.link = Some(link);
    }

    /// Run `f` with each row of `table` that enters the view, decoded as `T` (rows that do not decode are
    /// logged and skipped). Fired by [`Client::poll`].
    pub fn on_insert<T: DeserializeOwned + 'static>(
        &mut self,
        table: &str,
        mut f: impl FnMut(&T) + Send + 'static,
    ) {
        self.on_row(table, move |event| {
            if let Event::Inserted { name, row, .. } = event
                && let Some(row) = decode_for_callback::<T>(name, row)
            {
                f(&row);
            }
        });
    }

    /// Run `f` with the old and new row each time a row of `table` in view changes. Fired by [`Client::poll`].
    pub fn on_update<T: DeserializeOwned + 'static>(
        &mut self,
        table: &str,
        mut f: impl FnMut(&T, &T) + Send + 'static,
    ) {
        self.on_row(table, move |event| {
            if let Event::Updated { name, old, new, .. } = event
                && let Some(old) = decode_for_callback::<T>(name, old)
                && let Some(new) = decode_for_callback::<T>(name, new)
            {
                f(&old, &new);
            }
        });
    }

    /// Run `f` with each row of `table` that leaves the view (as last seen). Fired by [`Client::poll`].
    pub fn on_delete<T: DeserializeOwned + 'static>(
        &mut self,
        table: &str,
        mut f: impl FnMut(&T) + Send + 'static,
    ) {
        self.on_row(table, move |event| {
            if let Event::Deleted { name, old, .. } = event
                && let Some(old) = decode_for_callback::<T>(name, old)
            {
                f(&old);
            }
        });
    }

    /// Run `f` with the outcome of each reducer call of this client. Fired by [`Client::poll`].
    pub fn on_result(&mut self, f: impl FnMut(RequestId, &CallOutcome) + Send + 'static) {
        self.callbacks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .results
            .push(Box::new(f));
    }

    fn on_row(&mut self, table: &str, f: impl FnMut(&Event) + Send + 'static) {
        self.callbacks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .rows
            .entry(table.to_owned())
            .or_default()
            .push(Box::new(f));
    }
}
