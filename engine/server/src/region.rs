//! The I/O shell of a world that is one region of a larger one: border traffic with the neighbouring regions over
//! NATS.
//!
//! - The tick thread numbers each tick's changes to the neighbours' copies ([`crate::TickOutput::border`]) and the
//!   whole copies neighbours asked for ([`RegionLink::after_tick`]); the release thread hands them to the NATS task
//!   once the tick is durable (a neighbour's clients, like this region's, are never shown what a crash could take
//!   back).
//! - The NATS task publishes them (core NATS: `locus.<world>.border.<to>`), and takes this region's: it checks each
//!   follows on from the last ([`locus_region::Receiver`]) and queues it for the next tick as
//!   [`crate::world::Input::Border`], or asks the sender for its whole copy
//!   (`locus.<world>.resync.<sender>`, the payload the asking region's index). It asks every other region when it
//!   (re)connects to NATS, since messages sent meanwhile are lost.
//!
//! The transport may drop messages (a full queue here, NATS's at-most-once delivery, a restart): each loss costs a
//! whole copy, never a wrong one. The subjects and the message format are in `engine/docs/regions.md`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use locus_region::link::{self, BorderMessage, Handled, Payload};
use locus_region::message::{Envelope, RegionMessage};
use locus_region::{BorderDelta, Destination, RegionId, WorldLayout};

use crate::border::BorderChange;
use crate::metrics::Percentiles;
use crate::world::{Input, World};

/// Which region of which world a server runs ([`crate::ServerConfig::region`]).
#[derive(Clone, Debug)]
pub struct RegionSetup {
    /// The world's layout (`world.toml`).
    pub layout: WorldLayout,
    /// This region.
    pub own: RegionId,
}

/// How many outgoing border messages may wait for the NATS task; past that they are dropped (and the neighbour
/// asks for a whole copy).
const OUT_QUEUE: usize = 4096;

/// How often, at most, a region asks one neighbour for a whole copy.
const RESYNC_EVERY: Duration = Duration::from_millis(500);

/// How many recent border latencies [`RegionStats::latency`] covers.
const LATENCY_WINDOW: usize = 4096;

/// Counters of a region's border traffic.
#[derive(Debug, Default)]
pub(crate) struct RegionMetrics {
    sent: AtomicU64,
    received: AtomicU64,
    dropped_out: AtomicU64,
    resyncs_asked: AtomicU64,
    wholes_sent: AtomicU64,
    other_schema: AtomicU64,
    copies_held: AtomicU64,
    messages_sent: AtomicU64,
    messages_received: AtomicU64,
    unconfirmed: AtomicU64,
    /// From a neighbour making a message to this region queueing it for its next tick.
    latency: Mutex<VecDeque<Duration>>,
    /// From another region publishing a message (after its tick was durable) to this region taking it.
    message_latency: Mutex<VecDeque<Duration>>,
}

/// A region's border traffic so far ([`crate::Server::region_stats`]).
#[derive(Clone, Debug, Default)]
pub struct RegionStats {
    /// Messages published to neighbours.
    pub sent: u64,
    /// Messages received from neighbours (applied or not).
    pub received: u64,
    /// Outgoing messages dropped because the NATS task fell behind.
    pub dropped_out: u64,
    /// Whole copies asked of neighbours (after a loss, a neighbour's restart, or this region's start).
    pub resyncs_asked: u64,
    /// Whole copies sent to neighbours that asked.
    pub wholes_sent: u64,
    /// Messages ignored because their sender runs another schema.
    pub other_schema: u64,
    /// Copies of neighbours' rows held (as of the last tick).
    pub copies_held: u64,
    /// Messages to other regions (handoffs and their answers) JetStream stored.
    pub messages_sent: u64,
    /// Messages from other regions taken from JetStream (applied, or found applied before).
    pub messages_received: u64,
    /// Messages to other regions waiting for JetStream's confirmation (as of the last tick).
    pub unconfirmed: u64,
    /// From another region publishing a message (once its tick was durable) to this region taking it from
    /// JetStream.
    pub message_latency: Percentiles,
    /// From a neighbour making a message (after its tick was durable) to this region queueing it for its next
    /// tick, over the recent messages (both clocks are the machine's: meaningful on one machine).
    pub latency: Percentiles,
}

impl RegionMetrics {
    pub(crate) fn stats(&self) -> RegionStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RegionStats {
            sent: l(&self.sent),
            received: l(&self.received),
            dropped_out: l(&self.dropped_out),
            resyncs_asked: l(&self.resyncs_asked),
            wholes_sent: l(&self.wholes_sent),
            other_schema: l(&self.other_schema),
            copies_held: l(&self.copies_held),
            messages_sent: l(&self.messages_sent),
            messages_received: l(&self.messages_received),
            unconfirmed: l(&self.unconfirmed),
            latency: Percentiles::of(&self.latency.lock().expect("region metrics lock")),
            message_latency: Percentiles::of(
                &self.message_latency.lock().expect("region metrics lock"),
            ),
        }
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The subject region `to` takes its border messages on.
fn border_subject(layout: &WorldLayout, to: RegionId) -> String {
    format!("locus.{}.border.{}", layout.world(), layout.region(to).name)
}

/// The subject region `of` takes requests for whole copies on.
fn resync_subject(layout: &WorldLayout, of: RegionId) -> String {
    format!("locus.{}.resync.{}", layout.world(), layout.region(of).name)
}

fn schema_of(world: &World) -> u64 {
    let defs: Vec<_> = world.db().tables().map(|t| t.def().clone()).collect();
    link::schema_fingerprint(&defs)
}

/// What the tick thread hands the NATS task (through the release thread, once the tick is durable).
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A border message: its subject and bytes (core NATS).
    Border(String, Vec<u8>),
    /// A message of the outbox (JetStream, with its number as the de-duplication id).
    Message {
        /// Its number.
        seq: u64,
        /// Where it goes.
        to: Destination,
        /// The encoded envelope.
        bytes: Vec<u8>,
    },
    /// Acknowledge the JetStream message of this handle (applied, and durable).
    Ack(u64),
}

/// The tick thread's side: numbers the messages, answers requests for whole copies.
#[derive(Debug)]
pub(crate) struct RegionLink {
    layout: WorldLayout,
    own: RegionId,
    sender: link::Sender,
    /// Regions that asked for a whole copy (from the NATS task).
    resync: mpsc::Receiver<RegionId>,
    /// The schema's fingerprint, shared with the NATS task's receiver.
    schema: Arc<AtomicU64>,
    metrics: Arc<RegionMetrics>,
}

impl RegionLink {
    /// The messages of a tick: its changes to the neighbours' copies, then the whole copies asked for since the
    /// last tick.
    pub(crate) fn after_tick(
        &mut self,
        world: &World,
        border: Vec<(RegionId, BorderDelta)>,
        transmits: Vec<(u64, Destination, Vec<u8>)>,
        acks: Vec<u64>,
    ) -> Vec<Outgoing> {
        let now = now_us();
        let mut out = Vec::new();
        for (to, delta) in border {
            let m = self.sender.delta(to, delta, now);
            out.push(Outgoing::Border(
                border_subject(&self.layout, to),
                m.encode(),
            ));
        }
        out.extend(
            transmits
                .into_iter()
                .map(|(seq, to, bytes)| Outgoing::Message { seq, to, bytes }),
        );
        out.extend(acks.into_iter().map(Outgoing::Ack));
        let mut asked: Vec<RegionId> = self.resync.try_iter().collect();
        asked.sort_unstable();
        asked.dedup();
        for to in asked {
            if to == self.own || usize::from(to.0) >= self.layout.regions().len() {
                continue;
            }
            let rows = world.border_whole_for(to);
            let m = self.sender.message(to, Payload::Whole { rows }, now);
            self.metrics.wholes_sent.fetch_add(1, Ordering::Relaxed);
            out.push(Outgoing::Border(
                border_subject(&self.layout, to),
                m.encode(),
            ));
        }
        self.metrics
            .copies_held
            .store(world.border_copies_held() as u64, Ordering::Relaxed);
        self.metrics
            .unconfirmed
            .store(world.unconfirmed_messages() as u64, Ordering::Relaxed);
        out
    }

    /// After a publish: the new schema's fingerprint, and a whole copy for every other region (the world's border
    /// feed started again).
    pub(crate) fn after_publish(&mut self, world: &World) -> Vec<Outgoing> {
        let schema = schema_of(world);
        self.schema.store(schema, Ordering::SeqCst);
        self.sender.set_schema(schema);
        let now = now_us();
        (0..self.layout.regions().len() as u16)
            .map(RegionId)
            .filter(|&r| r != self.own)
            .map(|to| {
                let rows = world.border_whole_for(to);
                let m = self.sender.message(to, Payload::Whole { rows }, now);
                Outgoing::Border(border_subject(&self.layout, to), m.encode())
            })
            .collect()
    }
}

/// The release thread's side: hands durable ticks' messages to the NATS task without waiting.
#[derive(Debug, Clone)]
pub(crate) struct RegionOut {
    tx: tokio::sync::mpsc::Sender<Outgoing>,
    metrics: Arc<RegionMetrics>,
}

impl RegionOut {
    pub(crate) fn send(&self, messages: Vec<Outgoing>) {
        for m in messages {
            if self.tx.try_send(m).is_err() {
                self.metrics.dropped_out.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Start a region: the world becomes `setup.own` of its layout, and the NATS task starts on `runtime` (it keeps
/// connecting until NATS is there). Returns the tick thread's and the release thread's sides.
pub(crate) fn start(
    setup: &RegionSetup,
    world: &mut World,
    runtime: &tokio::runtime::Runtime,
    inbox: tokio::sync::mpsc::Sender<Input>,
    metrics: Arc<RegionMetrics>,
    here: locus_protocol::Redirect,
) -> (RegionLink, RegionOut) {
    world.set_region(setup.layout.clone(), setup.own, here);
    let schema = Arc::new(AtomicU64::new(schema_of(world)));
    let epoch = rand::random::<u64>();
    let (resync_tx, resync_rx) = mpsc::channel();
    let (out_tx, out_rx) = tokio::sync::mpsc::channel(OUT_QUEUE);
    let task = NatsTask {
        layout: setup.layout.clone(),
        own: setup.own,
        inbox,
        resync: resync_tx,
        receiver: link::Receiver::new(schema.load(Ordering::SeqCst)),
        schema: schema.clone(),
        metrics: metrics.clone(),
        asked: HashMap::new(),
        warned_schema: false,
        ackers: HashMap::new(),
        next_ack: 0,
    };
    runtime.spawn(task.run(out_rx));
    (
        RegionLink {
            layout: setup.layout.clone(),
            own: setup.own,
            sender: link::Sender::new(setup.own, epoch, schema.load(Ordering::SeqCst)),
            resync: resync_rx,
            schema,
            metrics: metrics.clone(),
        },
        RegionOut {
            tx: out_tx,
            metrics,
        },
    )
}

struct NatsTask {
    layout: WorldLayout,
    own: RegionId,
    inbox: tokio::sync::mpsc::Sender<Input>,
    resync: mpsc::Sender<RegionId>,
    receiver: link::Receiver,
    schema: Arc<AtomicU64>,
    metrics: Arc<RegionMetrics>,
    /// When this region last asked each neighbour for a whole copy.
    asked: HashMap<RegionId, Instant>,
    warned_schema: bool,
    /// The JetStream messages applied or being applied, by handle, until acknowledged.
    ackers: HashMap<u64, async_nats::jetstream::message::Acker>,
    next_ack: u64,
}

/// The JetStream stream of a world's messages between regions.
fn stream_name(layout: &WorldLayout) -> String {
    let world: String = layout
        .world()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("LOCUS_{world}")
}

/// The subject of messages to region `to`.
fn message_subject(layout: &WorldLayout, to: RegionId) -> String {
    format!("locus.{}.to.{}", layout.world(), layout.region(to).name)
}

/// How long JetStream remembers a message id (drops a second copy published within it).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Make (or find) the world's stream and this region's durable consumer, and start taking its messages.
async fn consume(
    js: &async_nats::jetstream::Context,
    layout: &WorldLayout,
    own: RegionId,
) -> Result<async_nats::jetstream::consumer::pull::Stream, String> {
    use async_nats::jetstream::{consumer, stream};
    let world = layout.world();
    let stream = js
        .get_or_create_stream(stream::Config {
            name: stream_name(layout),
            subjects: vec![format!("locus.{world}.to.*")],
            duplicate_window: DUPLICATE_WINDOW,
            max_age: Duration::from_secs(7 * 24 * 3600),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("the JetStream stream: {e}"))?;
    let name = format!("region-{}", layout.region(own).name);
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: message_subject(layout, own),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("the JetStream consumer: {e}"))?;
    consumer
        .messages()
        .await
        .map_err(|e| format!("the JetStream consumer's messages: {e}"))
}

impl NatsTask {
    async fn run(mut self, mut out: tokio::sync::mpsc::Receiver<Outgoing>) {
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let own_name = self.layout.region(self.own).name.clone();
        let connected = async_nats::ConnectOptions::new()
            .name(format!("locus-{}-{own_name}", self.layout.world()))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let events_tx = events_tx.clone();
                async move {
                    let _ = events_tx.send(event);
                }
            })
            .connect(self.layout.nats())
            .await;
        let client = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(%e, nats = self.layout.nats(), "cannot connect to NATS: the region works alone");
                return;
            }
        };
        let subscribed = async {
            let border = client
                .subscribe(border_subject(&self.layout, self.own))
                .await?;
            let resync = client
                .subscribe(resync_subject(&self.layout, self.own))
                .await?;
            Ok::<_, async_nats::SubscribeError>((border, resync))
        };
        let (mut border, mut resync) = match subscribed.await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%e, "cannot subscribe to this region's NATS subjects: the region works alone");
                return;
            }
        };
        tracing::info!(
            region = own_name,
            nats = self.layout.nats(),
            "connected to NATS"
        );
        self.ask_all(&client).await;
        let js = async_nats::jetstream::new(client.clone());
        let mut messages = loop {
            match consume(&js, &self.layout, self.own).await {
                Ok(m) => break m,
                Err(e) => {
                    tracing::warn!(e, "JetStream is not ready: trying again in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        loop {
            tokio::select! {
                m = messages.next() => match m {
                    Some(Ok(m)) => self.region_message(m).await,
                    Some(Err(e)) => {
                        tracing::warn!(%e, "JetStream consumer");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => {
                        tracing::warn!("the JetStream consumer ended: taking it again");
                        match consume(&js, &self.layout, self.own).await {
                            Ok(m) => messages = m,
                            Err(e) => {
                                tracing::warn!(e, "JetStream");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                },
                m = border.next() => match m {
                    Some(m) => self.border_message(&client, &m.payload).await,
                    None => break,
                },
                m = resync.next() => match m {
                    Some(m) => {
                        if let Ok(bytes) = <[u8; 2]>::try_from(&m.payload[..]) {
                            let _ = self.resync.send(RegionId(u16::from_be_bytes(bytes)));
                        }
                    }
                    None => break,
                },
                o = out.recv() => match o {
                    Some(Outgoing::Border(subject, bytes)) => {
                        if let Err(e) = client.publish(subject, bytes.into()).await {
                            tracing::warn!(%e, "a border message was not published");
                        } else {
                            self.metrics.sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(Outgoing::Message { seq, to, bytes }) => {
                        self.publish(&js, seq, to, bytes).await;
                    }
                    Some(Outgoing::Ack(handle)) => {
                        if let Some(acker) = self.ackers.remove(&handle) {
                            tokio::spawn(async move {
                                if let Err(e) = acker.ack().await {
                                    // Delivered again later, and found applied.
                                    tracing::warn!(%e, "a JetStream acknowledgement was not sent");
                                }
                            });
                        }
                    }
                    // The server is stopping.
                    None => break,
                },
                Some(event) = events.recv() => {
                    tracing::info!(%event, "NATS");
                    if matches!(event, async_nats::Event::Connected) {
                        // Messages may have been lost while disconnected.
                        self.asked.clear();
                        self.ask_all(&client).await;
                    }
                }
            }
        }
    }

    /// Publish message `seq` of the outbox; once JetStream stored it, the world drops it from the outbox.
    /// Messages are written to NATS in the order given (so a receiver usually takes them in the order they were
    /// committed); their acknowledgements are awaited apart. A message to every region is published to each, the
    /// sender included, each copy with a de-duplication id of its own; it is confirmed once every copy is stored.
    async fn publish(
        &self,
        js: &async_nats::jetstream::Context,
        seq: u64,
        to: Destination,
        bytes: Vec<u8>,
    ) {
        let own = &self.layout.region(self.own).name;
        let id = locus_region::message_id(self.layout.world(), own, seq);
        let copies: Vec<(String, String)> = match to {
            Destination::Region(r) => vec![(message_subject(&self.layout, r), id)],
            Destination::All => (0..self.layout.regions().len() as u16)
                .map(RegionId)
                .map(|r| {
                    (
                        message_subject(&self.layout, r),
                        format!("{id}.{}", self.layout.region(r).name),
                    )
                })
                .collect(),
        };
        let mut sent = Vec::with_capacity(copies.len());
        for (subject, id) in copies {
            let publish = async_nats::jetstream::message::PublishMessage::build()
                .payload(bytes.clone().into())
                .message_id(id);
            sent.push(js.send_publish(subject, publish).await);
        }
        let (inbox, metrics) = (self.inbox.clone(), self.metrics.clone());
        tokio::spawn(async move {
            let mut stored = Ok(());
            for s in sent {
                let r = match s {
                    Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if r.is_err() {
                    stored = r;
                }
            }
            match stored {
                Ok(()) => {
                    metrics.messages_sent.fetch_add(1, Ordering::Relaxed);
                    let _ = inbox.send(Input::Confirmed { seqs: vec![seq] }).await;
                }
                // The outbox publishes it again.
                Err(e) => tracing::warn!(seq, e, "a message to other regions was not stored"),
            }
        });
    }

    /// A message from another region: for the next tick, with a handle to acknowledge it by once applied.
    async fn region_message(&mut self, m: async_nats::jetstream::Message) {
        let (message, acker) = m.split();
        let envelope = match Envelope::decode(&message.payload) {
            Ok(e) if usize::from(e.from) < self.layout.regions().len() => e,
            Ok(e) => {
                tracing::error!(from = e.from, "a message from an unknown region: dropped");
                let _ = acker.ack().await;
                return;
            }
            Err(e) => {
                tracing::error!(%e, "a message from another region that does not decode: dropped");
                let _ = acker.ack().await;
                return;
            }
        };
        self.metrics
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        let latency = Duration::from_micros(now_us().saturating_sub(envelope.sent_us));
        {
            let mut q = self
                .metrics
                .message_latency
                .lock()
                .expect("region metrics lock");
            if q.len() == LATENCY_WINDOW {
                q.pop_front();
            }
            q.push_back(latency);
        }
        self.next_ack += 1;
        let handle = self.next_ack;
        self.ackers.insert(handle, acker);
        let message: RegionMessage = envelope.message;
        let _ = self
            .inbox
            .send(Input::Arrive {
                from: RegionId(envelope.from),
                seq: envelope.seq,
                message,
                ack: handle,
            })
            .await;
    }

    /// Ask every other region for its whole copy.
    async fn ask_all(&mut self, client: &async_nats::Client) {
        for r in 0..self.layout.regions().len() as u16 {
            if RegionId(r) != self.own {
                self.ask(client, RegionId(r)).await;
            }
        }
    }

    async fn ask(&mut self, client: &async_nats::Client, from: RegionId) {
        if self
            .asked
            .get(&from)
            .is_some_and(|t| t.elapsed() < RESYNC_EVERY)
        {
            return;
        }
        self.asked.insert(from, Instant::now());
        self.metrics.resyncs_asked.fetch_add(1, Ordering::Relaxed);
        let payload = self.own.0.to_be_bytes().to_vec();
        if let Err(e) = client
            .publish(resync_subject(&self.layout, from), payload.into())
            .await
        {
            tracing::warn!(%e, "a request for a whole copy was not published");
        }
    }

    async fn border_message(&mut self, client: &async_nats::Client, bytes: &[u8]) {
        self.metrics.received.fetch_add(1, Ordering::Relaxed);
        let m = match BorderMessage::decode(bytes) {
            Ok(m) if usize::from(m.from) < self.layout.regions().len() && m.from != self.own.0 => m,
            Ok(m) => {
                tracing::warn!(from = m.from, "a border message from an unknown region");
                return;
            }
            Err(e) => {
                tracing::warn!(%e, "a border message that does not decode");
                return;
            }
        };
        let from = RegionId(m.from);
        let sent = m.sent_us;
        self.receiver.set_schema(self.schema.load(Ordering::SeqCst));
        let change = match self.receiver.handle(m) {
            Handled::Delta(d) => BorderChange::Delta(d),
            Handled::Whole(rows) => {
                self.asked.remove(&from);
                BorderChange::Whole(rows)
            }
            Handled::Resync => {
                self.ask(client, from).await;
                return;
            }
            Handled::OtherSchema => {
                self.metrics.other_schema.fetch_add(1, Ordering::Relaxed);
                if !self.warned_schema {
                    self.warned_schema = true;
                    tracing::warn!(
                        from = self.layout.region(from).name,
                        "a neighbouring region runs another module: its rows are not shown until both run the same"
                    );
                }
                return;
            }
        };
        let latency = Duration::from_micros(now_us().saturating_sub(sent));
        {
            let mut q = self.metrics.latency.lock().expect("region metrics lock");
            if q.len() == LATENCY_WINDOW {
                q.pop_front();
            }
            q.push_back(latency);
        }
        let _ = self.inbox.send(Input::Border { from, change }).await;
    }
}
