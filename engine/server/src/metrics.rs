//! Counters and recent percentiles of the running server, read by [`crate::Server::metrics`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locus_types::Tick;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::world::TickStats;

/// How many recent ticks the percentiles cover.
const WINDOW: usize = 4096;

/// Shared by the tick thread, the release thread and the network tasks.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    ticks: AtomicU64,
    last_tick: AtomicU64,
    overruns: AtomicU64,
    sessions: AtomicU64,
    calls: AtomicU64,
    failed_calls: AtomicU64,
    row_changes: AtomicU64,
    rows_sent: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) datagrams_out: AtomicU64,
    pub(crate) lossy_links: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) refused_pending: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) too_slow: AtomicU64,
    pub(crate) failed: AtomicBool,
    recent: Mutex<Recent>,
    /// Tick durations, for Prometheus.
    pub(crate) tick_histogram: TickHistogram,
    /// Calls and failures per client reducer.
    pub(crate) reducers: Mutex<HashMap<Arc<str>, (u64, u64)>>,
    /// Failures per server-run reducer (lifecycle, tick, periodic, scheduled).
    pub(crate) server_failures: Mutex<HashMap<Arc<str>, u64>>,
    server_failures_total: AtomicU64,
    /// Rows per table, refreshed about once a second by the tick thread.
    pub(crate) table_rows: Mutex<Vec<(String, u64)>>,
}

/// Tick durations in seconds, in buckets from 0.5 ms to about 0.5 s.
#[derive(Debug)]
pub(crate) struct TickHistogram(pub(crate) Histogram);

impl Default for TickHistogram {
    fn default() -> Self {
        TickHistogram(Histogram::new(exponential_buckets(0.0005, 2.0, 11)))
    }
}

#[derive(Debug, Default)]
struct Recent {
    jitter: VecDeque<Duration>,
    tick_time: VecDeque<Duration>,
}

fn push(q: &mut VecDeque<Duration>, d: Duration) {
    if q.len() == WINDOW {
        q.pop_front();
    }
    q.push_back(d);
}

/// Percentiles of a set of durations.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
    /// How many samples.
    pub samples: usize,
}

impl Percentiles {
    pub(crate) fn of(q: &VecDeque<Duration>) -> Percentiles {
        let mut v: Vec<Duration> = q.iter().copied().collect();
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_unstable();
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Percentiles {
            p50: at(0.5),
            p99: at(0.99),
            max: *v.last().expect("not empty"),
            samples: v.len(),
        }
    }
}

/// A copy of the server's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Ticks run.
    pub ticks: u64,
    /// The last tick run.
    pub last_tick: u64,
    /// Tick slots skipped because a tick started more than a period late.
    pub overruns: u64,
    /// Connected sessions (after the last tick).
    pub sessions: u64,
    /// Client reducer calls run.
    pub calls: u64,
    /// Of which failed.
    pub failed_calls: u64,
    /// Row changes committed.
    pub row_changes: u64,
    /// Rows sent to clients.
    pub rows_sent: u64,
    /// Bytes of frames and position datagrams handed to connections.
    pub bytes_out: u64,
    /// Position datagrams handed to connections (protocol version 4).
    pub datagrams_out: u64,
    /// Sessions being sent positions in datagrams because their connection loses packets
    /// ([`crate::PositionDatagrams::OnLoss`]), as last counted (four times a second).
    pub lossy_links: u64,
    /// Bytes of frames received.
    pub bytes_in: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Connections refused (full, too many pending, or no `Hello` in time).
    pub refused: u64,
    /// Of which refused before their handshake because too many connections were pending (in their handshake
    /// or without their `Hello`: [`crate::Limits::max_pending`], [`crate::Limits::pending_per_ip`]).
    pub refused_pending: u64,
    /// Protocol violations answered with an error.
    pub protocol_errors: u64,
    /// Clients disconnected for reading too slowly.
    pub too_slow: u64,
    /// Failures of reducers the server ran (lifecycle, tick, periodic, scheduled), every one counted.
    pub server_reducer_failures: u64,
    /// How late ticks started after their slot (recent ticks).
    pub jitter: Percentiles,
    /// How long ticks took, from start to frames handed to the release thread (recent ticks).
    pub tick_time: Percentiles,
}

impl Metrics {
    pub(crate) fn overrun(&self, skipped: u64) {
        self.overruns.fetch_add(skipped, Ordering::Relaxed);
    }

    /// Count each client reducer call (the reducer, whether it failed).
    pub(crate) fn reducer_calls(&self, calls: &[(Arc<str>, bool)]) {
        if calls.is_empty() {
            return;
        }
        let mut map = self.reducers.lock().expect("metrics lock");
        for (name, failed) in calls {
            let entry = map.entry(name.clone()).or_default();
            entry.0 += 1;
            entry.1 += u64::from(*failed);
        }
    }

    /// Count each failure of a server-run reducer (one name per failure).
    pub(crate) fn server_failures(&self, failures: &[Arc<str>]) {
        if failures.is_empty() {
            return;
        }
        self.server_failures_total
            .fetch_add(failures.len() as u64, Ordering::Relaxed);
        let mut map = self.server_failures.lock().expect("metrics lock");
        for name in failures {
            *map.entry(name.clone()).or_default() += 1;
        }
    }

    pub(crate) fn tick_done(
        &self,
        tick: Tick,
        jitter: Duration,
        took: Duration,
        stats: &TickStats,
        sessions: usize,
    ) {
        self.tick_histogram.0.observe(took.as_secs_f64());
        self.ticks.fetch_add(1, Ordering::Relaxed);
        self.last_tick.store(tick.0, Ordering::Relaxed);
        self.sessions.store(sessions as u64, Ordering::Relaxed);
        self.calls
            .fetch_add(u64::from(stats.calls), Ordering::Relaxed);
        self.failed_calls
            .fetch_add(u64::from(stats.failed_calls), Ordering::Relaxed);
        self.row_changes
            .fetch_add(stats.row_changes, Ordering::Relaxed);
        self.rows_sent.fetch_add(stats.rows_sent, Ordering::Relaxed);
        let mut r = self.recent.lock().expect("metrics lock");
        push(&mut r.jitter, jitter);
        push(&mut r.tick_time, took);
    }

    /// Start the recent-tick percentiles afresh.
    pub(crate) fn clear_recent(&self) {
        let mut r = self.recent.lock().expect("metrics lock");
        r.jitter.clear();
        r.tick_time.clear();
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let r = self.recent.lock().expect("metrics lock");
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            ticks: get(&self.ticks),
            last_tick: get(&self.last_tick),
            overruns: get(&self.overruns),
            sessions: get(&self.sessions),
            calls: get(&self.calls),
            failed_calls: get(&self.failed_calls),
            row_changes: get(&self.row_changes),
            rows_sent: get(&self.rows_sent),
            bytes_out: get(&self.bytes_out),
            datagrams_out: get(&self.datagrams_out),
            lossy_links: get(&self.lossy_links),
            bytes_in: get(&self.bytes_in),
            connections: get(&self.connections),
            refused: get(&self.refused),
            refused_pending: get(&self.refused_pending),
            protocol_errors: get(&self.protocol_errors),
            too_slow: get(&self.too_slow),
            server_reducer_failures: get(&self.server_failures_total),
            jitter: Percentiles::of(&r.jitter),
            tick_time: Percentiles::of(&r.tick_time),
        }
    }
}
