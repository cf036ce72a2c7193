//! Smoke test of the load tester: a few dozen bots for a few seconds against a real server (the one the load
//! tester starts itself, with the demo module), checked through the JSON report.

use std::process::Command;

use serde_json::Value;

mod common;

use common::u;

#[test]
fn thirty_bots_see_each_other_without_errors() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let plot = dir.path().join("plot.svg");
    let plot_arg = plot.to_str().expect("a UTF-8 path");
    let common::Run { report, context } = common::run(&[
        "--players",
        "30",
        "--warmup",
        "1s",
        "--duration",
        "3s",
        // A 120 m square: every bot stands within 64 m of others, so every bot must hear about them.
        "--arena",
        "120",
        "--connect-rate",
        "100",
        "--quiet",
        "--plot",
        plot_arg,
    ]);
    let stdout = &context;
    assert!(stdout.contains("service level"), "no table:\n{stdout}");

    // Every bot got in, and nothing went wrong.
    assert_eq!(u(&report, "/totals/sessions"), 30, "{context}");
    assert_eq!(u(&report, "/totals/errors"), 0, "{context}");
    assert_eq!(u(&report, "/totals/disconnects"), 0, "{context}");
    assert_eq!(u(&report, "/totals/connect_failures"), 0, "{context}");
    assert_eq!(u(&report, "/totals/placed"), 30, "{context}");
    assert_eq!(u(&report, "/totals/npcs_spawned"), 60, "{context}");

    // Every bot received updates of the players near it, and had every bot within 56 m in view at the end.
    assert_eq!(u(&report, "/visibility/bots"), 30, "{context}");
    assert_eq!(u(&report, "/visibility/bots_with_updates"), 30, "{context}");
    assert_eq!(
        u(&report, "/visibility/bots_with_neighbours"),
        30,
        "{context}"
    );
    assert!(u(&report, "/visibility/pairs_checked") >= 30, "{context}");
    assert_eq!(u(&report, "/visibility/pairs_missing"), 0, "{context}");

    // The measured step has latency samples (per frame and per row change) and the server's figures.
    assert!(
        u(&report, "/steps/0/measured/update_latency/count") > 0,
        "{context}"
    );
    assert!(
        u(&report, "/steps/0/measured/row_update_latency/count") > 0,
        "{context}"
    );
    assert!(
        stdout.contains("update latency per player row change: p50"),
        "{context}"
    );
    assert!(
        u(&report, "/steps/0/measured/reducer_rtt/count") > 0,
        "{context}"
    );
    assert!(
        u(&report, "/steps/0/measured/server/ticks") > 0,
        "{context}"
    );
    assert_eq!(u(&report, "/steps/0/measured/players"), 30, "{context}");
    assert!(
        report
            .pointer("/steps/0/measured/down_bytes_per_s")
            .and_then(Value::as_f64)
            .is_some_and(|b| b > 0.0),
        "{context}"
    );
    // The bots' own CPU is measured beside the server's.
    assert!(
        report
            .pointer("/steps/0/measured/bot_cpu_us_per_bot_tick")
            .and_then(Value::as_f64)
            .is_some_and(|c| c > 0.0),
        "{context}"
    );
    assert!(
        stdout.contains("server + bots CPU per player per tick"),
        "{context}"
    );
    let svg = std::fs::read_to_string(&plot).expect("the plot");
    assert!(
        svg.starts_with("<svg") && svg.contains("update latency"),
        "not the plot"
    );
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing in the report"))
}

/// A short run with `extra` arguments: its exit status, stdout, stderr and (if it wrote one) JSON report.
fn short_run(players: &str, extra: &[&str]) -> (std::process::Output, Option<Value>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--players", players, "--warmup", "1s", "--duration", "3s"])
        .args(["--arena", "120", "--connect-rate", "100", "--quiet"])
        .args(extra)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run the loadtest binary");
    let report = std::fs::read(&json)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("JSON"));
    (out, report)
}

/// Every update and every call's round trip carries the link's delay: `delay 50ms` one way puts each update at
/// least 50 ms after its tick and each reducer round trip at least 100 ms (percentiles are reported at most 1.6 %
/// low: the histogram's bucket).
fn assert_delayed(out: &std::process::Output, report: Option<&Value>, players: u64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        out.status.success(),
        "loadtest failed: {}\n{context}",
        out.status
    );
    let report = report.expect("the JSON report");
    assert_eq!(u(report, "/totals/sessions"), players, "{context}");
    assert_eq!(u(report, "/totals/errors"), 0, "{context}");
    assert!(
        u(report, "/steps/0/measured/update_latency/count") > 0,
        "{context}"
    );
    let lat_p50 = f(report, "/steps/0/measured/update_latency/p50_ms");
    let rtt_p50 = f(report, "/steps/0/measured/reducer_rtt/p50_ms");
    assert!(
        lat_p50 >= 49.0,
        "update latency p50 {lat_p50} ms under the 50 ms delay\n{context}"
    );
    assert!(
        rtt_p50 >= 98.0,
        "round trip p50 {rtt_p50} ms under 2 × 50 ms\n{context}"
    );
    assert!(
        stdout.contains("50.0 ms delay per datagram each way (round trip +100.0 ms)"),
        "{context}"
    );
}

#[test]
fn a_lossy_relay_delays_every_update_and_drops_both_ways() {
    let (out, report) = short_run(
        "20",
        &["--netem", "loss 2% delay 50ms", "--netem-via", "relay"],
    );
    assert_delayed(&out, report.as_ref(), 20);
    // Both directions lost datagrams (about 2 % of a few thousand each way), and the sessions survived it.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("relay ("))
        .unwrap_or_else(|| panic!("no relay line:\n{stdout}"));
    // "relay (…): up D of N datagrams dropped (P%), down D of N datagrams dropped (P%)"
    for way in [": up ", ", down "] {
        let dropped: u64 = line
            .split_once(way)
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("no{way}count in {line}"));
        assert!(dropped > 0, "{line}");
    }
    assert_eq!(
        u(report.as_ref().unwrap(), "/totals/disconnects"),
        0,
        "{stdout}"
    );
}

/// `--netem-via namespace` either impairs the namespace's loopback (root, iproute2 and a kernel with netem) or stops
/// before the run saying which of them is missing.
#[test]
fn netem_in_a_namespace_delays_every_update_or_says_why_not() {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|id| id == "0"))
        .unwrap_or(false);
    // What this machine offers, asked the way the load tester asks.
    let probe = Command::new("unshare")
        .args([
            "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ])
        .output()
        .ok();
    let netem = probe.as_ref().is_some_and(|p| p.status.success());
    let no_netem = probe
        .as_ref()
        .is_some_and(|p| String::from_utf8_lossy(&p.stderr).contains("qdisc kind is unknown"));
    let (out, report) = short_run("10", &["--netem", "delay 50ms"]);
    if root && netem {
        assert_delayed(&out, report.as_ref(), 10);
        return;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ran without netem:\n{stderr}");
    assert!(report.is_none(), "a report without netem");
    let why = if !root {
        "needs root"
    } else if no_netem {
        "no netem qdisc"
    } else {
        "--netem-via relay"
    };
    assert!(stderr.contains(why), "expected {why:?} in:\n{stderr}");
}
