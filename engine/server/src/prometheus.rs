//! Metrics in the Prometheus text format, served over HTTP (`locus serve --metrics ADDR`, path `/metrics`).
//!
//! | metric | type | what |
//! |---|---|---|
//! | `locus_tick_duration_seconds` | histogram | time from a tick's start to its frames handed to the release thread |
//! | `locus_ticks_total` | counter | ticks run |
//! | `locus_tick_overruns_total` | counter | tick slots skipped because a tick started more than a period late |
//! | `locus_tick_jitter_p99_seconds` | gauge | 99th percentile of how late ticks started (last 4,096 ticks) |
//! | `locus_clients_connected` | gauge | connected sessions |
//! | `locus_connections_total`, `locus_connections_refused_total` | counter | connections accepted / refused |
//! | `locus_connections_refused_pending_total` | counter | of those, refused before their handshake: too many pending |
//! | `locus_table_rows{table}` | gauge | rows per table (refreshed every second) |
//! | `locus_bytes_in_total`, `locus_bytes_out_total` | counter | frame bytes received from / handed to clients (out: with position datagrams) |
//! | `locus_datagrams_out_total` | counter | position datagrams handed to clients (protocol version 4) |
//! | `locus_lossy_links` | gauge | sessions sent positions in datagrams because their connection loses packets |
//! | `locus_rows_sent_total` | counter | row inserts, updates and deletes sent to clients |
//! | `locus_row_changes_total` | counter | row changes committed |
//! | `locus_reducer_calls_total{reducer}` | counter | client reducer calls |
//! | `locus_reducer_errors_total{reducer}` | counter | of which failed (rolled back) |
//! | `locus_server_reducer_failures_total{reducer}` | counter | failures of reducers the server runs (lifecycle, tick, periodic, scheduled) |
//! | `locus_durability_lag_ticks` | gauge | ticks run but not yet durable (their results and deltas wait) |
//! | `locus_protocol_errors_total`, `locus_clients_too_slow_total` | counter | refused client input / slow readers dropped |
//! | `locus_failed` | gauge | 1 once the commit log failed |
//!
//! The encoding is `prometheus-client`'s; the HTTP server is hyper's (HTTP/1.1, any path but `/metrics` is 404).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use locus_log::Watermark;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::Metrics;

/// What a scrape reads.
pub(crate) struct Exporter {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) watermark: Watermark,
}

type Labels = Vec<(String, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

impl Exporter {
    /// The current metrics as Prometheus text.
    pub(crate) fn render(&self) -> String {
        let m = &self.metrics;
        let snap = m.snapshot();
        let mut r = Registry::default();
        r.register(
            "locus_tick_duration_seconds",
            "Time from a tick's start to its frames handed to the release thread",
            m.tick_histogram.0.clone(),
        );
        counter(&mut r, "locus_ticks", "Ticks run", snap.ticks);
        counter(
            &mut r,
            "locus_tick_overruns",
            "Tick slots skipped because a tick started more than a period late",
            snap.overruns,
        );
        let jitter: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
        jitter.set(snap.jitter.p99.as_secs_f64());
        r.register(
            "locus_tick_jitter_p99_seconds",
            "99th percentile of how late ticks started (last 4096 ticks)",
            jitter,
        );
        gauge(
            &mut r,
            "locus_clients_connected",
            "Connected sessions",
            snap.sessions as i64,
        );
        counter(
            &mut r,
            "locus_connections",
            "Connections accepted",
            snap.connections,
        );
        counter(
            &mut r,
            "locus_connections_refused",
            "Connections refused (full, too many pending, or no Hello in time)",
            snap.refused,
        );
        counter(
            &mut r,
            "locus_connections_refused_pending",
            "Connections refused before their handshake: too many pending (in their handshake or without Hello)",
            snap.refused_pending,
        );
        let rows: Family<Labels, Gauge> = Family::default();
        for (table, n) in m.table_rows.lock().expect("metrics lock").iter() {
            rows.get_or_create(&vec![("table".into(), table.clone())])
                .set(*n as i64);
        }
        r.register("locus_table_rows", "Rows per table", rows);
        counter(
            &mut r,
            "locus_bytes_in",
            "Frame bytes received from clients",
            snap.bytes_in,
        );
        counter(
            &mut r,
            "locus_bytes_out",
            "Frame and position datagram bytes handed to client connections",
            snap.bytes_out,
        );
        counter(
            &mut r,
            "locus_datagrams_out",
            "Position datagrams handed to client connections (protocol version 4)",
            snap.datagrams_out,
        );
        gauge(
            &mut r,
            "locus_lossy_links",
            "Sessions sent positions in datagrams because their connection loses packets",
            snap.lossy_links as i64,
        );
        counter(
            &mut r,
            "locus_rows_sent",
            "Row inserts, updates and deletes sent to clients",
            snap.rows_sent,
        );
        counter(
            &mut r,
            "locus_row_changes",
            "Row changes committed",
            snap.row_changes,
        );
        let calls: Family<Labels, Counter> = Family::default();
        let errors: Family<Labels, Counter> = Family::default();
        for (name, (n, failed)) in m.reducers.lock().expect("metrics lock").iter() {
            let labels = vec![("reducer".into(), name.to_string())];
            calls.get_or_create(&labels).inc_by(*n);
            errors.get_or_create(&labels).inc_by(*failed);
        }
        r.register("locus_reducer_calls", "Client reducer calls", calls);
        r.register(
            "locus_reducer_errors",
            "Client reducer calls that failed",
            errors,
        );
        let server_failures: Family<Labels, Counter> = Family::default();
        for (name, n) in m.server_failures.lock().expect("metrics lock").iter() {
            server_failures
                .get_or_create(&vec![("reducer".into(), name.to_string())])
                .inc_by(*n);
        }
        r.register(
            "locus_server_reducer_failures",
            "Failures of reducers the server runs (lifecycle, tick, periodic, scheduled)",
            server_failures,
        );
        let durable = self.watermark.tick().0;
        gauge(
            &mut r,
            "locus_durability_lag_ticks",
            "Ticks run but not yet durable",
            snap.last_tick.saturating_sub(durable) as i64,
        );
        counter(
            &mut r,
            "locus_protocol_errors",
            "Client input refused with an error",
            snap.protocol_errors,
        );
        counter(
            &mut r,
            "locus_clients_too_slow",
            "Clients disconnected for reading too slowly",
            snap.too_slow,
        );
        gauge(
            &mut r,
            "locus_failed",
            "1 once the commit log failed",
            i64::from(m.failed.load(Ordering::Relaxed)),
        );
        let mut text = String::new();
        encode(&mut text, &r).expect("writing to a String");
        text
    }
}

/// Serve `exporter` on `listener` until the runtime stops.
impl Exporter {
    /// The answer to an HTTP request: the metrics at `/metrics`, else 404.
    pub(crate) fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.uri().path() != "/metrics" {
            let mut not_found =
                Response::new(Full::new(Bytes::from_static(b"not found; try /metrics\n")));
            *not_found.status_mut() = StatusCode::NOT_FOUND;
            return not_found;
        }
        let mut ok = Response::new(Full::new(Bytes::from(self.render())));
        ok.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        ok
    }
}
