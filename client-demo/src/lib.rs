//! The Locus demo client: a top-down 2D bevy client for the demo world (`game-module`), built on `locus-client`.
//!
//! It connects to a `locus serve` server, enters the world under a name, and draws what the server streams to it:
//! terrain chunks from a tileset, players, creatures, resource nodes and dropped items as sprites with name tags
//! and health bars, the camera on the player's own avatar. The player walks with WASD or by clicking, gathers,
//! fights, picks up, crafts, eats and chats. See `README.md` in this crate for how to run it, and `main.rs` for
//! the controls.
//!
//! The parts:
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | command-line options → connection settings |
//! | [`net`] | connecting on a background thread, subscriptions, calls, round trip, server clock |
//! | [`terrain`] | chunk rows → images composed from the tileset |
//! | [`sprites`] | rows → sprites, tags, health bars; prediction and interpolation applied; the camera |
//! | [`input`] | keyboard and mouse → reducer calls |
//! | [`ui`] | HUD, chat, inventory and crafting (bevy_ui) |
//! | [`auto`] | unattended runs: screenshot, timed exit, cache dump |
//! | [`interp`], [`predict`] | the pure logic of smooth motion (no bevy) |
//! | [`palette`], [`art`] | colours, screenshot checks and the procedural art generator (no bevy) |
//!
//! What it deliberately does not do: it never blocks a frame on the network (connecting runs on its own thread,
//! polling never blocks), and it trusts nothing it predicts: the server's rows are the truth, the prediction only
//! hides the round trip.

pub mod art;
pub mod auto;
pub mod cli;
pub mod input;
pub mod interp;
pub mod net;
pub mod palette;
pub mod predict;
pub mod sprites;
pub mod terrain;
pub mod ui;

use bevy::prelude::*;
use bevy::window::WindowResolution;
use locus_client::bevy::{LocusPlugin, MirrorTableExt};

use crate::auto::{AutoPlugin, AutoRun};
use crate::cli::Args;
use crate::input::InputPlugin;
use crate::net::{Net, NetPlugin};
use crate::sprites::{ChunkRow, CreatureRow, GroundItemRow, NodeRow, PlayerRow, SpritesPlugin};
use crate::terrain::TerrainPlugin;
use crate::ui::UiPlugin;

/// Build the app for `args`.
///
/// # Errors
///
/// Options that do not make sense (no way to trust the server, a bad fingerprint, a negative exit time).
pub fn app(args: &Args) -> anyhow::Result<App> {
    let config = args.client_config()?;
    let exit_after = args.exit_after()?;
    let mut net = Net::new(config, args.name.clone());
    net.teleport = args.teleport;
    let mut app = App::new();
    app.add_plugins(DefaultPlugins.set(WindowPlugin {
        primary_window: Some(Window {
            title: format!(
                "Locus demo — {}",
                args.name.as_deref().unwrap_or("new player")
            ),
            resolution: WindowResolution::new(args.width, args.height),
            ..default()
        }),
        ..default()
    }))
    .insert_resource(ClearColor(Color::srgb_u8(
        palette::VOID[0],
        palette::VOID[1],
        palette::VOID[2],
    )))
    .insert_resource(net)
    .insert_resource(AutoRun::new(
        args.screenshot.clone(),
        exit_after,
        args.dump_cache.clone(),
    ))
    // The Client resource is inserted by `net` once connected.
    .add_plugins(LocusPlugin::default())
    .mirror_table::<ChunkRow>("chunk")
    .mirror_table::<PlayerRow>("player")
    .mirror_table::<CreatureRow>("creature")
    .mirror_table::<NodeRow>("resource_node")
    .mirror_table::<GroundItemRow>("ground_item")
    .add_plugins((
        NetPlugin,
        SpritesPlugin,
        TerrainPlugin,
        InputPlugin,
        UiPlugin,
        AutoPlugin,
    ));
    Ok(app)
}
