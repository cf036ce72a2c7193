//! A full disk and a read-only data directory under a serving world, on a real file system (`loadtest disk`: a
//! size-limited tmpfs in a user and mount namespace of its own, so no root is needed): the world stops with a clear
//! error to its clients and its operator, loses nothing it acknowledged, and restarts cleanly once repaired.

mod common;

#[test]
fn a_full_or_read_only_disk_stops_the_world_clearly_and_it_restarts_with_everything_acknowledged() {
    let common::Run {
        report: faults,
        context,
    } = common::run(&["disk", "--players", "6"]);
    let faults = faults.as_array().expect("one entry per fault");
    assert_eq!(faults.len(), 2, "{context}");
    for (f, why) in faults.iter().zip([
        "the server's disk is full",
        "the server's data directory is read-only",
    ]) {
        let told: Vec<&str> = f["clients_told"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert_eq!(
            told,
            [
                format!("the world stopped: {why}; everything you were told was done is saved")
                    .as_str()
            ],
            "{context}"
        );
        assert!(
            f["stopped_after_ms"].as_u64().is_some(),
            "the server kept running: {context}"
        );
        let operator = f["operator_told"].as_array().unwrap();
        assert!(
            operator
                .iter()
                .any(|l| l.as_str().unwrap().contains("the commit log failed")),
            "the operator was not told: {context}"
        );
        assert!(f["violations"].as_array().unwrap().is_empty(), "{context}");
        assert!(
            f["acked_renames"].as_u64().unwrap() > 0,
            "nothing was checked: {context}"
        );
    }
    assert!(
        faults[1]["snapshot_refused"]
            .as_str()
            .is_some_and(|e| e.contains("Read-only file system")),
        "{context}"
    );
}
