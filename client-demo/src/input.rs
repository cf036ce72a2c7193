//! Controls: WASD / arrow keys walk (`move_dir`), a left click on the ground walks there (`move_to`), a left click
//! on a resource node, creature or dropped item walks up to it and gathers, attacks or picks it up (repeating
//! gathers and attacks until the node is spent or the creature dead), `E` picks up the nearest item in reach.
//!
//! Every input acts on the predicted avatar at once (see [`crate::predict`]) and is sent to the server; the
//! direction is sent only when it changes, so holding a key sends one call.

use std::time::Duration;

use bevy::platform::time::Instant;

use bevy::prelude::*;
use bevy::window::PrimaryWindow;
use game_module::{ATTACK_RANGE, GATHER_RANGE, PICKUP_RANGE};
use glam::Vec2 as WorldVec2;
use locus_client::Client;

use crate::net::Net;
use crate::sprites::{
    CreatureRow, DrawSystems, GroundItemRow, MainCamera, NodeRow, Prediction, creature_size,
    node_size, to_scene, to_world, z,
};
use crate::ui::ChatInput;

/// Something in the world a click can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Gather from this resource node.
    Node(u64),
    /// Attack this creature.
    Creature(u64),
    /// Pick up this ground item.
    Item(u64),
}

impl Target {
    /// How close the server requires the player to be.
    #[must_use]
    pub fn range(self) -> f32 {
        match self {
            Target::Node(_) => GATHER_RANGE,
            Target::Creature(_) => ATTACK_RANGE,
            Target::Item(_) => PICKUP_RANGE,
        }
    }

    /// The time between two tries of the action (the server's cooldown, plus a margin).
    #[must_use]
    pub fn interval(self) -> Duration {
        match self {
            Target::Node(_) => Duration::from_millis(1050),
            Target::Creature(_) => Duration::from_millis(850),
            Target::Item(_) => Duration::from_millis(500),
        }
    }
}

/// How much closer than the server's range the avatar walks before acting: the server judges by its own
/// position of the avatar, which trails the predicted one.
pub const RANGE_MARGIN: f32 = 1.0;

/// The walking direction the keys ask for (unit length or zero). `y` is north.
#[must_use]
pub fn key_direction(up: bool, down: bool, left: bool, right: bool) -> WorldVec2 {
    let axis = |neg: bool, pos: bool| f32::from(u8::from(pos)) - f32::from(u8::from(neg));
    WorldVec2::new(axis(left, right), axis(down, up)).normalize_or_zero()
}

/// The candidate nearest to `click` whose pick radius holds it. Candidates are (target, position, radius).
#[must_use]
pub fn pick(
    click: WorldVec2,
    candidates: impl IntoIterator<Item = (Target, WorldVec2, f32)>,
) -> Option<Target> {
    candidates
        .into_iter()
        .map(|(t, p, r)| (t, p.distance(click), r))
        .filter(|&(_, d, r)| d <= r)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(t, _, _)| t)
}

/// What to do next about an intent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Walk to this point (the target moved away or is not reached yet).
    WalkTo(WorldVec2),
    /// Keep walking: already heading there.
    Keep,
    /// In reach: stop walking (if walking) and act.
    Act,
}

/// The next step toward acting on a target at `target_pos` with reach `range`, from `own` while walking toward
/// `heading` (the last point sent with `move_to`, if any).
#[must_use]
pub fn next_step(
    own: WorldVec2,
    target_pos: WorldVec2,
    range: f32,
    heading: Option<WorldVec2>,
) -> Step {
    if own.distance(target_pos) <= range - RANGE_MARGIN {
        return Step::Act;
    }
    match heading {
        Some(h) if h.distance(target_pos) < 1.0 => Step::Keep,
        _ => Step::WalkTo(target_pos),
    }
}

/// The current intent: a target being walked to and acted on.
#[derive(Resource, Default, Debug)]
pub struct Intent {
    /// What.
    pub target: Option<Target>,
    /// The last point sent with `move_to` for it.
    heading: Option<WorldVec2>,
    /// Not before then.
    next_try: Option<Instant>,
}

/// Keyboard movement state: the direction last sent.
#[derive(Resource, Default, Debug)]
struct Steering {
    sent_dir: WorldVec2,
}

/// The click marker.
#[derive(Component, Debug)]
struct ClickMarker {
    shown: Instant,
}

/// Registers the input systems.
pub struct InputPlugin;

impl Plugin for InputPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Intent>()
            .init_resource::<Steering>()
            .add_systems(
                Update,
                (keyboard, click, pursue, fade_marker)
                    .chain()
                    .before(DrawSystems),
            );
    }
}

/// WASD / arrows → `move_dir`; `E` → pick up the nearest item.
#[expect(clippy::too_many_arguments, reason = "a bevy system's parameters")]
fn keyboard(
    keys: Res<'_, ButtonInput<KeyCode>>,
    chat: Res<'_, ChatInput>,
    client: Option<Res<'_, Client>>,
    mut net: ResMut<'_, Net>,
    mut steering: ResMut<'_, Steering>,
    mut prediction: ResMut<'_, Prediction>,
    mut intent: ResMut<'_, Intent>,
    items: Query<'_, '_, &GroundItemRow>,
) {
    let Some(predictor) = prediction.0.as_mut() else {
        return;
    };
    let typing = chat.open;
    let held = |a: KeyCode, b: KeyCode| !typing && (keys.pressed(a) || keys.pressed(b));
    let dir = key_direction(
        held(KeyCode::KeyW, KeyCode::ArrowUp),
        held(KeyCode::KeyS, KeyCode::ArrowDown),
        held(KeyCode::KeyA, KeyCode::ArrowLeft),
        held(KeyCode::KeyD, KeyCode::ArrowRight),
    );
    if dir != steering.sent_dir {
        let call = game_module::move_dir::call(dir.x, dir.y);
        if net.call(client.as_deref(), &call, "move_dir").is_some() {
            steering.sent_dir = dir;
            predictor.walk_dir(dir);
            if dir != WorldVec2::ZERO {
                *intent = Intent::default();
            }
        }
    }
    if !typing && keys.just_pressed(KeyCode::KeyE) {
        let own = predictor.pos();
        let nearest = items
            .iter()
            .map(|GroundItemRow(i)| (i.id, i.pos.distance(own)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((id, _)) = nearest {
            *intent = Intent {
                target: Some(Target::Item(id)),
                ..default()
            };
        }
    }
}

/// A left click: act on what is under the cursor, or walk there.
#[expect(clippy::too_many_arguments, reason = "a bevy system's parameters")]
fn click(
    mut commands: Commands<'_, '_>,
    mouse: Res<'_, ButtonInput<MouseButton>>,
    window: Query<'_, '_, &Window, With<PrimaryWindow>>,
    camera: Query<'_, '_, (&Camera, &GlobalTransform), With<MainCamera>>,
    ui: Query<'_, '_, &Interaction>,
    client: Option<Res<'_, Client>>,
    mut net: ResMut<'_, Net>,
    mut prediction: ResMut<'_, Prediction>,
    mut intent: ResMut<'_, Intent>,
    mut steering: ResMut<'_, Steering>,
    things: (
        Query<'_, '_, &NodeRow>,
        Query<'_, '_, &CreatureRow>,
        Query<'_, '_, &GroundItemRow>,
    ),
    art: Res<'_, crate::sprites::Art>,
) {
    if !mouse.just_pressed(MouseButton::Left) {
        return;
    }
    // Clicks on the HUD, chat or inventory are theirs.
    if ui.iter().any(|i| *i != Interaction::None) {
        return;
    }
    let (Ok(window), Ok((camera, camera_transform))) = (window.single(), camera.single()) else {
        return;
    };
    let Some(cursor) = window.cursor_position() else {
        return;
    };
    let Ok(scene) = camera.viewport_to_world_2d(camera_transform, cursor) else {
        return;
    };
    let Some(predictor) = prediction.0.as_mut() else {
        return;
    };
    let at = to_world(scene);
    let (nodes, creatures, items) = things;
    let candidates = nodes
        .iter()
        .map(|NodeRow(n)| (Target::Node(n.id), n.pos, node_size(&n.kind) / 2.0 + 0.3))
        .chain(creatures.iter().map(|CreatureRow(c)| {
            (
                Target::Creature(c.id),
                c.pos,
                creature_size(&c.kind) / 2.0 + 0.5,
            )
        }))
        .chain(
            items
                .iter()
                .map(|GroundItemRow(i)| (Target::Item(i.id), i.pos, 1.0)),
        );
    if let Some(target) = pick(at, candidates) {
        *intent = Intent {
            target: Some(target),
            ..default()
        };
        return;
    }
    *intent = Intent::default();
    let call = game_module::move_to::call(at.x, at.y);
    if net.call(client.as_deref(), &call, "move_to").is_some() {
        predictor.walk_to(at);
        steering.sent_dir = WorldVec2::ZERO;
        commands.spawn((
            ClickMarker {
                shown: Instant::now(),
            },
            Sprite {
                image: art.marker.clone(),
                custom_size: Some(Vec2::splat(24.0)),
                color: Color::srgba(1.0, 1.0, 1.0, 0.9),
                ..default()
            },
            Transform::from_translation(to_scene(at, z::MARKER)),
        ));
    }
}

/// Walk to the intent's target and act on it when in reach.
fn pursue(
    client: Option<Res<'_, Client>>,
    mut net: ResMut<'_, Net>,
    mut prediction: ResMut<'_, Prediction>,
    mut intent: ResMut<'_, Intent>,
    nodes: Query<'_, '_, &NodeRow>,
    creatures: Query<'_, '_, &CreatureRow>,
    items: Query<'_, '_, &GroundItemRow>,
) {
    let Some(target) = intent.target else {
        return;
    };
    let Some(predictor) = prediction.0.as_mut() else {
        return;
    };
    // A refusal other than "busy" or "too far" ends the intent (depleted, missing tool, inventory full…).
    if let Some((what, message)) = net.last_error.take()
        && matches!(what.as_str(), "gather" | "attack" | "pick_up")
        && !message.contains("busy")
        && !message.contains("too far")
    {
        *intent = Intent::default();
        return;
    }
    let found = match target {
        Target::Node(id) => nodes
            .iter()
            .find(|n| n.0.id == id)
            .filter(|n| n.0.amount > 0)
            .map(|n| n.0.pos),
        Target::Creature(id) => creatures.iter().find(|c| c.0.id == id).map(|c| c.0.pos),
        Target::Item(id) => items.iter().find(|i| i.0.id == id).map(|i| i.0.pos),
    };
    let Some(pos) = found else {
        // Gone, dead or spent: done.
        *intent = Intent::default();
        return;
    };
    match next_step(predictor.pos(), pos, target.range(), intent.heading) {
        Step::Keep => {}
        Step::WalkTo(p) => {
            let call = game_module::move_to::call(p.x, p.y);
            if net.call(client.as_deref(), &call, "move_to").is_some() {
                predictor.walk_to(p);
                intent.heading = Some(p);
            }
        }
        Step::Act => {
            if predictor.is_moving() {
                let own = predictor.pos();
                let call = game_module::move_to::call(own.x, own.y);
                if net.call(client.as_deref(), &call, "move_to").is_some() {
                    predictor.walk_to(own);
                }
                intent.heading = None;
            }
            let now = Instant::now();
            if intent.next_try.is_some_and(|t| now < t) {
                return;
            }
            let (call, what) = match target {
                Target::Node(id) => (game_module::gather::call(id), "gather"),
                Target::Creature(id) => (game_module::attack::call(id), "attack"),
                Target::Item(id) => (game_module::pick_up::call(id), "pick_up"),
            };
            net.call(client.as_deref(), &call, what);
            intent.next_try = Some(now + target.interval());
        }
    }
}

/// The click marker fades out.
fn fade_marker(
    mut commands: Commands<'_, '_>,
    mut markers: Query<'_, '_, (Entity, &ClickMarker, &mut Sprite, &mut Transform)>,
) {
    for (entity, marker, mut sprite, mut transform) in &mut markers {
        let age = marker.shown.elapsed().as_secs_f32();
        if age > 0.6 {
            commands.entity(entity).despawn();
        } else {
            sprite.color = Color::srgba(1.0, 1.0, 1.0, 0.9 * (1.0 - age / 0.6));
            transform.scale = Vec3::splat(1.0 - 0.5 * age);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_give_unit_directions_north_up() {
        assert_eq!(key_direction(false, false, false, false), WorldVec2::ZERO);
        assert_eq!(key_direction(true, false, false, false), WorldVec2::Y);
        assert_eq!(key_direction(false, true, false, false), -WorldVec2::Y);
        assert_eq!(key_direction(true, true, false, false), WorldVec2::ZERO);
        let d = key_direction(true, false, false, true);
        assert!((d.length() - 1.0).abs() < 1e-6 && d.x > 0.0 && d.y > 0.0);
    }

    #[test]
    fn clicks_pick_the_nearest_thing_whose_radius_holds_them() {
        let things = [
            (Target::Node(1), WorldVec2::new(0.0, 0.0), 2.0),
            (Target::Creature(2), WorldVec2::new(1.5, 0.0), 1.0),
            (Target::Item(3), WorldVec2::new(10.0, 0.0), 1.0),
        ];
        assert_eq!(
            pick(WorldVec2::new(1.2, 0.0), things),
            Some(Target::Creature(2))
        );
        assert_eq!(
            pick(WorldVec2::new(-0.5, 0.0), things),
            Some(Target::Node(1))
        );
        assert_eq!(pick(WorldVec2::new(5.0, 0.0), things), None);
    }

    #[test]
    fn intents_walk_into_reach_then_act() {
        let node = WorldVec2::new(10.0, 0.0);
        assert_eq!(
            next_step(WorldVec2::ZERO, node, 3.0, None),
            Step::WalkTo(node)
        );
        assert_eq!(
            next_step(WorldVec2::ZERO, node, 3.0, Some(node)),
            Step::Keep
        );
        // The creature moved away from where we were heading: head for it again.
        let moved = WorldVec2::new(14.0, 0.0);
        assert_eq!(
            next_step(WorldVec2::ZERO, moved, 3.0, Some(node)),
            Step::WalkTo(moved)
        );
        assert_eq!(
            next_step(WorldVec2::new(8.5, 0.0), node, 3.0, Some(node)),
            Step::Act
        );
        // Within the server's range but not its margin: keep closing in.
        assert_eq!(
            next_step(WorldVec2::new(7.5, 0.0), node, 3.0, Some(node)),
            Step::Keep
        );
    }
}
