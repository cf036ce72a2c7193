//! Players: joining, names, walking, health, experience, death and respawn.
//!
//! A client that connects for the first time gets a player at once (named `player-<id>`, which it may change with
//! `set_name`), so it has an avatar and an area of interest from its first tick. No reducer takes a player id: the
//! actor is always the caller's own player, found by `ctx.sender`, so nobody can act for someone else.
//!
//! Clients steer, the server moves: `move_to` sets a target and `move_dir` a direction, and the `tick` reducer
//! moves every walking player [`WALK_SPEED`] metres per second toward it, checking the terrain whenever a step
//! enters a new tile, and stopping at water (the world's edges are sea). A client can therefore not move faster
//! than the speed limit, nor onto water, whatever it sends.

use std::time::Duration;

use locus_module::rand::RngExt;
use locus_module::{Identity, ReducerContext, Timestamp, Vec2, reducer, table};

use crate::content::content;
use crate::items::add_items;
use crate::terrain::{is_walkable, tile_of};
use crate::{MAX_TICK_DT, VIEW_ENTER, VIEW_LEAVE, WORLD_SIZE};

/// How fast players walk, in metres per second.
pub const WALK_SPEED: f32 = 5.0;

/// The shortest player name, in characters.
pub const MIN_NAME_CHARS: usize = 3;

/// The longest player name, in characters.
pub const MAX_NAME_CHARS: usize = 16;

/// Generated names (`player-<id>`) start with this; chosen names may not.
pub const GENERATED_NAME_PREFIX: &str = "player-";

/// Seconds from a player's death to its respawn.
pub const PLAYER_RESPAWN_SECS: u64 = 5;

/// Health regained per second by a living player (in `housekeeping`).
pub const HP_REGEN_PER_SEC: u32 = 1;

/// What a new player carries.
pub const STARTING_ITEMS: &[(&str, u32)] = &[("wood", 5)];

/// Declares [`Player`]; the `upgrade-demo` feature appends a column (a live module upgrade's example: see
/// [`crate::upgrade_demo`]).
macro_rules! player_table {
    ($($extra:tt)*) => {
        /// A player: one per client identity, public and spatial.
        ///
        /// Movable: in a world split into regions, a player walking into another region is moved there by the engine,
        /// and with it, by its `identity` (unique), everything that identity owns (its inventory, its whispers) and
        /// its per-player state keyed by identity (`chat_quota`).
        ///
        /// Column order matters for cost, not meaning: the key and the spatial column come first, so the interest stage
        /// reads only the start of each row.
        #[table(public, movable)]
        #[derive(Clone, Debug, PartialEq)]
        pub struct Player {
            /// Assigned on insert.
            #[primary_key]
            #[auto_inc]
            pub id: u64,
            /// Where it is (always on walkable terrain, inside the world).
            #[spatial]
            pub pos: Vec2,
            /// The client that plays it.
            #[unique]
            pub identity: Identity,
            /// Display name: generated `player-<id>`, or one chosen with `set_name` (see [`validate_name`]).
            #[unique]
            pub name: String,
            /// Where it is walking to; equal to `pos` when it is not walking to a point.
            pub target: Vec2,
            /// The direction it walks in (unit length), or zero when it walks to `target` or stands.
            pub dir: Vec2,
            /// Whether the tick should move it (it has a direction or a target away from `pos`). Indexed, so the tick
            /// visits only walking players.
            #[index(btree)]
            pub moving: bool,
            /// Whether its client is connected; only online players move, and creatures ignore offline ones.
            pub online: bool,
            /// Health: `0` while dead (until the respawn).
            pub hp: u32,
            /// Level, from `xp` ([`level_for_xp`]).
            pub level: u32,
            /// Experience, from gathering and kills.
            pub xp: u64,
            /// Its next action (attack, gather, craft, eat) may start at this time, not before.
            pub busy_until: Timestamp,

            $($extra)*
        }
    };
}

#[cfg(not(feature = "upgrade-demo"))]
player_table!();

#[cfg(feature = "upgrade-demo")]
player_table!(
    /// A title shown with the name (added by the upgrade; existing players get the default).
    #[default("Adventurer")]
    pub title: String,
);

impl Player {
    /// Whether it is alive.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        self.hp > 0
    }

    /// Its full health at its level.
    #[must_use]
    pub fn max_hp(&self) -> u32 {
        max_hp(self.level)
    }

    /// Stop walking (standing where it is).
    pub fn stop(&mut self) {
        self.target = self.pos;
        self.dir = Vec2::ZERO;
        self.moving = false;
    }
}

/// Full health at `level`: 100, and 10 more per level after the first.
#[must_use]
pub fn max_hp(level: u32) -> u32 {
    100 + 10 * level.saturating_sub(1)
}

/// The level `xp` experience gives: 1, then one more at 50, 200, 450, … (`50 · (level − 1)²`) experience.
#[must_use]
pub fn level_for_xp(xp: u64) -> u32 {
    let mut level = 1u64;
    while 50 * level * level <= xp {
        level += 1;
    }
    u32::try_from(level).unwrap_or(u32::MAX)
}

/// `p` moved into the world: each coordinate clamped to `0..=WORLD_SIZE`. `p` must be finite.
#[must_use]
pub fn clamp_to_world(p: Vec2) -> Vec2 {
    p.clamp(Vec2::ZERO, Vec2::splat(WORLD_SIZE))
}

/// `from` moved at most `max_step` metres straight toward `to`, landing exactly on `to` when it is that close.
#[must_use]
pub fn step_toward(from: Vec2, to: Vec2, max_step: f32) -> Vec2 {
    let offset = to - from;
    let distance = offset.length();
    if distance <= max_step {
        to
    } else {
        from + offset * (max_step / distance)
    }
}

/// `name` as it would be stored (lowercase), or why it is not a valid name: 3 to 16 characters, ASCII letters,
/// digits, `-` and `_`, starting with a letter, and not starting with `player-` (kept for generated names).
///
/// Names are compared and stored in lowercase, so `Ada` and `ada` are the same name.
///
/// # Errors
///
/// A message for the player, saying what is wrong.
pub fn validate_name(name: &str) -> Result<String, String> {
    let chars = name.chars().count();
    if !(MIN_NAME_CHARS..=MAX_NAME_CHARS).contains(&chars) {
        return Err(format!(
            "a name has {MIN_NAME_CHARS} to {MAX_NAME_CHARS} characters, not {chars}"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("a name may only use the letters a-z, digits, `-` and `_`".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("a name starts with a letter".into());
    }
    let name = name.to_ascii_lowercase();
    if name.starts_with(GENERATED_NAME_PREFIX) {
        return Err(format!(
            "names starting with `{GENERATED_NAME_PREFIX}` are kept for new players"
        ));
    }
    Ok(name)
}

/// A finite point clamped into the world, or the reducers' error for a point that is not finite.
fn world_point(x: f32, y: f32) -> Result<Vec2, String> {
    let p = Vec2::new(x, y);
    if p.is_finite() {
        Ok(clamp_to_world(p))
    } else {
        Err("not a finite position".into())
    }
}

/// The caller's player.
pub(crate) fn my_player(ctx: &ReducerContext) -> Result<Player, String> {
    ctx.db
        .player()
        .identity()
        .find(&ctx.sender)
        .ok_or_else(|| "no player for this client".into())
}

/// The caller's player, which must be alive.
pub(crate) fn my_living_player(ctx: &ReducerContext) -> Result<Player, String> {
    let me = my_player(ctx)?;
    if me.is_alive() {
        Ok(me)
    } else {
        Err("you are dead; you will respawn in a moment".into())
    }
}

/// Start an action lasting `cooldown_ms`: fails if the player's previous action is not over yet, otherwise marks
/// the player busy until the new one is (the caller writes the player back).
pub(crate) fn start_action(
    ctx: &ReducerContext,
    player: &mut Player,
    cooldown_ms: u64,
) -> Result<(), String> {
    if ctx.timestamp < player.busy_until {
        let wait = (player.busy_until.0 - ctx.timestamp.0).div_ceil(1000);
        return Err(format!("you are busy for another {wait} ms"));
    }
    player.busy_until = ctx.timestamp.add_micros(cooldown_ms * 1000);
    Ok(())
}

/// A random walkable point within the spawn zone, from the call's RNG (the zone's centre, which the terrain keeps
/// dry, if 32 tries find none).
fn spawn_point(ctx: &ReducerContext) -> Vec2 {
    let zone = content().world.spawn;
    let center = Vec2::from(zone.center);
    let mut rng = ctx.rng();
    for _ in 0..32 {
        let angle = rng.random_range(0.0..std::f32::consts::TAU);
        // sqrt: uniform over the disc's area, not bunched at its centre.
        let radius = zone.radius * rng.random_range(0.0f32..1.0).sqrt();
        let p = center + Vec2::from_angle(angle) * radius;
        if is_walkable(p) {
            return p;
        }
    }
    center
}

/// Add `xp` experience to `player` (levelling up heals by the health the new levels add). The caller writes it.
pub(crate) fn gain_xp(player: &mut Player, xp: u32) {
    player.xp += u64::from(xp);
    let level = level_for_xp(player.xp);
    if level > player.level && player.is_alive() {
        player.hp += max_hp(level) - max_hp(player.level);
    }
    player.level = level;
}

/// Deal `damage` to `player` and write it back; at zero health it dies: it stops, and respawns after
/// [`PLAYER_RESPAWN_SECS`].
pub(crate) fn hurt(
    ctx: &ReducerContext,
    mut player: Player,
    damage: u32,
) -> Result<Player, String> {
    if !player.is_alive() {
        return Ok(player);
    }
    player.hp = player.hp.saturating_sub(damage);
    if player.hp == 0 {
        player.stop();
        ctx.schedule_in(
            Duration::from_secs(PLAYER_RESPAWN_SECS),
            respawn_player::call(player.id),
        )?;
    }
    Ok(ctx.db.player().id().update(player)?)
}

/// A client connected: give it a player (with the starting items) if it has none, mark the player online, and make
/// the client's area of interest follow it.
#[reducer(client_connected)]
pub fn client_connected(ctx: &ReducerContext) -> Result<(), String> {
    let players = ctx.db.player();
    let mut player = match players.identity().find(&ctx.sender) {
        Some(player) => player,
        None => {
            let pos = spawn_point(ctx);
            let mut player = players.insert(Player {
                id: 0,
                pos,
                identity: ctx.sender,
                // Replaced below, once the id is known; unique, as no chosen or generated name is empty.
                name: String::new(),
                target: pos,
                dir: Vec2::ZERO,
                moving: false,
                online: false,
                hp: max_hp(1),
                level: 1,
                xp: 0,
                busy_until: ctx.timestamp,
                #[cfg(feature = "upgrade-demo")]
                title: "Newcomer".into(),
            })?;
            player.name = format!("{GENERATED_NAME_PREFIX}{}", player.id);
            for &(item, count) in STARTING_ITEMS {
                add_items(ctx, ctx.sender, item, count)?;
            }
            player
        }
    };
    player.online = true;
    let player = players.id().update(player)?;
    ctx.set_area_follow(ctx.sender, players, &player.id, VIEW_ENTER, VIEW_LEAVE)?;
    locus_module::info!(
        "{} (player {}) entered the world at ({:.0}, {:.0})",
        player.name,
        player.id,
        player.pos.x,
        player.pos.y
    );
    Ok(())
}

/// A client disconnected: its player stops and stays in the world, offline (creatures ignore it).
#[reducer(client_disconnected)]
pub fn client_disconnected(ctx: &ReducerContext) -> Result<(), String> {
    let players = ctx.db.player();
    if let Some(mut player) = players.identity().find(&ctx.sender) {
        player.online = false;
        player.stop();
        locus_module::info!("{} (player {}) left", player.name, player.id);
        players.id().update(player)?;
    }
    Ok(())
}

/// Rename the caller's player (see [`validate_name`]; names are unique).
#[reducer]
pub fn set_name(ctx: &ReducerContext, name: String) -> Result<(), String> {
    let name = validate_name(&name)?;
    let mut me = my_player(ctx)?;
    if let Some(other) = ctx.db.player().name().find(&name)
        && other.id != me.id
    {
        return Err(format!("the name `{name}` is taken"));
    }
    me.name = name;
    ctx.db.player().id().update(me)?;
    Ok(())
}

/// Walk toward (`x`, `y`), clamped into the world. The walk stops early at water.
#[reducer]
pub fn move_to(ctx: &ReducerContext, x: f32, y: f32) -> Result<(), String> {
    let target = world_point(x, y)?;
    let mut me = my_living_player(ctx)?;
    me.target = target;
    me.dir = Vec2::ZERO;
    me.moving = me.pos != target;
    ctx.db.player().id().update(me)?;
    Ok(())
}

/// Walk in direction (`dx`, `dy`) (any length: it is normalised) until told otherwise; (0, 0) stops.
#[reducer]
pub fn move_dir(ctx: &ReducerContext, dx: f32, dy: f32) -> Result<(), String> {
    let dir = Vec2::new(dx, dy);
    if !dir.is_finite() {
        return Err("not a finite direction".into());
    }
    let mut me = my_living_player(ctx)?;
    me.dir = dir.normalize_or_zero();
    me.target = me.pos;
    me.moving = me.dir != Vec2::ZERO;
    ctx.db.player().id().update(me)?;
    Ok(())
}

/// Demo and admin convenience: jump to (`x`, `y`), clamped into the world, and stand there. Only onto walkable
/// terrain, and only while alive. A real game would drop it or keep it for admins; the engine's end-to-end tests
/// use it to place players.
#[reducer]
pub fn teleport(ctx: &ReducerContext, x: f32, y: f32) -> Result<(), String> {
    let to = world_point(x, y)?;
    if !is_walkable(to) {
        return Err(format!("cannot teleport onto water at {to}"));
    }
    let mut me = my_living_player(ctx)?;
    me.pos = to;
    me.stop();
    ctx.db.player().id().update(me)?;
    Ok(())
}

/// Scheduled [`PLAYER_RESPAWN_SECS`] after a death: back to full health at a spawn point.
#[reducer(scheduled)]
pub fn respawn_player(ctx: &ReducerContext, player_id: u64) -> Result<(), String> {
    let players = ctx.db.player();
    let Some(mut player) = players.id().find(&player_id) else {
        return Ok(());
    };
    if player.is_alive() {
        return Ok(());
    }
    player.pos = spawn_point(ctx);
    player.stop();
    player.hp = player.max_hp();
    players.id().update(player)?;
    Ok(())
}

/// The tick's part: move every walking player, stopping it at water, at the world's edge and on arrival.
pub(crate) fn walk(ctx: &ReducerContext, dt: f32) -> Result<(), String> {
    let players = ctx.db.player();
    let step = WALK_SPEED * dt.min(MAX_TICK_DT);
    for mut p in players.moving().filter(&true) {
        if p.online && p.is_alive() {
            let next = if p.dir == Vec2::ZERO {
                step_toward(p.pos, p.target, step)
            } else {
                clamp_to_world(p.pos + p.dir * step)
            };
            // Only a step into another tile can reach water: most steps stay in their 4-metre tile.
            if tile_of(next) == tile_of(p.pos) || is_walkable(next) {
                p.pos = next;
                if p.dir != Vec2::ZERO {
                    p.target = next;
                } else if p.pos == p.target {
                    p.moving = false;
                }
            } else {
                p.stop();
            }
        } else {
            p.stop();
        }
        players.id().update(p)?;
    }
    Ok(())
}

/// Housekeeping's part: every living player below full health regains [`HP_REGEN_PER_SEC`].
pub(crate) fn regenerate(ctx: &ReducerContext) -> Result<(), String> {
    let players = ctx.db.player();
    for mut p in players.iter() {
        if p.is_alive() && p.hp < p.max_hp() {
            p.hp = (p.hp + HP_REGEN_PER_SEC).min(p.max_hp());
            players.id().update(p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_lowercased() {
        assert_eq!(validate_name("Ada_99").unwrap(), "ada_99");
        for bad in [
            "",
            "ab",
            "seventeen-letters",
            "ada lovelace",
            "9lives",
            "Player-7",
            "émile",
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(
                err.contains("name") || err.contains("letter"),
                "{bad}: {err}"
            );
        }
        assert!(
            validate_name("")
                .unwrap_err()
                .contains("a name has 3 to 16 characters")
        );
    }

    #[test]
    fn levels_follow_experience() {
        assert_eq!(level_for_xp(0), 1);
        assert_eq!(level_for_xp(49), 1);
        assert_eq!(level_for_xp(50), 2);
        assert_eq!(level_for_xp(199), 2);
        assert_eq!(level_for_xp(200), 3);
        assert_eq!(max_hp(1), 100);
        assert_eq!(max_hp(3), 120);
    }

    #[test]
    fn steps_stop_on_the_target() {
        assert_eq!(
            step_toward(Vec2::ZERO, Vec2::new(3.0, 4.0), 2.5),
            Vec2::new(1.5, 2.0)
        );
        assert_eq!(
            step_toward(Vec2::ZERO, Vec2::new(3.0, 4.0), 10.0),
            Vec2::new(3.0, 4.0)
        );
        assert_eq!(
            clamp_to_world(Vec2::new(-5.0, 5000.0)),
            Vec2::new(0.0, 4096.0)
        );
    }
}
