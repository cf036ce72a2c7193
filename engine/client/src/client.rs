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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU32;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
#[cfg(not(target_arch = "wasm32"))]
use std::thread::JoinHandle;

use locus_protocol::{CallOutcome, Filter, ServerMessage, TickView};
use locus_types::{Identity, ReducerCall};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::cache::decode_row;
use crate::connection::Received;
use crate::{
    Cache, ClientConfig, ConnectError, Connection, Event, RequestId, SendError, Sender, Welcome,
};

/// What the network task hands the client.
enum Incoming {
    Message(ServerMessage),
    /// A `Tick` frame's payload, checked by the network task: applied in place ([`Cache::apply_tick`]).
    Tick(Vec<u8>),
    /// A QUIC datagram: protocol version 4's positions ([`Cache::apply_datagram`]).
    Datagram(Vec<u8>),
    /// The connection ended; why, for people.
    Ended(String),
}

/// A live connection run by a background task: natively a thread with a current-thread tokio runtime, in the
/// browser a task on the page's event loop.
struct Link {
    sender: Sender,
    inbox: Mutex<mpsc::Receiver<Incoming>>,
    stop: Option<oneshot::Sender<()>>,
    #[cfg(not(target_arch = "wasm32"))]
    thread: Option<JoinHandle<()>>,
    /// `poll` has delivered [`Event::Disconnected`].
    ended: bool,
}

impl Link {
    /// Start the network thread and connect; returns once `Welcome` came (or connecting failed).
    #[cfg(not(target_arch = "wasm32"))]
    fn start(
        config: &ClientConfig,
        next_request: Arc<AtomicU32>,
    ) -> Result<(Link, Welcome), ConnectError> {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (inbox_tx, inbox_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
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
                    let conn = match Connection::connect_counting(&config, next_request).await {
                        Ok(conn) => conn,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    if ready_tx
                        .send(Ok((conn.sender(), conn.welcome().clone())))
                        .is_err()
                    {
                        conn.close().await;
                        return;
                    }
                    run(conn, inbox_tx, stop_rx).await;
                });
            })
            .map_err(ConnectError::Thread)?;
        let ready = ready_rx.recv();
        match ready {
            Ok(Ok((sender, welcome))) => Ok((
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

    /// Connect, then run the connection in a task on the page's event loop.
    #[cfg(target_arch = "wasm32")]
    async fn start(
        config: &ClientConfig,
        next_request: Arc<AtomicU32>,
    ) -> Result<(Link, Welcome), ConnectError> {
        let conn = Connection::connect_counting(config, next_request).await?;
        let (inbox_tx, inbox_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let link = Link {
            sender: conn.sender(),
            inbox: Mutex::new(inbox_rx),
            stop: Some(stop_tx),
            ended: false,
        };
        let welcome = conn.welcome().clone();
        wasm_bindgen_futures::spawn_local(run(conn, inbox_tx, stop_rx));
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

/// The network task's loop: forward messages until the connection ends, a fatal error comes, or the client
/// stops it.
async fn run(mut conn: Connection, inbox: mpsc::Sender<Incoming>, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut stop => {
                debug!("closing the connection");
                break;
            }
            received = conn.next_received() => match received {
                Ok(Received::Tick(payload)) => {
                    if inbox.send(Incoming::Tick(payload)).is_err() {
                        break;
                    }
                }
                Ok(Received::Datagram(bytes)) => {
                    if inbox.send(Incoming::Datagram(bytes)).is_err() {
                        break;
                    }
                }
                Ok(Received::Message(message)) => {
                    let fatal = match &message {
                        ServerMessage::Error { fatal: true, code, message, .. } => {
                            Some(format!("the server closed the connection: {code:?}: {message}"))
                        }
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
                Err(e) => {
                    let _ = inbox.send(Incoming::Ended(e.describe()));
                    break;
                }
            },
        }
    }
    conn.close().await;
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
    /// Table name → filter, replayed by [`Client::reconnect`].
    subscriptions: BTreeMap<String, Filter>,
    callbacks: Mutex<Callbacks>,
    /// Events produced outside `poll` (connect, reconnect), delivered by the next `poll`.
    pending: Vec<Event>,
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
        let (link, welcome) = Link::start(&config, next_request.clone())?;
        Ok(Client::started(config, next_request, link, welcome))
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
        let (link, welcome) = Link::start(&config, next_request.clone()).await?;
        Ok(Client::started(config, next_request, link, welcome))
    }

    fn started(
        config: ClientConfig,
        next_request: Arc<AtomicU32>,
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
            subscriptions: BTreeMap::new(),
            callbacks: Mutex::new(Callbacks::default()),
            pending,
        }
    }

    /// The client's identity (the same after [`Client::reconnect`]).
    #[must_use]
    pub fn identity(&self) -> Identity {
        self.welcome.identity
    }

    /// What the server said in the latest `Welcome`.
    #[must_use]
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
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
        self.subscriptions.insert(table.to_owned(), filter);
        Ok(request)
    }

    /// End the subscription to `table` (and forget it).
    ///
    /// # Errors
    ///
    /// [`SendError`]; the subscription is forgotten all the same.
    pub fn unsubscribe(&mut self, table: &str) -> Result<RequestId, SendError> {
        self.subscriptions.remove(table);
        self.sender()?.unsubscribe(table)
    }

    /// Apply everything received since the last call to the cache, fire the callbacks, and return the events in
    /// order. Never blocks.
    pub fn poll(&mut self) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.pending);
        if let Some(link) = self.link.as_mut().filter(|l| !l.ended) {
            let inbox = link.inbox.get_mut().unwrap_or_else(PoisonError::into_inner);
            loop {
                match inbox.try_recv() {
                    Ok(Incoming::Message(message)) => {
                        self.cache.apply_into(&message, &mut events);
                    }
                    Ok(Incoming::Tick(payload)) => match TickView::parse(&payload) {
                        Ok(Some(tick)) => self.cache.apply_tick_into(&tick, &mut events),
                        // The network task checked it: not reached.
                        Ok(None) | Err(_) => warn!("skipped a Tick frame that no longer reads"),
                    },
                    Ok(Incoming::Datagram(bytes)) => {
                        self.cache.apply_datagram_into(&bytes, &mut events);
                    }
                    Ok(Incoming::Ended(reason)) => {
                        link.ended = true;
                        events.push(Event::Disconnected { reason });
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        link.ended = true;
                        events.push(Event::Disconnected {
                            reason: "the network task stopped".into(),
                        });
                        break;
                    }
                }
            }
        }
        let callbacks = self
            .callbacks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for event in &events {
            callbacks.fire(event);
        }
        events
    }

    /// Close the connection (natively waiting briefly for the server to be told). The cache keeps its last view;
    /// the next [`Client::poll`] reports [`Event::Disconnected`].
    pub fn disconnect(&mut self) {
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
    /// current connection if it is up. The cache starts a new view: the next [`Client::poll`] reports every row
    /// of the old view as [`Event::Deleted`], then [`Event::Connected`], then the server's fresh inserts.
    /// Messages of the old connection not yet polled are dropped. Blocks until `Welcome` (native builds).
    ///
    /// # Errors
    ///
    /// [`ConnectError`]; the client is then disconnected and its cache keeps the old view.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn reconnect(&mut self) -> Result<(), ConnectError> {
        let config = self.reconnect_config();
        let (link, welcome) = Link::start(&config, self.next_request.clone())?;
        self.restarted(link, welcome);
        Ok(())
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
        let (link, welcome) = Link::start(&config, self.next_request.clone()).await?;
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

    /// Install the new connection: a new view in the cache, the subscriptions again.
    fn restarted(&mut self, link: Link, welcome: Welcome) {
        let events = self.cache.apply_welcome(&welcome);
        self.pending.extend(events);
        for (table, filter) in &self.subscriptions {
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
