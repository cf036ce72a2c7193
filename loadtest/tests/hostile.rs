//! Hostile clients beside 30 bots: a handshake flood that never sends `Hello`, a client that never reads its
//! stream, one that subscribes to everything, one that teleports as fast as the limits allow. Each must cost only
//! itself: the bots keep the service level, with no errors or disconnects, and the server enforces its limits on
//! the hostile ones (the flood's connections are closed at their `Hello` deadline, the spammer's excess calls are
//! refused). The measured runs, at higher rates, are in `engine/docs/benchmarks.md` ("Hostile clients").

use std::process::Command;

use serde_json::Value;

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in the report"))
}

#[test]
#[ignore = "fails: in a debug build, sharing two cores, a flood of 200 handshakes a second starves the bots' own \
            connects and breaks their update latency; the server has no limit on connections waiting for their \
            Hello yet (issue 21's next step)"]
fn hostile_clients_cost_only_themselves() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--players",
            "30",
            "--warmup",
            "2s",
            "--duration",
            "8s",
            "--arena",
            "120",
            "--connect-rate",
            "100",
        ])
        .args([
            "--flood",
            "200",
            "--slow-readers",
            "1",
            "--subscribers",
            "1",
            "--spammers",
            "1",
            "--quiet",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run the loadtest binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "loadtest failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    let context = format!("stdout:\n{stdout}");

    // The bots: every one in, nothing wrong, the service level held.
    assert_eq!(u(&report, "/totals/sessions"), 30, "{context}");
    assert_eq!(u(&report, "/totals/errors"), 0, "{context}");
    assert_eq!(u(&report, "/totals/disconnects"), 0, "{context}");
    assert_eq!(
        report.pointer("/steps/0/verdict/held"),
        Some(&Value::Bool(true)),
        "{context}"
    );

    // The flood: handshakes completed and were closed by the server at their Hello deadline (5 s), so at most
    // about 5 s of them were ever held at once.
    assert!(u(&report, "/hostile/flood_completed") > 1000, "{context}");
    assert!(
        u(&report, "/hostile/flood_closed_by_server") > 500,
        "{context}"
    );
    assert!(
        u(&report, "/hostile/flood_open_peak") < 200 * 7,
        "{context}"
    );
    // The subscriber received rows; the spammer was answered and also refused by the session's limits.
    assert!(
        report
            .pointer("/hostile/subscriber_bytes_per_second")
            .and_then(Value::as_f64)
            .unwrap()
            > 0.0,
        "{context}"
    );
    assert!(u(&report, "/hostile/spam_ok") > 0, "{context}");
    assert!(u(&report, "/hostile/spam_limited") > 0, "{context}");
    assert_eq!(u(&report, "/hostile/spam_disconnected"), 0, "{context}");
    assert!(
        u(&report, "/hostile/server_rss_peak_kb") >= u(&report, "/hostile/server_rss_start_kb"),
        "{context}"
    );
}
