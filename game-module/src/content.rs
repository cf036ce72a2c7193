//! The world's content: the terrain palette and generator, items, recipes and spawn tables, read from the JSON files
//! in the workspace's `assets/` directory.
//!
//! The files are compiled into the module (`include_str!`), so a world runs exactly the content it was built with,
//! and a native client that depends on this crate reads the same definitions (names, colours, stack sizes) with
//! [`content`]. They are parsed once per module instance, on first use, and checked: every name one file uses must
//! be defined (an item in a recipe, a terrain in a spawn rule, …). The crate's tests load them, so a broken asset
//! fails `cargo test`, never a running world.
//!
//! | file | holds |
//! |---|---|
//! | `assets/world.json` | [`WorldConfig`]: seed, terrain palette, noise, biome rules, the spawn zone |
//! | `assets/items.json` | [`ItemDef`]s |
//! | `assets/recipes.json` | [`RecipeDef`]s |
//! | `assets/spawns.json` | [`Spawns`]: resource node kinds and creature kinds, with their populations |
//! | `assets/upgrade-demo/items.json`, `recipes.json` | only with the feature `upgrade-demo` (the second version of the module, `src/upgrade_demo.rs`): items and recipes added to the base ones, or replacing those of the same id ([`Content::extend`]) |
//!
//! A live world gets new or changed items and recipes through the module's upgrade reducer
//! ([`crate::world::upgrade()`]), which brings `item_kind` and `recipe` to the compiled-in content when a module of a
//! newer version ([`crate::MODULE_VERSION`]) takes the world over.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// `assets/world.json`, as compiled in.
pub const WORLD_JSON: &str = include_str!("../../assets/world.json");
/// `assets/items.json`, as compiled in.
pub const ITEMS_JSON: &str = include_str!("../../assets/items.json");
/// `assets/recipes.json`, as compiled in.
pub const RECIPES_JSON: &str = include_str!("../../assets/recipes.json");
/// `assets/spawns.json`, as compiled in.
pub const SPAWNS_JSON: &str = include_str!("../../assets/spawns.json");
/// `assets/upgrade-demo/items.json`: the upgrade demo's items (compiled in with the feature `upgrade-demo`).
pub const UPGRADE_DEMO_ITEMS_JSON: &str = include_str!("../../assets/upgrade-demo/items.json");
/// `assets/upgrade-demo/recipes.json`: the upgrade demo's recipes (compiled in with the feature `upgrade-demo`).
pub const UPGRADE_DEMO_RECIPES_JSON: &str = include_str!("../../assets/upgrade-demo/recipes.json");

/// A terrain kind's index in the palette ([`WorldConfig::terrain`]): the byte stored per tile in a chunk row.
pub type TerrainId = u8;

/// `assets/world.json`: how the terrain is generated and where players appear.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldConfig {
    /// The terrain seed: the same seed gives the same terrain, on the server and in every client.
    pub seed: u32,
    /// The terrain palette; a tile's byte is its index here.
    pub terrain: Vec<TerrainDef>,
    /// Elevation noise.
    pub elevation: NoiseDef,
    /// Moisture noise.
    pub moisture: NoiseDef,
    /// Elevation fades to zero (sea) over this many metres toward the world's edges.
    pub coast_m: f32,
    /// Which terrain a tile gets: the first rule whose conditions all hold.
    pub biomes: Vec<BiomeRule>,
    /// Where new and respawning players appear.
    pub spawn: SpawnZone,
}

/// One entry of the terrain palette.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerrainDef {
    /// Its name (`"water"`, `"grass"`, …), used by the biome rules and spawn tables.
    pub name: String,
    /// How clients draw it (`#rrggbb`).
    pub color: String,
    /// Whether players and creatures may stand on it.
    pub walkable: bool,
}

/// Fractal value noise: `octaves` layers, each of half the wavelength and half the weight of the one before.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseDef {
    /// The first layer's feature size, in metres.
    pub wavelength_m: f32,
    /// How many layers (1 to 6).
    pub octaves: u32,
}

/// A biome rule: `terrain` where every given bound holds (elevation and moisture are in `0..1`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BiomeRule {
    /// The terrain's name.
    pub terrain: String,
    /// Holds where elevation < this.
    #[serde(default)]
    pub elevation_below: Option<f32>,
    /// Holds where elevation > this.
    #[serde(default)]
    pub elevation_above: Option<f32>,
    /// Holds where moisture < this.
    #[serde(default)]
    pub moisture_below: Option<f32>,
    /// Holds where moisture > this.
    #[serde(default)]
    pub moisture_above: Option<f32>,
}

/// The spawn zone around the world's starting point.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpawnZone {
    /// Its centre, in metres.
    pub center: [f32; 2],
    /// Players appear within this many metres of the centre.
    pub radius: f32,
    /// Within this many metres of the centre the terrain is raised so there is no water.
    pub land_radius: f32,
    /// No hostile creature spawns within this many metres of the centre.
    pub safe_radius: f32,
}

/// `assets/items.json`: one kind of item.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemDef {
    /// Its id, as inventories and recipes name it (`"wood"`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The most one player may carry.
    pub max_stack: u32,
    /// Damage it adds to its carrier's attacks (the best weapon carried counts), if it is a weapon.
    #[serde(default)]
    pub damage: u32,
    /// Health restored by eating one, if it is food.
    #[serde(default)]
    pub heal: u32,
    /// A line for tooltips.
    pub description: String,
}

/// A number of one item: in recipes, yields and loot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemStack {
    /// The item's id.
    pub item: String,
    /// How many.
    pub count: u32,
}

/// `assets/recipes.json`: what crafting turns into what.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeDef {
    /// Its id, as `craft` names it.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Consumed, all of them.
    pub inputs: Vec<ItemStack>,
    /// Produced, all of them.
    pub outputs: Vec<ItemStack>,
}

/// `assets/spawns.json`: what populates the world.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spawns {
    /// Gatherable nodes.
    pub resources: Vec<ResourceKind>,
    /// Animals and monsters.
    pub creatures: Vec<CreatureKind>,
}

/// A kind of resource node (a tree, a rock, …).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceKind {
    /// Its name, stored in each node's row.
    pub kind: String,
    /// The terrain it grows on.
    pub terrain: Vec<String>,
    /// How many the world is generated with (fewer if the terrain is scarce).
    pub count: u32,
    /// What one `gather` gives.
    pub yields: ItemStack,
    /// How many gathers a full node allows before it is depleted.
    pub amount: u32,
    /// Seconds from depletion to regrowth.
    pub respawn_secs: u32,
    /// Experience per gather.
    pub xp: u32,
    /// An item the gatherer must carry, if any.
    #[serde(default)]
    pub tool: Option<String>,
}

/// How a creature reacts to players.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Temperament {
    /// Runs from players who come within its aggro radius, and from attackers.
    Passive,
    /// Minds its own business until attacked, then fights back.
    Defensive,
    /// Chases and attacks players who come within its aggro radius.
    Hostile,
}

/// A kind of creature.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatureKind {
    /// Its name, stored in each creature's row.
    pub kind: String,
    /// How it reacts to players.
    pub temperament: Temperament,
    /// The terrain it spawns on.
    pub terrain: Vec<String>,
    /// How many the world is generated with.
    pub count: u32,
    /// Full health.
    pub hp: u32,
    /// Metres per second.
    pub speed: f32,
    /// Damage per hit.
    pub damage: u32,
    /// How close it must be to hit, in metres.
    pub attack_range: f32,
    /// Milliseconds between its hits.
    pub attack_cooldown_ms: u32,
    /// Hostile: chases players this close; passive: flees from them.
    pub aggro_radius: f32,
    /// It gives up a chase this far from home, in metres.
    pub leash_radius: f32,
    /// It wanders this far from home, in metres.
    pub wander_radius: f32,
    /// Experience for the player who kills it.
    pub xp: u32,
    /// Seconds from death to a new one at the same home.
    pub respawn_secs: u32,
    /// Dropped where it dies.
    pub loot: Vec<ItemStack>,
}

/// All content, parsed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    /// `assets/world.json`.
    pub world: WorldConfig,
    /// `assets/items.json`.
    pub items: Vec<ItemDef>,
    /// `assets/recipes.json`.
    pub recipes: Vec<RecipeDef>,
    /// `assets/spawns.json`.
    pub spawns: Spawns,
    /// The biome rules with their terrain resolved to palette indices.
    biomes: Vec<(TerrainId, BiomeRule)>,
}

impl Content {
    /// Parse and check the four documents.
    ///
    /// # Errors
    ///
    /// A message naming the file and the problem: malformed JSON, or a name used but not defined.
    pub fn parse(world: &str, items: &str, recipes: &str, spawns: &str) -> Result<Content, String> {
        let world: WorldConfig =
            serde_json::from_str(world).map_err(|e| format!("assets/world.json: {e}"))?;
        let items: Vec<ItemDef> =
            serde_json::from_str(items).map_err(|e| format!("assets/items.json: {e}"))?;
        let recipes: Vec<RecipeDef> =
            serde_json::from_str(recipes).map_err(|e| format!("assets/recipes.json: {e}"))?;
        let spawns: Spawns =
            serde_json::from_str(spawns).map_err(|e| format!("assets/spawns.json: {e}"))?;
        let mut content = Content {
            world,
            items,
            recipes,
            spawns,
            biomes: Vec::new(),
        };
        content.check()?;
        content.biomes = content
            .world
            .biomes
            .iter()
            .map(|b| (content.terrain_id(&b.terrain).expect("checked"), b.clone()))
            .collect();
        Ok(content)
    }

    /// Add items and recipes (JSON documents shaped as `assets/items.json` and `assets/recipes.json`; `items_file`
    /// and `recipes_file` name them in errors): a definition with the id of one the content has replaces it, in
    /// place; the others are appended. The result is checked as [`Content::parse`] checks.
    ///
    /// # Errors
    ///
    /// A message naming the problem (and the file, for a document that does not parse); the content is then
    /// unchanged.
    pub fn extend(
        &mut self,
        items: &str,
        items_file: &str,
        recipes: &str,
        recipes_file: &str,
    ) -> Result<(), String> {
        let items: Vec<ItemDef> =
            serde_json::from_str(items).map_err(|e| format!("{items_file}: {e}"))?;
        let recipes: Vec<RecipeDef> =
            serde_json::from_str(recipes).map_err(|e| format!("{recipes_file}: {e}"))?;
        let mut next = self.clone();
        for item in items {
            match next.items.iter_mut().find(|i| i.id == item.id) {
                Some(old) => *old = item,
                None => next.items.push(item),
            }
        }
        for recipe in recipes {
            match next.recipes.iter_mut().find(|r| r.id == recipe.id) {
                Some(old) => *old = recipe,
                None => next.recipes.push(recipe),
            }
        }
        next.check()?;
        *self = next;
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        let world = &self.world;
        if world.terrain.is_empty() || world.terrain.len() > 255 {
            return Err("assets/world.json: the palette needs 1 to 255 terrain kinds".into());
        }
        for noise in [world.elevation, world.moisture] {
            if !(1..=6).contains(&noise.octaves)
                || noise.wavelength_m.is_nan()
                || noise.wavelength_m < 1.0
            {
                return Err("assets/world.json: noise needs 1 to 6 octaves and a wavelength of at least 1 m".into());
            }
        }
        match world.biomes.last() {
            Some(last)
                if last.elevation_below.is_none()
                    && last.elevation_above.is_none()
                    && last.moisture_below.is_none()
                    && last.moisture_above.is_none() => {}
            _ => {
                return Err(
                    "assets/world.json: the last biome rule must have no conditions (it is the fallback)".into(),
                );
            }
        }
        let terrain = |file: &str, name: &str| match self.terrain_id(name) {
            Some(_) => Ok(()),
            None => Err(format!("{file}: unknown terrain `{name}`")),
        };
        for b in &world.biomes {
            terrain("assets/world.json", &b.terrain)?;
        }
        for (i, item) in self.items.iter().enumerate() {
            if item.max_stack == 0 {
                return Err(format!("assets/items.json: `{}` has max_stack 0", item.id));
            }
            if self.items[..i].iter().any(|other| other.id == item.id) {
                return Err(format!("assets/items.json: `{}` is defined twice", item.id));
            }
        }
        let stack = |file: &str, s: &ItemStack| match self.item(&s.item) {
            Some(_) if s.count > 0 => Ok(()),
            Some(_) => Err(format!("{file}: a stack of `{}` has count 0", s.item)),
            None => Err(format!("{file}: unknown item `{}`", s.item)),
        };
        for (i, r) in self.recipes.iter().enumerate() {
            if r.inputs.is_empty() || r.outputs.is_empty() {
                return Err(format!(
                    "assets/recipes.json: `{}` needs inputs and outputs",
                    r.id
                ));
            }
            if self.recipes[..i].iter().any(|other| other.id == r.id) {
                return Err(format!("assets/recipes.json: `{}` is defined twice", r.id));
            }
            for s in r.inputs.iter().chain(&r.outputs) {
                stack("assets/recipes.json", s)?;
            }
        }
        for r in &self.spawns.resources {
            stack("assets/spawns.json", &r.yields)?;
            if let Some(tool) = &r.tool
                && self.item(tool).is_none()
            {
                return Err(format!("assets/spawns.json: unknown tool `{tool}`"));
            }
            if r.amount == 0 {
                return Err(format!("assets/spawns.json: `{}` has amount 0", r.kind));
            }
            for t in &r.terrain {
                terrain("assets/spawns.json", t)?;
            }
        }
        for c in &self.spawns.creatures {
            if c.hp == 0 || c.speed.is_nan() || c.speed <= 0.0 {
                return Err(format!(
                    "assets/spawns.json: `{}` needs hp and speed",
                    c.kind
                ));
            }
            for s in &c.loot {
                stack("assets/spawns.json", s)?;
            }
            for t in &c.terrain {
                terrain("assets/spawns.json", t)?;
                if !self.terrain(self.terrain_id(t).expect("checked")).walkable {
                    return Err(format!(
                        "assets/spawns.json: `{}` cannot spawn on `{t}`: it is not walkable",
                        c.kind
                    ));
                }
            }
        }
        Ok(())
    }

    /// The palette index of the terrain named `name`.
    #[must_use]
    pub fn terrain_id(&self, name: &str) -> Option<TerrainId> {
        self.world
            .terrain
            .iter()
            .position(|t| t.name == name)
            .and_then(|i| TerrainId::try_from(i).ok())
    }

    /// The palette entry of terrain `id` (the last one for an id past the end).
    #[must_use]
    pub fn terrain(&self, id: TerrainId) -> &TerrainDef {
        let palette = &self.world.terrain;
        &palette[usize::from(id).min(palette.len() - 1)]
    }

    /// The terrain for a tile with this elevation and moisture: the first biome rule that holds.
    #[must_use]
    pub fn biome(&self, elevation: f32, moisture: f32) -> TerrainId {
        for (id, rule) in &self.biomes {
            let holds = rule.elevation_below.is_none_or(|v| elevation < v)
                && rule.elevation_above.is_none_or(|v| elevation > v)
                && rule.moisture_below.is_none_or(|v| moisture < v)
                && rule.moisture_above.is_none_or(|v| moisture > v);
            if holds {
                return *id;
            }
        }
        self.biomes.last().map_or(0, |(id, _)| *id)
    }

    /// The item with this id.
    #[must_use]
    pub fn item(&self, id: &str) -> Option<&ItemDef> {
        self.items.iter().find(|i| i.id == id)
    }

    /// The recipe with this id.
    #[must_use]
    pub fn recipe(&self, id: &str) -> Option<&RecipeDef> {
        self.recipes.iter().find(|r| r.id == id)
    }

    /// The resource node kind with this name.
    #[must_use]
    pub fn resource(&self, kind: &str) -> Option<&ResourceKind> {
        self.spawns.resources.iter().find(|r| r.kind == kind)
    }

    /// The creature kind with this name.
    #[must_use]
    pub fn creature(&self, kind: &str) -> Option<&CreatureKind> {
        self.spawns.creatures.iter().find(|c| c.kind == kind)
    }
}

static CONTENT: LazyLock<Content> = LazyLock::new(|| {
    #[allow(unused_mut, reason = "extended only with the feature `upgrade-demo`")]
    let mut content = Content::parse(WORLD_JSON, ITEMS_JSON, RECIPES_JSON, SPAWNS_JSON)
        .unwrap_or_else(|e| panic!("game-module: invalid assets: {e}"));
    #[cfg(feature = "upgrade-demo")]
    content
        .extend(
            UPGRADE_DEMO_ITEMS_JSON,
            "assets/upgrade-demo/items.json",
            UPGRADE_DEMO_RECIPES_JSON,
            "assets/upgrade-demo/recipes.json",
        )
        .unwrap_or_else(|e| panic!("game-module: invalid assets: {e}"));
    content
});

/// The compiled-in content, parsed on first use.
///
/// # Panics
///
/// If the assets are invalid; the crate's tests check that they are not.
#[must_use]
pub fn content() -> &'static Content {
    &CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_parse_and_every_name_they_use_is_defined() {
        let c = Content::parse(WORLD_JSON, ITEMS_JSON, RECIPES_JSON, SPAWNS_JSON).unwrap();
        assert!(!c.terrain(c.terrain_id("water").unwrap()).walkable);
        assert!(c.recipe("stone_axe").is_some());
        assert!(c.creature("wolf").is_some());
    }

    #[test]
    fn broken_assets_are_refused_with_the_file_and_the_name() {
        let bad_recipes = r#"[{ "id": "x", "name": "X", "inputs": [{ "item": "gold", "count": 1 }],
                                "outputs": [{ "item": "wood", "count": 1 }] }]"#;
        let err = Content::parse(WORLD_JSON, ITEMS_JSON, bad_recipes, SPAWNS_JSON).unwrap_err();
        assert_eq!(err, "assets/recipes.json: unknown item `gold`");
        let err = Content::parse(WORLD_JSON, ITEMS_JSON, "[", SPAWNS_JSON).unwrap_err();
        assert!(err.starts_with("assets/recipes.json: "), "{err}");
        let bad_world = WORLD_JSON.replace("\"terrain\": \"forest\"", "\"terrain\": \"jungle\"");
        let err = Content::parse(&bad_world, ITEMS_JSON, RECIPES_JSON, SPAWNS_JSON).unwrap_err();
        assert_eq!(err, "assets/world.json: unknown terrain `jungle`");
        let swimming_wolves = SPAWNS_JSON.replace(
            r#""terrain": ["forest", "stone"]"#,
            r#""terrain": ["water"]"#,
        );
        let err =
            Content::parse(WORLD_JSON, ITEMS_JSON, RECIPES_JSON, &swimming_wolves).unwrap_err();
        assert_eq!(
            err,
            "assets/spawns.json: `wolf` cannot spawn on `water`: it is not walkable"
        );
    }

    #[test]
    fn the_upgrade_demos_content_replaces_by_id_and_adds_the_rest() {
        let base = Content::parse(WORLD_JSON, ITEMS_JSON, RECIPES_JSON, SPAWNS_JSON).unwrap();
        let mut v2 = base.clone();
        v2.extend(
            UPGRADE_DEMO_ITEMS_JSON,
            "assets/upgrade-demo/items.json",
            UPGRADE_DEMO_RECIPES_JSON,
            "assets/upgrade-demo/recipes.json",
        )
        .unwrap();
        assert_eq!(v2.items.len(), base.items.len() + 1);
        assert_eq!(v2.item("hide").unwrap().max_stack, 40);
        let at = |c: &Content| c.items.iter().position(|i| i.id == "hide");
        assert_eq!(at(&v2), at(&base), "replaced in place");
        assert_eq!(v2.items.last().unwrap().id, "guild_banner");
        assert!(v2.recipe("guild_banner").is_some());
        // A recipe of an unknown item is refused, naming the file, and changes nothing.
        let mut c = base.clone();
        let err = c
            .extend(
                "[]",
                "extra-items.json",
                r#"[{ "id": "x", "name": "X", "inputs": [{ "item": "gold", "count": 1 }],
                     "outputs": [{ "item": "wood", "count": 1 }] }]"#,
                "extra-recipes.json",
            )
            .unwrap_err();
        assert_eq!(err, "assets/recipes.json: unknown item `gold`");
        assert_eq!(c, base);
        let err = c.extend("{", "extra-items.json", "[]", "x").unwrap_err();
        assert!(err.starts_with("extra-items.json: "), "{err}");
    }

    #[test]
    fn the_first_biome_rule_that_holds_wins() {
        let c = content();
        let name = |e, m| c.terrain(c.biome(e, m)).name.as_str();
        assert_eq!(name(0.1, 0.9), "water");
        assert_eq!(name(0.36, 0.9), "sand");
        assert_eq!(name(0.9, 0.9), "stone");
        assert_eq!(name(0.5, 0.9), "forest");
        assert_eq!(name(0.5, 0.1), "grass");
    }
}
