//! Drawing the rows: players, creatures, resource nodes and dropped items as sprites with name tags and health
//! bars; the own avatar predicted, everything else interpolated between ticks; the camera on the avatar.
//!
//! Rows arrive as entities made by `mirror_table` (one per row, with the row as a component: [`PlayerRow`] etc.);
//! this module adds what makes them visible when they appear, and keeps that in step when they change.
//!
//! Scene coordinates are world metres times [`PX_PER_M`] (the 2D camera draws one scene unit per pixel), so
//! sprites and text have their natural pixel sizes.

use std::collections::HashMap;

use bevy::asset::RenderAssetUsages;
use bevy::image::ImageSampler;
use bevy::prelude::*;
use game_module::content::content;
use game_module::players::max_hp;
use image::{DynamicImage, RgbaImage};
use locus_client::Client;
use serde::Deserialize;

use crate::interp::Track;
use crate::net::Net;
use crate::predict::{Predictor, ServerState};

/// Pixels per world metre.
pub const PX_PER_M: f32 = 16.0;

/// Draw order (scene z) of each kind of thing.
pub mod z {
    /// Terrain chunks.
    pub const TERRAIN: f32 = 0.0;
    /// The click marker.
    pub const MARKER: f32 = 1.0;
    /// Dropped items.
    pub const ITEM: f32 = 2.0;
    /// Resource nodes.
    pub const NODE: f32 = 3.0;
    /// Creatures.
    pub const CREATURE: f32 = 4.0;
    /// Other players.
    pub const PLAYER: f32 = 5.0;
    /// The own avatar.
    pub const SELF: f32 = 6.0;
    /// Name tags and health bars (relative to their owner).
    pub const OVERLAY: f32 = 20.0;
}

/// A world position (metres) as a scene translation at depth `z`.
#[must_use]
pub fn to_scene(p: Vec2, z: f32) -> Vec3 {
    (p * PX_PER_M).extend(z)
}

/// A scene position back to world metres.
#[must_use]
pub fn to_world(p: Vec2) -> Vec2 {
    p / PX_PER_M
}

macro_rules! row_component {
    ($(#[$doc:meta])* $name:ident($row:ty)) => {
        $(#[$doc])*
        #[derive(Component, Deserialize, Clone, Debug, PartialEq)]
        #[serde(transparent)]
        pub struct $name(pub $row);
    };
}

row_component!(
    /// A `player` row (mirrored).
    PlayerRow(game_module::Player)
);
row_component!(
    /// A `creature` row (mirrored).
    CreatureRow(game_module::Creature)
);
row_component!(
    /// A `resource_node` row (mirrored).
    NodeRow(game_module::ResourceNode)
);
row_component!(
    /// A `ground_item` row (mirrored).
    GroundItemRow(game_module::GroundItem)
);
row_component!(
    /// A `chunk` row (mirrored).
    ChunkRow(game_module::Chunk)
);

/// A remote entity's positions over time (drawn interpolated).
#[derive(Component, Debug, Default)]
pub struct Motion(pub Track);

/// The own avatar's entity.
#[derive(Component, Debug)]
pub struct OwnAvatar;

/// A name tag (child of the thing it names).
#[derive(Component, Debug)]
pub struct NameTag;

/// The filled part of a health bar (child of the thing it measures).
#[derive(Component, Debug)]
pub struct HealthFill;

/// The camera.
#[derive(Component, Debug)]
pub struct MainCamera;

/// The own avatar's prediction (`None` until its row arrived).
#[derive(Resource, Default, Debug)]
pub struct Prediction(pub Option<Predictor>);

/// The images, compiled in from `assets/art/`.
#[derive(Resource, Debug)]
pub struct Art {
    /// The terrain tileset (one tile per palette entry), as pixels: chunks are composed from it.
    pub tileset: RgbaImage,
    /// The own avatar.
    pub player_self: Handle<Image>,
    /// Other players.
    pub player_other: Handle<Image>,
    /// The click marker.
    pub marker: Handle<Image>,
    /// By creature kind (`beast` for unknown kinds).
    pub creatures: HashMap<&'static str, Handle<Image>>,
    /// By resource node kind (`rock` for unknown kinds).
    pub nodes: HashMap<&'static str, Handle<Image>>,
    /// By item id (`sack` for unknown items).
    pub items: HashMap<&'static str, Handle<Image>>,
}

impl Art {
    /// The sprite of creature `kind`.
    #[must_use]
    pub fn creature(&self, kind: &str) -> Handle<Image> {
        self.creatures
            .get(kind)
            .or_else(|| self.creatures.get("beast"))
            .cloned()
            .unwrap_or_default()
    }

    /// The sprite of resource node `kind`.
    #[must_use]
    pub fn node(&self, kind: &str) -> Handle<Image> {
        self.nodes
            .get(kind)
            .or_else(|| self.nodes.get("rock"))
            .cloned()
            .unwrap_or_default()
    }

    /// The icon of item `id`.
    #[must_use]
    pub fn item(&self, id: &str) -> Handle<Image> {
        self.items
            .get(id)
            .or_else(|| self.items.get("sack"))
            .cloned()
            .unwrap_or_default()
    }
}

/// The PNGs of `assets/art/`, compiled in (regenerate them with `cargo run -p client-demo --bin make-art`).
macro_rules! art_files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("../../assets/art/", $name)))),*]
    };
}

/// Every art file by name, as PNG bytes.
pub const ART_FILES: &[(&str, &[u8])] = art_files![
    "tiles.png",
    "player_self.png",
    "player_other.png",
    "marker.png",
    "creature_rabbit.png",
    "creature_deer.png",
    "creature_boar.png",
    "creature_wolf.png",
    "creature_troll.png",
    "creature_beast.png",
    "node_tree.png",
    "node_rock.png",
    "node_iron_vein.png",
    "node_berry_bush.png",
    "item_wood.png",
    "item_stone.png",
    "item_iron_ore.png",
    "item_iron_bar.png",
    "item_berries.png",
    "item_raw_meat.png",
    "item_cooked_meat.png",
    "item_hide.png",
    "item_stone_axe.png",
    "item_pickaxe.png",
    "item_iron_sword.png",
    "item_sack.png",
];

/// Decode a compiled-in PNG.
///
/// # Panics
///
/// If the bytes are not a PNG (the art is generated and checked in; a broken file is a build mistake).
#[must_use]
pub fn decode_png(name: &str, bytes: &[u8]) -> RgbaImage {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .unwrap_or_else(|e| panic!("assets/art/{name} is not a PNG: {e}"))
        .to_rgba8()
}

/// A bevy image of `pixels`, sampled nearest (crisp pixel art).
#[must_use]
pub fn to_bevy_image(pixels: RgbaImage) -> Image {
    let mut image = Image::from_dynamic(
        DynamicImage::ImageRgba8(pixels),
        true,
        RenderAssetUsages::RENDER_WORLD,
    );
    image.sampler = ImageSampler::nearest();
    image
}

/// Load [`ART_FILES`] into images.
fn load_art(mut commands: Commands<'_, '_>, mut images: ResMut<'_, Assets<Image>>) {
    let mut tileset = None;
    let mut handles: HashMap<&'static str, Handle<Image>> = HashMap::new();
    for &(name, bytes) in ART_FILES {
        let pixels = decode_png(name, bytes);
        if name == "tiles.png" {
            tileset = Some(pixels);
        } else {
            handles.insert(name, images.add(to_bevy_image(pixels)));
        }
    }
    let take = |prefix: &str| -> HashMap<&'static str, Handle<Image>> {
        handles
            .iter()
            .filter_map(|(name, h)| {
                let kind = name.strip_prefix(prefix)?.strip_suffix(".png")?;
                Some((kind, h.clone()))
            })
            .collect()
    };
    let art = Art {
        tileset: tileset.unwrap_or_else(|| RgbaImage::new(16, 16)),
        player_self: handles["player_self.png"].clone(),
        player_other: handles["player_other.png"].clone(),
        marker: handles["marker.png"].clone(),
        creatures: take("creature_"),
        nodes: take("node_"),
        items: take("item_"),
    };
    commands.insert_resource(art);
}

/// Registers the sprite systems.
pub struct SpritesPlugin;

impl Plugin for SpritesPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Prediction>()
            .add_systems(PreStartup, load_art)
            .add_systems(Startup, spawn_camera)
            .add_systems(
                Update,
                (
                    (
                        dress_players,
                        dress_creatures,
                        dress_nodes,
                        dress_ground_items,
                    ),
                    (track_remote_players, track_creatures, follow_own_row),
                    update_players,
                    update_creatures,
                    update_nodes,
                    (predict_own, interpolate_remote),
                    follow_camera,
                )
                    .chain()
                    .in_set(DrawSystems),
            );
    }
}

/// The set of systems that place sprites (input runs before, the HUD after).
#[derive(SystemSet, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DrawSystems;

fn spawn_camera(mut commands: Commands<'_, '_>) {
    commands.spawn((Camera2d, MainCamera));
}

/// Name tag text size, in pixels.
const TAG_PX: f32 = 13.0;

/// Health bar size, in pixels.
const BAR: Vec2 = Vec2::new(28.0, 4.0);

/// A name tag `offset` pixels above its owner.
fn name_tag(text: String, color: Color, offset: f32) -> impl Bundle {
    (
        NameTag,
        Text2d::new(text),
        TextFont::from_font_size(TAG_PX),
        TextColor(color),
        Transform::from_xyz(0.0, offset, z::OVERLAY),
    )
}

/// A health bar `offset` pixels above its owner, filled `fraction`.
fn health_bar(parent: &mut ChildSpawnerCommands<'_>, offset: f32, fraction: f32) {
    parent.spawn((
        Sprite::from_color(Color::srgba(0.1, 0.05, 0.05, 0.85), BAR + 2.0),
        Transform::from_xyz(0.0, offset, z::OVERLAY),
    ));
    parent.spawn((
        HealthFill,
        Sprite::from_color(health_color(fraction), Vec2::new(BAR.x * fraction, BAR.y)),
        Transform::from_xyz(-BAR.x * (1.0 - fraction) / 2.0, offset, z::OVERLAY + 0.1),
    ));
}

/// Green when healthy, through yellow, to red.
fn health_color(fraction: f32) -> Color {
    let f = fraction.clamp(0.0, 1.0);
    Color::srgb((2.0 * (1.0 - f)).min(1.0), (2.0 * f).min(1.0), 0.15)
}

fn set_health(
    children: &Children,
    fills: &mut Query<'_, '_, (&mut Sprite, &mut Transform), With<HealthFill>>,
    fraction: f32,
) {
    let f = fraction.clamp(0.0, 1.0);
    for child in children.iter() {
        if let Ok((mut sprite, mut transform)) = fills.get_mut(child) {
            sprite.custom_size = Some(Vec2::new(BAR.x * f, BAR.y));
            sprite.color = health_color(f);
            transform.translation.x = -BAR.x * (1.0 - f) / 2.0;
        }
    }
}

/// The text of a player's tag.
#[must_use]
pub fn player_tag(p: &game_module::Player) -> String {
    if p.online {
        format!("{} L{}", p.name, p.level)
    } else {
        format!("{} (away)", p.name)
    }
}

/// How a player is tinted: grey while dead, see-through while away.
fn player_tint(p: &game_module::Player) -> Color {
    if !p.is_alive() {
        Color::srgba(0.45, 0.45, 0.45, 0.7)
    } else if !p.online {
        Color::srgba(1.0, 1.0, 1.0, 0.5)
    } else {
        Color::WHITE
    }
}

fn hp_fraction(p: &game_module::Player) -> f32 {
    p.hp as f32 / max_hp(p.level).max(1) as f32
}

/// Make new player rows visible.
fn dress_players(
    mut commands: Commands<'_, '_>,
    new: Query<'_, '_, (Entity, &PlayerRow), Added<PlayerRow>>,
    art: Res<'_, Art>,
    net: Res<'_, Net>,
    mut prediction: ResMut<'_, Prediction>,
) {
    for (entity, PlayerRow(p)) in &new {
        let own = Some(p.identity) == net.identity;
        let (image, depth) = if own {
            (art.player_self.clone(), z::SELF)
        } else {
            (art.player_other.clone(), z::PLAYER)
        };
        let mut e = commands.entity(entity);
        e.insert((
            Sprite {
                image,
                custom_size: Some(Vec2::splat(2.0 * PX_PER_M)),
                color: player_tint(p),
                ..default()
            },
            Transform::from_translation(to_scene(p.pos, depth)),
            Visibility::default(),
        ));
        if own {
            e.insert(OwnAvatar);
            prediction.0 = Some(Predictor::new(p.pos));
        } else {
            e.insert(Motion(Track::new(net.tick_time, p.pos)));
        }
        let color = if own {
            Color::srgb(1.0, 0.85, 0.4)
        } else {
            Color::WHITE
        };
        e.with_children(|parent| {
            parent.spawn(name_tag(player_tag(p), color, 30.0));
            health_bar(parent, 20.0, hp_fraction(p));
        });
    }
}

/// The size in metres creatures of `kind` are drawn at.
#[must_use]
pub fn creature_size(kind: &str) -> f32 {
    match kind {
        "rabbit" => 1.2,
        "deer" => 2.2,
        "troll" => 3.4,
        _ => 2.0,
    }
}

/// Make new creature rows visible.
fn dress_creatures(
    mut commands: Commands<'_, '_>,
    new: Query<'_, '_, (Entity, &CreatureRow), Added<CreatureRow>>,
    art: Res<'_, Art>,
    net: Res<'_, Net>,
) {
    for (entity, CreatureRow(c)) in &new {
        let size = creature_size(&c.kind) * PX_PER_M;
        let hostile = content()
            .creature(&c.kind)
            .is_some_and(|k| k.temperament == game_module::content::Temperament::Hostile);
        let color = if hostile {
            Color::srgb(1.0, 0.55, 0.5)
        } else {
            Color::srgb(0.9, 0.9, 0.85)
        };
        let max = content().creature(&c.kind).map_or(1, |k| k.hp.max(1));
        commands
            .entity(entity)
            .insert((
                Sprite {
                    image: art.creature(&c.kind),
                    custom_size: Some(Vec2::splat(size)),
                    ..default()
                },
                Transform::from_translation(to_scene(c.pos, z::CREATURE)),
                Visibility::default(),
                Motion(Track::new(net.tick_time, c.pos)),
            ))
            .with_children(|parent| {
                parent.spawn(name_tag(c.kind.clone(), color, size / 2.0 + 14.0));
                health_bar(parent, size / 2.0 + 4.0, c.hp as f32 / max as f32);
            });
    }
}

/// The size in metres resource nodes of `kind` are drawn at.
#[must_use]
pub fn node_size(kind: &str) -> f32 {
    match kind {
        "tree" => 4.0,
        "berry_bush" => 2.2,
        "iron_vein" => 2.6,
        _ => 2.5,
    }
}

fn node_tint(amount: u32) -> Color {
    if amount == 0 {
        Color::srgba(0.55, 0.55, 0.55, 0.6)
    } else {
        Color::WHITE
    }
}

/// Make new resource nodes visible.
fn dress_nodes(
    mut commands: Commands<'_, '_>,
    new: Query<'_, '_, (Entity, &NodeRow), Added<NodeRow>>,
    art: Res<'_, Art>,
) {
    for (entity, NodeRow(n)) in &new {
        commands.entity(entity).insert((
            Sprite {
                image: art.node(&n.kind),
                custom_size: Some(Vec2::splat(node_size(&n.kind) * PX_PER_M)),
                color: node_tint(n.amount),
                ..default()
            },
            Transform::from_translation(to_scene(n.pos, z::NODE)),
            Visibility::default(),
        ));
    }
}

/// Make new ground items visible.
fn dress_ground_items(
    mut commands: Commands<'_, '_>,
    new: Query<'_, '_, (Entity, &GroundItemRow), Added<GroundItemRow>>,
    art: Res<'_, Art>,
) {
    for (entity, GroundItemRow(item)) in &new {
        let label = if item.count > 1 {
            format!("{} x{}", item_name(&item.item), item.count)
        } else {
            item_name(&item.item).to_owned()
        };
        commands
            .entity(entity)
            .insert((
                Sprite {
                    image: art.item(&item.item),
                    custom_size: Some(Vec2::splat(1.2 * PX_PER_M)),
                    ..default()
                },
                Transform::from_translation(to_scene(item.pos, z::ITEM)),
                Visibility::default(),
            ))
            .with_children(|parent| {
                parent.spawn(name_tag(label, Color::srgb(0.95, 0.9, 0.6), 16.0));
            });
    }
}

/// An item's display name.
#[must_use]
pub fn item_name(id: &str) -> &str {
    content().item(id).map_or(id, |def| def.name.as_str())
}

/// Other players whose row changed this frame.
type MovedPlayers<'w, 's> = Query<
    'w,
    's,
    (&'static PlayerRow, &'static mut Motion),
    (Changed<PlayerRow>, Without<OwnAvatar>),
>;

/// New positions of other players go into their tracks.
fn track_remote_players(mut moved: MovedPlayers<'_, '_>, net: Res<'_, Net>) {
    for (PlayerRow(p), mut track) in &mut moved {
        track.0.push(net.tick_time, p.pos);
    }
}

/// New positions of creatures go into their tracks.
fn track_creatures(
    mut moved: Query<'_, '_, (&CreatureRow, &mut Motion), Changed<CreatureRow>>,
    net: Res<'_, Net>,
) {
    for (CreatureRow(c), mut track) in &mut moved {
        track.0.push(net.tick_time, c.pos);
    }
}

/// The server's word on the own avatar reconciles the prediction.
fn follow_own_row(
    own: Query<'_, '_, &PlayerRow, (With<OwnAvatar>, Changed<PlayerRow>)>,
    net: Res<'_, Net>,
    mut prediction: ResMut<'_, Prediction>,
) {
    let (Ok(PlayerRow(p)), Some(predictor)) = (own.single(), prediction.0.as_mut()) else {
        return;
    };
    let server = ServerState {
        pos: p.pos,
        moving: p.moving,
        alive: p.is_alive(),
    };
    predictor.reconcile(server, net.now_us(), net.rtt_us());
}

/// Players whose row changed this frame, with their sprite (not their health bars').
type ChangedPlayers<'w, 's> = Query<
    'w,
    's,
    (&'static PlayerRow, &'static Children, &'static mut Sprite),
    (Changed<PlayerRow>, Without<HealthFill>),
>;

/// Name tags, tints and health bars follow player rows.
fn update_players(
    mut changed: ChangedPlayers<'_, '_>,
    mut tags: Query<'_, '_, &mut Text2d, With<NameTag>>,
    mut fills: Query<'_, '_, (&mut Sprite, &mut Transform), With<HealthFill>>,
) {
    for (PlayerRow(p), children, mut sprite) in &mut changed {
        let tint = player_tint(p);
        if sprite.color != tint {
            sprite.color = tint;
        }
        for child in children.iter() {
            if let Ok(mut tag) = tags.get_mut(child) {
                let text = player_tag(p);
                if tag.0 != text {
                    tag.0 = text;
                }
            }
        }
        set_health(children, &mut fills, hp_fraction(p));
    }
}

/// Health bars follow creature rows.
fn update_creatures(
    changed: Query<'_, '_, (&CreatureRow, &Children), Changed<CreatureRow>>,
    mut fills: Query<'_, '_, (&mut Sprite, &mut Transform), With<HealthFill>>,
) {
    for (CreatureRow(c), children) in &changed {
        let max = content().creature(&c.kind).map_or(1, |k| k.hp.max(1));
        set_health(children, &mut fills, c.hp as f32 / max as f32);
    }
}

/// Depleted nodes are drawn faded.
fn update_nodes(mut changed: Query<'_, '_, (&NodeRow, &mut Sprite), Changed<NodeRow>>) {
    for (NodeRow(n), mut sprite) in &mut changed {
        sprite.color = node_tint(n.amount);
    }
}

/// Walk the predicted avatar and draw it there.
fn predict_own(
    time: Res<'_, Time>,
    net: Res<'_, Net>,
    mut prediction: ResMut<'_, Prediction>,
    mut own: Query<'_, '_, &mut Transform, With<OwnAvatar>>,
) {
    let Some(predictor) = prediction.0.as_mut() else {
        return;
    };
    predictor.step(net.now_us(), time.delta_secs());
    if let Ok(mut transform) = own.single_mut() {
        transform.translation = to_scene(predictor.pos(), z::SELF);
    }
}

/// Draw remote entities where they were at the render time.
fn interpolate_remote(
    net: Res<'_, Net>,
    mut tracked: Query<'_, '_, (&mut Motion, &mut Transform)>,
) {
    if !net.clock.is_synced() {
        return;
    }
    let t = net.clock.render_time(net.now_us());
    for (mut track, mut transform) in &mut tracked {
        if let Some(p) = track.0.position_at(t) {
            let z = transform.translation.z;
            transform.translation = to_scene(p, z);
        }
        track.0.forget_before(t);
    }
}

/// The camera looks at the own avatar.
fn follow_camera(
    prediction: Res<'_, Prediction>,
    mut camera: Query<'_, '_, &mut Transform, With<MainCamera>>,
) {
    if let (Some(predictor), Ok(mut transform)) = (&prediction.0, camera.single_mut()) {
        let p = to_scene(predictor.pos(), transform.translation.z);
        transform.translation = p;
    }
}

/// Whether a client is connected (for run conditions).
#[must_use]
pub fn connected(client: Option<Res<'_, Client>>) -> bool {
    client.is_some()
}
