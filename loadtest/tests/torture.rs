//! The short crash torture of the suite: `loadtest torture` kills a real server (SIGKILL) six times under 12 bots
//! — at random moments, during snapshots and during publishes — and after every restart checks that each rename a
//! bot was told was done is in the world (the full run is `loadtest torture --cycles 50`; see
//! `engine/docs/benchmarks.md`).

mod common;

#[test]
fn acknowledged_calls_survive_kills_at_random_moments_during_snapshots_and_publishes() {
    let common::Run { report, context } = common::run(&[
        "torture",
        "--players",
        "12",
        "--cycles",
        "6",
        "--min-uptime",
        "300ms",
        "--max-uptime",
        "1500ms",
    ]);
    let cycles = report["cycles"].as_array().expect("cycles");
    assert_eq!(cycles.len(), 6, "{context}");
    for kind in ["plain", "during_snapshot", "during_publish"] {
        assert_eq!(
            cycles.iter().filter(|c| c["kill"] == kind).count(),
            2,
            "{kind}: {context}"
        );
    }
    assert!(
        report["violations"]
            .as_array()
            .expect("violations")
            .is_empty(),
        "{context}"
    );
    // Every cycle checked renames the bots were told were done: the check is not empty.
    for c in cycles {
        assert!(
            c["acked_renames"].as_u64().expect("a count") > 0,
            "a cycle without acknowledged renames: {context}"
        );
    }
    assert!(report["rows"].as_u64().expect("rows") > 12, "{context}");
}
