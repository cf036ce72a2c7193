//! Resource nodes: trees, rocks, ore veins and bushes that players gather from.
//!
//! A node holds `amount` gathers (its kind's `amount` in `assets/spawns.json` when full). Each `gather` takes one
//! and gives the kind's `yields`; the last one depletes the node, and a scheduled `replenish_node` fills it again
//! after the kind's `respawn_secs`. A depleted node stays in the world (clients draw a stump).

use std::time::Duration;

use locus_module::{ReducerContext, Vec2, reducer, table};

use crate::content::content;
use crate::items::{add_items, carries};
use crate::players::{PlayerTable, gain_xp, my_living_player, start_action};

/// How far a player reaches to gather, in metres.
pub const GATHER_RANGE: f32 = 3.0;

/// How long `gather` keeps a player busy, in milliseconds.
pub const GATHER_COOLDOWN_MS: u64 = 1000;

/// A gatherable node: public and spatial.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceNode {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// Where it stands.
    #[spatial]
    pub pos: Vec2,
    /// Its kind (`"tree"`, …; a `kind` of `assets/spawns.json`'s `resources`).
    pub kind: String,
    /// Gathers left; `0` while depleted.
    pub amount: u32,
}

/// Place a full node of `kind` at `pos`.
pub(crate) fn spawn_node(ctx: &ReducerContext, kind: &str, pos: Vec2) -> Result<(), String> {
    let def = content()
        .resource(kind)
        .ok_or_else(|| format!("no resource kind `{kind}`"))?;
    ctx.db.resource_node().insert(ResourceNode {
        id: 0,
        pos,
        kind: def.kind.clone(),
        amount: def.amount,
    })?;
    Ok(())
}

/// Gather from node `node_id`: it must be within [`GATHER_RANGE`] of the caller's player and not depleted, and
/// some nodes need a tool. Gives the node's yield and experience.
#[reducer]
pub fn gather(ctx: &ReducerContext, node_id: u64) -> Result<(), String> {
    let mut me = my_living_player(ctx)?;
    let nodes = ctx.db.resource_node();
    let mut node = nodes
        .id()
        .find(&node_id)
        .ok_or_else(|| format!("no resource node {node_id}"))?;
    let def = content()
        .resource(&node.kind)
        .ok_or_else(|| format!("no resource kind `{}`", node.kind))?;
    let distance = node.pos.distance(me.pos);
    if distance > GATHER_RANGE {
        return Err(format!(
            "too far from the {}: {distance:.1} m away, you reach {GATHER_RANGE} m",
            def.kind
        ));
    }
    if node.amount == 0 {
        return Err(format!(
            "the {} is depleted; it grows back within {} s",
            def.kind, def.respawn_secs
        ));
    }
    if let Some(tool) = &def.tool
        && !carries(ctx, ctx.sender, tool)
    {
        return Err(format!("you need a {tool} for this {}", def.kind));
    }
    start_action(ctx, &mut me, GATHER_COOLDOWN_MS)?;
    add_items(ctx, ctx.sender, &def.yields.item, def.yields.count)?;
    gain_xp(&mut me, def.xp);
    ctx.db.player().id().update(me)?;
    node.amount -= 1;
    if node.amount == 0 {
        ctx.schedule_in(
            Duration::from_secs(u64::from(def.respawn_secs)),
            replenish_node::call(node.id),
        )?;
    }
    nodes.id().update(node)?;
    Ok(())
}

/// Scheduled when a node is depleted: fill it again.
#[reducer(scheduled)]
pub fn replenish_node(ctx: &ReducerContext, node_id: u64) -> Result<(), String> {
    let nodes = ctx.db.resource_node();
    if let Some(mut node) = nodes.id().find(&node_id)
        && let Some(def) = content().resource(&node.kind)
    {
        node.amount = def.amount;
        nodes.id().update(node)?;
    }
    Ok(())
}
