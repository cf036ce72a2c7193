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
//! | `cli` | command-line options → connection settings (native) |
//! | `web` | the browser build: the page's URL → settings, `locus.json`, start-up marks for tests (wasm32) |
//! | [`net`] | connecting off the frame (a thread, or a task of the page), subscriptions, calls, round trip, server clock |
//! | [`terrain`] | chunk rows → images composed from the tileset |
//! | [`sprites`] | rows → sprites, tags, health bars; prediction and interpolation applied; the camera |
//! | [`input`] | keyboard and mouse → reducer calls |
//! | [`ui`] | HUD, chat, inventory and crafting (bevy_ui) |
//! | [`auto`] | unattended runs: screenshot, timed exit, cache dump |
//! | [`interp`], [`predict`] | the pure logic of smooth motion (no bevy) |
//! | [`palette`], [`art`] | colours, screenshot checks and the procedural art generator (no bevy) |
//!
//! It builds natively (a window, QUIC) and for the browser (`wasm32-unknown-unknown`: WebGL2 in the page's
//! canvas, WebTransport; `locus serve --web ADDR` builds and serves it). The two builds share everything but how
//! settings arrive (`cli` or `web`) and how a connect runs off the frame ([`net`]).
//!
//! What it deliberately does not do: it never blocks a frame on the network (connecting runs off the frame,
//! polling never blocks), and it trusts nothing it predicts: the server's rows are the truth, the prediction only
//! hides the round trip.

pub mod art;
pub mod auto;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod input;
pub mod interp;
pub mod net;
pub mod palette;
pub mod predict;
pub mod sprites;
pub mod terrain;
pub mod ui;
#[cfg(target_arch = "wasm32")]
pub mod web;

use bevy::prelude::*;
use bevy::window::WindowResolution;
use locus_client::bevy::{LocusPlugin, MirrorTableExt};

use crate::auto::{AutoPlugin, AutoRun};
use crate::input::InputPlugin;
use crate::net::{Net, NetPlugin, Source};
use crate::sprites::{ChunkRow, CreatureRow, GroundItemRow, NodeRow, PlayerRow, SpritesPlugin};
use crate::terrain::TerrainPlugin;
use crate::ui::UiPlugin;

/// Parse `X,Y` (two finite numbers).
///
/// # Errors
///
/// A message for anything else.
pub fn parse_point(s: &str) -> Result<(f32, f32), String> {
    let (x, y) = s.split_once(',').ok_or("expected X,Y")?;
    let parse = |v: &str| {
        v.trim()
            .parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("not a number: {v:?}"))
    };
    Ok((parse(x)?, parse(y)?))
}

/// What an app is built from: where the server is, who to be, the window, and the unattended-run options.
#[derive(Debug)]
pub struct Settings {
    /// Where the server is.
    pub source: Source,
    /// The name to enter with.
    pub name: Option<String>,
    /// Where to jump on entering.
    pub teleport: Option<(f32, f32)>,
    /// The window's size in logical pixels (the browser build fits the page's canvas instead).
    pub size: (u32, u32),
    /// Screenshot, exit time, cache dump.
    pub auto: AutoRun,
}

/// Build the app for `args`.
///
/// # Errors
///
/// Options that do not make sense (no way to trust the server, a bad fingerprint, a negative exit time).
#[cfg(not(target_arch = "wasm32"))]
pub fn app(args: &cli::Args) -> anyhow::Result<App> {
    let settings = Settings {
        source: Source::Config(args.client_config()?),
        name: args.name.clone(),
        teleport: args.teleport,
        size: (args.width, args.height),
        auto: AutoRun::new(
            args.screenshot.clone(),
            args.exit_after()?,
            args.dump_cache.clone(),
        ),
    };
    Ok(build(settings))
}

/// Build the app for `settings` (both builds).
pub fn build(settings: Settings) -> App {
    let mut net = Net::new(settings.source, settings.name.clone());
    net.teleport = settings.teleport;
    let window = Window {
        title: format!(
            "Locus demo — {}",
            settings.name.as_deref().unwrap_or("new player")
        ),
        resolution: WindowResolution::new(settings.size.0, settings.size.1),
        // The browser build draws into the page's canvas, sized by the page.
        #[cfg(target_arch = "wasm32")]
        canvas: Some("#locus".into()),
        #[cfg(target_arch = "wasm32")]
        fit_canvas_to_parent: true,
        ..default()
    };
    let mut app = App::new();
    app.add_plugins(DefaultPlugins.set(WindowPlugin {
        primary_window: Some(window),
        ..default()
    }))
    .insert_resource(ClearColor(Color::srgb_u8(
        palette::VOID[0],
        palette::VOID[1],
        palette::VOID[2],
    )))
    .insert_resource(net)
    .insert_resource(settings.auto)
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
    #[cfg(target_arch = "wasm32")]
    app.add_plugins(web::MarksPlugin);
    app
}
