//! {{name}}: a Locus world module.
//!
//! # Tables
//!
//! | table | visibility | columns |
//! |---|---|---|
//! | `player` | public, spatial: a client is sent the players within [`VIEW_ENTER`] m of its own | `id: u64` pk auto_inc · `pos: Vec2` spatial · `identity: Identity` unique · `velocity: Vec2` · `moving: bool` btree |
//!
//! # Reducers
//!
//! | reducer | kind | does | refuses |
//! |---|---|---|---|
//! | `client_connected` | client_connected | first time: a player at the origin; always: the client's area of interest follows its player | — |
//! | `walk(dx, dy)` | client | walk in that direction at [`SPEED`] m/s; `(0, 0)` stops | numbers that are not finite |
//! | `tick(dt)` | tick | moves every walking player | — |

use locus_module::{Identity, ReducerContext, reducer, table};

pub use locus_module::Vec2;

/// How fast players walk, in metres per second.
pub const SPEED: f32 = 5.0;

/// A row comes into a client's view within this many metres of its player...
pub const VIEW_ENTER: f32 = 64.0;

/// ...and leaves it beyond this many (a margin, so a row at the edge does not flicker in and out).
pub const VIEW_LEAVE: f32 = 72.0;

/// The longest tick the tick reducer moves anyone for, in seconds (a late tick cannot teleport anyone).
pub const MAX_DT: f32 = 0.25;

/// A player: one per client identity. Public and spatial: each client is sent the players near its own.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Player {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// Where it is.
    #[spatial]
    pub pos: Vec2,
    /// The client that plays it.
    #[unique]
    pub identity: Identity,
    /// Metres per second; zero when it stands.
    pub velocity: Vec2,
    /// Whether the tick moves it. Indexed, so the tick visits only walking players.
    #[index(btree)]
    pub moving: bool,
}

/// A client connected: give it a player the first time, and make its area of interest follow that player.
#[reducer(client_connected)]
pub fn client_connected(ctx: &ReducerContext) -> Result<(), String> {
    let players = ctx.db.player();
    let me = match players.identity().find(&ctx.sender) {
        Some(me) => me,
        None => players.insert(Player {
            id: 0,
            pos: Vec2::ZERO,
            identity: ctx.sender,
            velocity: Vec2::ZERO,
            moving: false,
        })?,
    };
    ctx.set_area_follow(ctx.sender, players, &me.id, VIEW_ENTER, VIEW_LEAVE)?;
    locus_module::info!("player {} joined at {}", me.id, me.pos);
    Ok(())
}

/// Walk in direction `(dx, dy)` (any length; it is normalised) at [`SPEED`]; `(0, 0)` stops. The caller's own
/// player: no reducer takes a player id from a client, or one could move another's.
#[reducer]
pub fn walk(ctx: &ReducerContext, dx: f32, dy: f32) -> Result<(), String> {
    let dir = Vec2::new(dx, dy);
    if !dir.is_finite() {
        return Err("the direction must be finite numbers".into());
    }
    let players = ctx.db.player();
    let mut me = players
        .identity()
        .find(&ctx.sender)
        .ok_or("you have no player")?;
    me.velocity = dir.normalize_or_zero() * SPEED;
    me.moving = me.velocity != Vec2::ZERO;
    players.id().update(me)?;
    Ok(())
}

/// Every tick (20 a second): move the walking players.
#[reducer(tick)]
pub fn tick(ctx: &ReducerContext, dt: f32) -> Result<(), String> {
    let players = ctx.db.player();
    let dt = dt.min(MAX_DT);
    for mut p in players.moving().filter(&true) {
        p.pos += p.velocity * dt;
        players.id().update(p)?;
    }
    Ok(())
}
