//! Unattended runs (`--screenshot`, `--exit-after-secs`, `--dump-cache`), for the headless end-to-end test and
//! for CI artifacts.
//!
//! - The screenshot is taken once the world around the avatar is drawn ([`world_ready`]: the own player is in
//!   view with its chosen name, and at least [`READY_CHUNKS`] terrain chunks), [`SETTLE`] and at least
//!   [`SETTLE_FRAMES`] frames later (so that the rest of the view has streamed in and textures are on the GPU);
//!   or, at the latest, [`LATE_SHOT`] before the exit time.
//! - The app quits at the exit time, but not before the screenshot is on disk (waiting at most
//!   [`SHOT_TIMEOUT`] longer).
//! - On quitting, the client cache is written as JSON ([`CacheDump`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bevy::platform::time::Instant;

use bevy::app::AppExit;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured, save_to_disk};
use locus_client::Client;
use serde::Serialize;
use tracing::{error, info};

use crate::net::Net;
use crate::sprites::{ChunkRow, OwnAvatar, PlayerRow};

/// Chunks that must be in view before the screenshot (the 3 × 3 around the avatar, at least).
pub const READY_CHUNKS: usize = 9;

/// Frames drawn between the world being ready and the screenshot, at least.
pub const SETTLE_FRAMES: u32 = 10;

/// Time between the world being ready and the screenshot, at least.
pub const SETTLE: Duration = Duration::from_secs(3);

/// The screenshot is taken at the latest this long before the exit time.
pub const LATE_SHOT: Duration = Duration::from_secs(2);

/// How long past the exit time to wait for the screenshot to reach the disk.
pub const SHOT_TIMEOUT: Duration = Duration::from_secs(20);

/// What an unattended run does.
#[derive(Resource, Debug)]
pub struct AutoRun {
    /// Where to save the screenshot.
    pub screenshot: Option<PathBuf>,
    /// When to quit, from the start.
    pub exit_after: Option<Duration>,
    /// Where to write the cache on quitting.
    pub dump_cache: Option<PathBuf>,
    started: Instant,
    ready_frames: u32,
    ready_since: Option<Instant>,
    requested: bool,
    saved: Arc<AtomicBool>,
    exiting: bool,
}

impl AutoRun {
    /// An unattended run with these options (all `None`: an ordinary interactive run).
    #[must_use]
    pub fn new(
        screenshot: Option<PathBuf>,
        exit_after: Option<Duration>,
        dump_cache: Option<PathBuf>,
    ) -> AutoRun {
        AutoRun {
            screenshot,
            exit_after,
            dump_cache,
            started: Instant::now(),
            ready_frames: 0,
            ready_since: None,
            requested: false,
            saved: Arc::new(AtomicBool::new(false)),
            exiting: false,
        }
    }
}

/// Whether the world is ready for a screenshot: the own player is in view (with `name`, if one was chosen, as
/// the server stores names: lowercase) and at least `READY_CHUNKS` chunks are.
#[must_use]
pub fn world_ready(own_name: Option<&str>, wanted_name: Option<&str>, chunks: usize) -> bool {
    let named = match (own_name, wanted_name) {
        (Some(own), Some(wanted)) => own == wanted.to_ascii_lowercase(),
        (Some(_), None) => true,
        (None, _) => false,
    };
    named && chunks >= READY_CHUNKS
}

/// The client cache, decoded, as `--dump-cache` writes it.
#[derive(Serialize, Debug)]
pub struct CacheDump {
    /// Whether the client was connected.
    pub connected: bool,
    /// The client's identity (hex).
    pub identity: Option<String>,
    /// The latest tick.
    pub tick: u64,
    /// Its timestamp (µs since the Unix epoch).
    pub tick_time: u64,
    /// The own player's row.
    pub me: Option<game_module::Player>,
    /// `player` rows in view.
    pub players: Vec<game_module::Player>,
    /// `chunk` rows in view.
    pub chunks: Vec<game_module::Chunk>,
    /// `creature` rows in view.
    pub creatures: Vec<game_module::Creature>,
    /// `resource_node` rows in view.
    pub resource_nodes: Vec<game_module::ResourceNode>,
    /// `ground_item` rows in view.
    pub ground_items: Vec<game_module::GroundItem>,
    /// The inventory.
    pub inventory: Vec<game_module::InventoryItem>,
    /// The recipes.
    pub recipes: Vec<game_module::Recipe>,
}

impl CacheDump {
    /// Decode the cache of `client` (or an empty dump without one).
    #[must_use]
    pub fn of(client: Option<&Client>) -> CacheDump {
        let Some(client) = client else {
            return CacheDump {
                connected: false,
                identity: None,
                tick: 0,
                tick_time: 0,
                me: None,
                players: Vec::new(),
                chunks: Vec::new(),
                creatures: Vec::new(),
                resource_nodes: Vec::new(),
                ground_items: Vec::new(),
                inventory: Vec::new(),
                recipes: Vec::new(),
            };
        };
        let cache = client.cache();
        let players: Vec<game_module::Player> = cache.rows("player").unwrap_or_default();
        let identity = client.identity();
        CacheDump {
            connected: client.is_connected(),
            identity: Some(identity.to_string()),
            tick: cache.tick(),
            tick_time: cache.tick_time(),
            me: players.iter().find(|p| p.identity == identity).cloned(),
            players,
            chunks: cache.rows("chunk").unwrap_or_default(),
            creatures: cache.rows("creature").unwrap_or_default(),
            resource_nodes: cache.rows("resource_node").unwrap_or_default(),
            ground_items: cache.rows("ground_item").unwrap_or_default(),
            inventory: cache.rows("inventory_item").unwrap_or_default(),
            recipes: cache.rows("recipe").unwrap_or_default(),
        }
    }
}

/// Registers the unattended-run system (it does nothing without an [`AutoRun`] resource asking for something).
pub struct AutoPlugin;

impl Plugin for AutoPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Last, drive);
    }
}

fn drive(
    mut commands: Commands<'_, '_>,
    auto: Option<ResMut<'_, AutoRun>>,
    net: Res<'_, Net>,
    own: Query<'_, '_, &PlayerRow, With<OwnAvatar>>,
    chunks: Query<'_, '_, (), (With<ChunkRow>, With<Sprite>)>,
    client: Option<Res<'_, Client>>,
    mut exit: MessageWriter<'_, AppExit>,
) {
    let Some(mut auto) = auto else {
        return;
    };
    if auto.exiting {
        return;
    }
    let elapsed = auto.started.elapsed();
    let deadline = auto.exit_after;
    if let Some(path) = auto.screenshot.clone()
        && !auto.requested
    {
        let own_name = own.single().ok().map(|p| p.0.name.as_str());
        if world_ready(own_name, net.name.as_deref(), chunks.iter().count()) {
            auto.ready_frames += 1;
            auto.ready_since.get_or_insert_with(Instant::now);
        }
        let settled = auto.ready_frames >= SETTLE_FRAMES
            && auto.ready_since.is_some_and(|t| t.elapsed() >= SETTLE);
        let late = deadline.is_some_and(|d| elapsed + LATE_SHOT >= d);
        if settled || late {
            if !settled {
                error!("the world was not ready in time; taking the screenshot anyway");
            }
            info!("taking a screenshot to {}", path.display());
            let saved = auto.saved.clone();
            commands
                .spawn(Screenshot::primary_window())
                .observe(save_to_disk(path))
                .observe(move |_: On<'_, '_, ScreenshotCaptured>| {
                    saved.store(true, Ordering::Release);
                });
            auto.requested = true;
        }
    }
    let Some(deadline) = deadline else {
        return;
    };
    let shot_done = auto.screenshot.is_none() || auto.saved.load(Ordering::Acquire);
    if elapsed >= deadline && (shot_done || elapsed >= deadline + SHOT_TIMEOUT) {
        if !shot_done {
            error!("the screenshot never arrived");
        }
        if let Some(path) = &auto.dump_cache {
            let dump = CacheDump::of(client.as_deref());
            match serde_json::to_vec_pretty(&dump) {
                Ok(bytes) => match std::fs::write(path, bytes) {
                    Ok(()) => info!("wrote the client cache to {}", path.display()),
                    Err(e) => error!("cannot write {}: {e}", path.display()),
                },
                Err(e) => error!("cannot encode the cache: {e}"),
            }
        }
        auto.exiting = true;
        exit.write(AppExit::Success);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_is_ready_with_the_chosen_name_and_enough_chunks() {
        assert!(!world_ready(None, None, 20));
        assert!(!world_ready(Some("player-7"), Some("Ada"), 20));
        assert!(!world_ready(Some("ada"), Some("Ada"), 3));
        assert!(world_ready(Some("ada"), Some("Ada"), READY_CHUNKS));
        assert!(world_ready(Some("player-7"), None, 12));
    }

    #[test]
    fn an_unconnected_dump_is_empty() {
        let dump = CacheDump::of(None);
        assert!(!dump.connected && dump.me.is_none() && dump.chunks.is_empty());
        let json = serde_json::to_value(&dump).unwrap();
        assert_eq!(json["connected"], false);
    }
}
