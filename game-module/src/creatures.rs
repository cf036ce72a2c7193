//! Creatures: wandering animals and hostile monsters, their AI, death and respawn.
//!
//! # The AI, and why it is cheap
//!
//! A creature does not think every tick. Its private [`CreatureMind`] row carries `next_think`, the tick of its next
//! decision, in a btree index; the `tick` reducer asks that index for the creatures due now (`next_think <= tick`)
//! and visits only them. Each decision sets the next one. The mind is a table of its own, private, because clients
//! never need it and it changes at every decision: in the public `creature` row it would make every decision a
//! patch of several columns to every client near (where a walk alone is a move of a few bytes), and an idle
//! creature's decision a change at all.
//!
//! | state | what it does at a decision | next decision |
//! |---|---|---|
//! | no online player within [`WAKE_RADIUS`] (none can see it) | rests where it is, back to full health | in [`DORMANT_TICKS`] (+ up to half that, so sleepers spread out) |
//! | `Idle` | a hostile one starts a chase if a player is within its aggro radius (and its leash); a passive one flees; else it may set off to a random point near home | after an idle pause ([`HOSTILE_IDLE_TICKS`], [`CALM_IDLE_TICKS`]), or in [`MOVE_TICKS`] once walking |
//! | `Wander` | walks toward its goal; arriving or blocked by water, it idles | in [`MOVE_TICKS`] |
//! | `Chase` | walks toward its prey, and hits it when in range and its attack is ready; gives up (→ `Return`) when the prey is gone, dead, offline or past the leash | in [`MOVE_TICKS`] |
//! | `Flee` | runs to a point away from the threat, then idles | in [`MOVE_TICKS`] |
//! | `Return` | walks home, then idles at full health | in [`MOVE_TICKS`] |
//!
//! So a moving creature moves at about 7 Hz (three ticks' walk at a time, which clients interpolate), an idle one
//! costs a decision every 0.5 to 8 seconds, and one nobody can see one every five to seven seconds. "Is a player
//! near?" is one `nearest` query on the player table's R-tree (usually one row), never a scan of all players.
//!
//! Creatures walk at their kind's speed and never onto water, like players.

use std::time::Duration;

use locus_module::rand::RngExt;
use locus_module::{ContextRng, ReducerContext, Timestamp, Vec2, reducer, table};
use serde::{Deserialize, Serialize};

use crate::content::{CreatureKind, Temperament, content};
use crate::players::{Player, PlayerTable, clamp_to_world, hurt, step_toward};
use crate::terrain::{is_walkable, tile_of};

/// A creature with no online, living player this close rests ([`DORMANT_TICKS`] between decisions). Beyond a
/// client's 72 m leave radius, so a creature anyone can see is awake.
pub const WAKE_RADIUS: f32 = 96.0;

/// Ticks between the decisions of a moving creature (it moves this many ticks' walk at a time).
pub const MOVE_TICKS: u64 = 3;

/// Ticks between the decisions of a creature nobody is near (at least; up to half as many again).
pub const DORMANT_TICKS: u64 = 100;

/// The idle pause between wanders of a hostile creature, in ticks: short, as it notices players only when it
/// decides.
pub const HOSTILE_IDLE_TICKS: std::ops::Range<u64> = 10..30;

/// The idle pause between wanders of other creatures, in ticks (2 to 8 seconds).
pub const CALM_IDLE_TICKS: std::ops::Range<u64> = 40..160;

/// How many players `nearest` fetches when the very nearest is offline or dead.
const NEAREST_CANDIDATES: u32 = 8;

/// What a creature is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreatureState {
    /// Standing (or resting, when nobody is near).
    Idle,
    /// Walking to `goal`, near home.
    Wander,
    /// Hunting a player.
    Chase {
        /// The player's id.
        prey: u64,
    },
    /// Running to `goal`, away from a threat.
    Flee,
    /// Walking home after a chase.
    Return,
}

/// A creature: public and spatial.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Creature {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// Where it is.
    #[spatial]
    pub pos: Vec2,
    /// Its kind (`"wolf"`, …; a `kind` of `assets/spawns.json`'s `creatures`).
    pub kind: String,
    /// Health; it dies (its row is deleted) at 0.
    pub hp: u32,
    /// What it is doing (an opaque column: a MessagePack value of [`CreatureState`]).
    pub state: CreatureState,
    /// Where it spawned: it wanders around it, returns to it, and respawns at it.
    pub home: Vec2,
}

/// A creature's AI bookkeeping: private (clients never see it), one row per creature, same id.
#[table]
#[derive(Clone, Debug, PartialEq)]
pub struct CreatureMind {
    /// The creature's id.
    #[primary_key]
    pub id: u64,
    /// The tick of its next decision (indexed: the tick reducer visits only the creatures due).
    #[index(btree)]
    pub next_think: u64,
    /// The tick of its last decision.
    pub last_think: u64,
    /// Where it walks to while wandering or fleeing.
    pub goal: Vec2,
    /// Its next hit may land at this time, not before.
    pub ready_at: Timestamp,
}

/// How creatures find the nearest player: through the player table's spatial index, or (the benchmark's naive
/// baseline, `admin_tick_naive`) by scanning a list of every online, living player.
#[derive(Debug)]
pub(crate) enum Neighbours {
    /// `nearest` on the player table's R-tree.
    Index,
    /// A linear scan over `(id, pos)` of every online, living player.
    Scan(Vec<(u64, Vec2)>),
}

impl Neighbours {
    /// The scan baseline: every online, living player, read once.
    pub(crate) fn scan(ctx: &ReducerContext) -> Neighbours {
        Neighbours::Scan(
            ctx.db
                .player()
                .iter()
                .filter(|p| p.online && p.is_alive())
                .map(|p| (p.id, p.pos))
                .collect(),
        )
    }

    /// The online, living player nearest to `pos` within `radius`: its id and position.
    fn nearest(&self, ctx: &ReducerContext, pos: Vec2, radius: f32) -> Option<(u64, Vec2)> {
        let found = match self {
            Neighbours::Index => {
                let eligible = |p: &Player| p.online && p.is_alive();
                let players = ctx.db.player();
                // Usually the very nearest player is online and alive: one row. Otherwise look a little further.
                match players.pos().nearest(pos, 1).next() {
                    Some(p) if eligible(&p) => Some(p),
                    None => None,
                    Some(_) => players
                        .pos()
                        .nearest(pos, NEAREST_CANDIDATES)
                        .find(eligible),
                }
                .map(|p| (p.id, p.pos))
            }
            Neighbours::Scan(players) => players.iter().copied().min_by(|a, b| {
                a.1.distance_squared(pos)
                    .total_cmp(&b.1.distance_squared(pos))
            }),
        };
        found.filter(|(_, p)| p.distance(pos) <= radius)
    }
}

/// A random idle pause for a creature of `kind`, as the tick of its next decision.
fn idle_until(now: u64, kind: &CreatureKind, rng: &mut ContextRng<'_>) -> u64 {
    let pause = match kind.temperament {
        Temperament::Hostile => HOSTILE_IDLE_TICKS,
        Temperament::Passive | Temperament::Defensive => CALM_IDLE_TICKS,
    };
    now + rng.random_range(pause)
}

/// Insert a creature of `kind` at `home`, idle, with its first decision spread over the next idle pause.
pub(crate) fn spawn_creature(
    ctx: &ReducerContext,
    kind: &CreatureKind,
    home: Vec2,
) -> Result<Creature, String> {
    let now = ctx.tick.0;
    let first = idle_until(now, kind, &mut ctx.rng());
    let c = ctx.db.creature().insert(Creature {
        id: 0,
        pos: home,
        kind: kind.kind.clone(),
        hp: kind.hp,
        state: CreatureState::Idle,
        home,
    })?;
    ctx.db.creature_mind().insert(CreatureMind {
        id: c.id,
        next_think: first,
        last_think: now,
        goal: home,
        ready_at: ctx.timestamp,
    })?;
    Ok(c)
}

/// Delete creature `c` and its mind.
pub(crate) fn remove_creature(ctx: &ReducerContext, c: &Creature) {
    ctx.db.creature().delete(c);
    ctx.db.creature_mind().id().delete(&c.id);
}

/// Walk from `pos` up to `step` metres toward `to`; whether it got there. A step onto water is not taken (the
/// creature stops, and its caller changes its plan).
fn walk(pos: &mut Vec2, to: Vec2, step: f32) -> Walked {
    let to = clamp_to_world(to);
    let next = step_toward(*pos, to, step);
    if tile_of(next) != tile_of(*pos) && !is_walkable(next) {
        return Walked::Blocked;
    }
    *pos = next;
    if next == to {
        Walked::Arrived
    } else {
        Walked::OnTheWay
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walked {
    OnTheWay,
    Arrived,
    Blocked,
}

/// Start fleeing from `threat`: toward a point a wander radius away on the far side.
fn flee_from(c: &mut Creature, m: &mut CreatureMind, kind: &CreatureKind, threat: Vec2) {
    let away = (c.pos - threat).normalize_or(Vec2::X);
    m.goal = c.pos + away * kind.wander_radius.max(8.0);
    c.state = CreatureState::Flee;
}

/// React to being hit by `attacker`: a passive creature flees, others fight back. It decides again this tick.
/// Writes its mind back; the caller writes `c`.
pub(crate) fn provoke(
    ctx: &ReducerContext,
    c: &mut Creature,
    kind: &CreatureKind,
    attacker: &Player,
) -> Result<(), String> {
    let minds = ctx.db.creature_mind();
    let Some(mut m) = minds.id().find(&c.id) else {
        return Ok(());
    };
    match kind.temperament {
        Temperament::Passive => flee_from(c, &mut m, kind, attacker.pos),
        Temperament::Defensive | Temperament::Hostile => {
            c.state = CreatureState::Chase { prey: attacker.id };
        }
    }
    m.next_think = ctx.tick.0;
    minds.id().update(m)?;
    Ok(())
}

/// One decision of creature `c` with mind `m` (see the [module docs](self)); writes them back (the creature's
/// public row only if it changed: an idle creature's decision changes its mind alone).
fn think(
    ctx: &ReducerContext,
    neighbours: &Neighbours,
    rng: &mut ContextRng<'_>,
    dt: f32,
    c: Creature,
    mut m: CreatureMind,
) -> Result<(), String> {
    let Some(kind) = content().creature(&c.kind) else {
        // A kind the content no longer defines (the module was updated): the creature goes.
        remove_creature(ctx, &c);
        return Ok(());
    };
    let before = c.clone();
    let mut c = c;
    let now = ctx.tick.0;
    // At most MOVE_TICKS' walk per decision, however long it idled: no creature outruns its speed.
    let step = kind.speed * dt * now.saturating_sub(m.last_think).clamp(1, MOVE_TICKS) as f32;
    m.last_think = now;
    m.next_think = now + MOVE_TICKS;
    match neighbours.nearest(ctx, c.pos, WAKE_RADIUS) {
        None => {
            c.state = CreatureState::Idle;
            m.goal = c.pos;
            c.hp = kind.hp;
            m.next_think = now + DORMANT_TICKS + rng.random_range(0..DORMANT_TICKS / 2);
        }
        Some((near_id, near_pos)) => {
            decide(ctx, rng, kind, &mut c, &mut m, step, (near_id, near_pos))?
        }
    }
    ctx.db.creature_mind().id().update(m)?;
    if c != before {
        ctx.db.creature().id().update(c)?;
    }
    Ok(())
}

/// The decision of an awake creature, `near` the nearest online, living player (its id and position).
fn decide(
    ctx: &ReducerContext,
    rng: &mut ContextRng<'_>,
    kind: &CreatureKind,
    c: &mut Creature,
    m: &mut CreatureMind,
    step: f32,
    near: (u64, Vec2),
) -> Result<(), String> {
    let now = ctx.tick.0;
    let (near_id, near_pos) = near;
    match c.state {
        CreatureState::Chase { prey } => chase(ctx, c, m, kind, prey, step)?,
        CreatureState::Return => {
            if walk(&mut c.pos, c.home, step) != Walked::OnTheWay {
                c.state = CreatureState::Idle;
                c.hp = kind.hp;
                m.next_think = idle_until(now, kind, rng);
            }
        }
        CreatureState::Flee => {
            if walk(&mut c.pos, m.goal, step) != Walked::OnTheWay {
                c.state = CreatureState::Idle;
                m.next_think = idle_until(now, kind, rng);
            }
        }
        CreatureState::Idle | CreatureState::Wander => {
            let distance = near_pos.distance(c.pos);
            let in_reach = distance <= kind.aggro_radius;
            match kind.temperament {
                Temperament::Hostile
                    if in_reach && near_pos.distance(c.home) <= kind.leash_radius =>
                {
                    c.state = CreatureState::Chase { prey: near_id };
                    chase(ctx, c, m, kind, near_id, step)?;
                }
                Temperament::Passive if in_reach => {
                    flee_from(c, m, kind, near_pos);
                    walk(&mut c.pos, m.goal, step);
                }
                _ if c.state == CreatureState::Wander => {
                    if walk(&mut c.pos, m.goal, step) != Walked::OnTheWay {
                        c.state = CreatureState::Idle;
                        m.next_think = idle_until(now, kind, rng);
                    }
                }
                _ => {
                    let angle = rng.random_range(0.0..std::f32::consts::TAU);
                    let radius = kind.wander_radius * rng.random_range(0.2f32..1.0);
                    let goal = c.home + Vec2::from_angle(angle) * radius;
                    if rng.random_bool(0.5) && is_walkable(goal) {
                        c.state = CreatureState::Wander;
                        m.goal = goal;
                    } else {
                        m.next_think = idle_until(now, kind, rng);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Chase player `prey`: hit it if in range and ready, else close in; give up if it is gone or past the leash.
fn chase(
    ctx: &ReducerContext,
    c: &mut Creature,
    m: &mut CreatureMind,
    kind: &CreatureKind,
    prey: u64,
    step: f32,
) -> Result<(), String> {
    let target = ctx
        .db
        .player()
        .id()
        .find(&prey)
        .filter(|p| p.online && p.is_alive() && p.pos.distance(c.home) <= kind.leash_radius);
    let Some(target) = target else {
        c.state = CreatureState::Return;
        return Ok(());
    };
    let distance = target.pos.distance(c.pos);
    if distance <= kind.attack_range {
        if ctx.timestamp >= m.ready_at && kind.damage > 0 {
            m.ready_at = ctx
                .timestamp
                .add_micros(u64::from(kind.attack_cooldown_ms) * 1000);
            hurt(ctx, target, kind.damage)?;
        }
    } else {
        // Stop a little inside attack range rather than on the player.
        let to = target.pos + (c.pos - target.pos).normalize_or_zero() * (kind.attack_range * 0.8);
        if walk(&mut c.pos, to, step) == Walked::Blocked {
            c.state = CreatureState::Return;
        }
    }
    Ok(())
}

/// The tick's part: every creature due a decision makes it. (A mind whose creature is gone is dropped.)
pub(crate) fn think_all(
    ctx: &ReducerContext,
    dt: f32,
    neighbours: &Neighbours,
) -> Result<(), String> {
    let mut rng = ctx.rng();
    let (creatures, minds) = (ctx.db.creature(), ctx.db.creature_mind());
    for m in minds.next_think().range(..=ctx.tick.0) {
        match creatures.id().find(&m.id) {
            Some(c) => think(ctx, neighbours, &mut rng, dt, c, m)?,
            None => drop(minds.id().delete(&m.id)),
        }
    }
    Ok(())
}

/// Scheduled when a creature dies: a new one of `kind` at its home (`x`, `y`).
#[reducer(scheduled)]
pub fn respawn_creature(ctx: &ReducerContext, kind: String, x: f32, y: f32) -> Result<(), String> {
    if let Some(def) = content().creature(&kind) {
        spawn_creature(ctx, def, Vec2::new(x, y))?;
    }
    Ok(())
}

/// Schedule the respawn of a creature of `kind` that lived at `home`, after the kind's `respawn_secs`.
pub(crate) fn schedule_respawn(
    ctx: &ReducerContext,
    kind: &CreatureKind,
    home: Vec2,
) -> Result<(), String> {
    ctx.schedule_in(
        Duration::from_secs(u64::from(kind.respawn_secs)),
        respawn_creature::call(kind.kind.clone(), home.x, home.y),
    )?;
    Ok(())
}
