//! `loadtest regions` at a small scale: four regions as `serve-child` processes over a real `nats-server`, bots
//! teleporting across the borders and near them. Every crossing completes (the client settles in the new region),
//! every bot's player is in exactly one region afterwards, and bots see each other across the borders. The measured
//! runs are in `engine/docs/benchmarks.md` ("Regions").

mod common;

use common::u;

#[test]
fn bots_cross_the_borders_of_four_regions_and_every_player_stays_exactly_once() {
    if !locus_server::nats_server::available_or_skip("loadtest regions") {
        return;
    }
    let common::Run { report, context } = common::run(&[
        "regions",
        "--players",
        "12",
        "--duration",
        "8s",
        "--move-every",
        "1s",
    ]);
    assert!(u(&report, "/handoffs") >= 12, "{context}");
    assert_eq!(u(&report, "/failed_crossings"), 0, "{context}");
    assert_eq!(u(&report, "/players_missing"), 0, "{context}");
    assert_eq!(u(&report, "/players_duplicated"), 0, "{context}");
    assert!(
        u(&report, "/visible_across_border/samples") > 0
            && u(&report, "/visible_same_region/samples") > 0,
        "{context}"
    );
    for r in 0..4 {
        assert!(
            u(&report, &format!("/regions/{r}/messages_received")) > 0,
            "{context}"
        );
    }
}
