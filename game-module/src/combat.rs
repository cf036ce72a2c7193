//! Combat: players attack creatures; creatures fight back, chase and hit players in their AI
//! ([`crate::creatures`]).
//!
//! A player's hit does [`player_damage`]: a base, more per level, plus the best weapon it carries. An attack needs
//! the target within [`ATTACK_RANGE`] and the player's previous action over; it keeps the player busy for
//! [`ATTACK_COOLDOWN_MS`]. A creature at 0 health dies: its row is deleted, its loot drops where it stood, the
//! killer gains its experience, and a new one is scheduled at its home after its kind's `respawn_secs`.

use locus_module::{ReducerContext, reducer};

use crate::content::content;
use crate::creatures::{CreatureTable, provoke, remove_creature, schedule_respawn};
use crate::items::{best_weapon, drop_on_ground};
use crate::players::{Player, PlayerTable, gain_xp, my_living_player, start_action};

/// How far a player's attack reaches, in metres.
pub const ATTACK_RANGE: f32 = 3.0;

/// How long an attack keeps a player busy, in milliseconds.
pub const ATTACK_COOLDOWN_MS: u64 = 800;

/// A bare-handed level-1 hit.
pub const BASE_DAMAGE: u32 = 6;

/// Extra damage per level above the first.
pub const DAMAGE_PER_LEVEL: u32 = 2;

/// The damage of a hit by `player` carrying a best weapon of `weapon` damage.
#[must_use]
pub fn player_damage(player: &Player, weapon: u32) -> u32 {
    BASE_DAMAGE + DAMAGE_PER_LEVEL * player.level.saturating_sub(1) + weapon
}

/// Attack creature `creature_id`, which must be within [`ATTACK_RANGE`] of the caller's player.
#[reducer]
pub fn attack(ctx: &ReducerContext, creature_id: u64) -> Result<(), String> {
    let mut me = my_living_player(ctx)?;
    let creatures = ctx.db.creature();
    let mut target = creatures
        .id()
        .find(&creature_id)
        .ok_or("that creature is gone")?;
    let kind = content()
        .creature(&target.kind)
        .ok_or_else(|| format!("no creature kind `{}`", target.kind))?;
    let distance = target.pos.distance(me.pos);
    if distance > ATTACK_RANGE {
        return Err(format!(
            "too far from the {}: {distance:.1} m away, you reach {ATTACK_RANGE} m",
            kind.kind
        ));
    }
    start_action(ctx, &mut me, ATTACK_COOLDOWN_MS)?;
    let damage = player_damage(&me, best_weapon(ctx, ctx.sender));
    target.hp = target.hp.saturating_sub(damage);
    if target.hp == 0 {
        remove_creature(ctx, &target);
        for loot in &kind.loot {
            drop_on_ground(ctx, target.pos, &loot.item, loot.count)?;
        }
        gain_xp(&mut me, kind.xp);
        schedule_respawn(ctx, kind, target.home)?;
    } else {
        provoke(ctx, &mut target, kind, &me)?;
        creatures.id().update(target)?;
    }
    ctx.db.player().id().update(me)?;
    Ok(())
}
