//! Smoke test of the load tester: a few dozen bots for a few seconds against a real server (the one the load
//! tester starts itself, with the demo module), checked through the JSON report.

use std::process::Command;

use serde_json::Value;

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in the report"))
}

#[test]
fn thirty_bots_see_each_other_without_errors() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("report.json");
    let plot = dir.path().join("plot.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
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
        ])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .output()
        .expect("run the loadtest binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "loadtest failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("service level"), "no table:\n{stdout}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    let context = format!("stdout:\n{stdout}");

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

    // The measured step has latency samples and the server's figures.
    assert!(
        u(&report, "/steps/0/measured/update_latency/count") > 0,
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
