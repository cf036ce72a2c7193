//! Hostile clients beside 30 bots: a handshake flood that never sends `Hello`, a client that never reads its
//! stream, one that subscribes to everything, one that teleports as fast as the limits allow. Each must cost only
//! itself: the bots keep their sessions and their updates, with no errors or disconnects, and the server enforces its limits on
//! the hostile ones (the flood is refused before its handshakes past 256 pending connections from its address and
//! closed at its `Hello` deadline; the spammer's excess calls are refused). The measured runs, at higher rates, are in `engine/docs/benchmarks.md` ("Hostile clients").

mod common;

use common::u;
use serde_json::Value;

#[test]
fn hostile_clients_cost_only_themselves() {
    let common::Run { report, context } = common::run(&[
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
        "--flood",
        "100",
        "--slow-readers",
        "1",
        "--subscribers",
        "1",
        "--spammers",
        "1",
        "--quiet",
    ]);

    // The bots: every one in and kept, nothing wrong, and they saw each other move.
    assert_eq!(u(&report, "/totals/sessions"), 30, "{context}");
    assert_eq!(u(&report, "/totals/errors"), 0, "{context}");
    assert_eq!(u(&report, "/totals/disconnects"), 0, "{context}");
    assert_eq!(u(&report, "/totals/connect_failures"), 0, "{context}");
    assert_eq!(u(&report, "/visibility/bots_with_updates"), 30, "{context}");
    // (The service level itself is judged in the measured runs, release builds on a quiet machine: a debug
    // server sharing two cores with its bots is too slow to judge by it.)

    // The flood: the server refuses handshakes past 256 pending from one address (`Limits::pending_per_ip`)
    // before any TLS, and closes those it let in at their Hello deadline (5 s).
    assert!(u(&report, "/hostile/flood_completed") > 100, "{context}");
    assert!(
        u(&report, "/hostile/flood_failed") > 100,
        "refused past the per-address limit: {context}"
    );
    assert!(
        u(&report, "/hostile/flood_open_peak") <= 256 + 2,
        "{context}"
    );
    assert!(
        u(&report, "/hostile/flood_closed_by_server") > 0,
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
