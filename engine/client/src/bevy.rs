//! Mirror tables into bevy ECS entities (feature `bevy`; needs only `bevy_ecs` and `bevy_app`).
//!
//! - [`LocusPlugin`] registers the [`LocusEvent`] message and, each [`PreUpdate`], polls the [`Client`] resource
//!   (if there is one) and writes every [`Event`] it returns as a [`LocusEvent`] (in the [`LocusSystems::Poll`]
//!   set). Other systems may read them with a `MessageReader<LocusEvent>`, and use `ResMut<Client>` to call
//!   reducers.
//! - [`MirrorTableExt::mirror_table`] adds a system (in [`LocusSystems::Mirror`], after the poll) that reads those
//!   messages and keeps **one entity per row** of the table in view, with the row decoded as component `T` plus a
//!   [`LocusRow`] naming its table and key: an insert spawns the entity, an update replaces `T`, a delete
//!   despawns it. [`RowEntities`] finds the entity of a row.
//!
//! The mirror only reads messages, so it works without a network: write [`LocusEvent`]s made by a [`Cache`]
//! (e.g. from synthetic server messages) and run the app.
//!
//! Invariant: after each `PreUpdate`, the mirrored entities of a table are exactly the rows of that table in the
//! client's cache, with their latest values (rows that do not decode as `T` are logged and not mirrored).
//!
//! [`Cache`]: crate::Cache

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bevy_app::{App, Plugin, PreUpdate};
use bevy_ecs::prelude::{
    Commands, Component, Entity, IntoScheduleConfigs, Message, MessageReader, MessageWriter,
    ResMut, Resource, SystemSet,
};
use locus_types::TableId;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::{Client, Event};

/// One [`Event`] of the client, as a bevy message.
#[derive(Message, Clone, Debug, PartialEq)]
pub struct LocusEvent(pub Event);

/// The system sets of the plugin, both in [`PreUpdate`]: `Poll` runs before `Mirror`.
#[derive(SystemSet, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocusSystems {
    /// Polls the [`Client`] and writes [`LocusEvent`]s.
    Poll,
    /// Applies [`LocusEvent`]s to mirrored entities.
    Mirror,
}

/// Marks an entity that mirrors a row: which table, and the row's key (its primary-key column's bytes).
#[derive(Component, Clone, Debug, PartialEq, Eq, Hash)]
pub struct LocusRow {
    /// The row's table.
    pub table: TableId,
    /// The row's key.
    pub key: Vec<u8>,
}

/// The entity mirroring each row, by table and key.
#[derive(Resource, Debug, Default)]
pub struct RowEntities {
    tables: HashMap<TableId, HashMap<Vec<u8>, Entity>>,
}

impl RowEntities {
    /// The entity mirroring the row of `table` with key `key`.
    #[must_use]
    pub fn get(&self, table: TableId, key: &[u8]) -> Option<Entity> {
        self.tables.get(&table)?.get(key).copied()
    }

    /// How many rows are mirrored, over all tables.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tables.values().map(HashMap::len).sum()
    }

    /// Whether no row is mirrored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Polls a [`Client`] each frame and publishes its events as [`LocusEvent`]s. See the [module docs](self).
#[derive(Default)]
pub struct LocusPlugin {
    client: Mutex<Option<Client>>,
}

impl LocusPlugin {
    /// A plugin that inserts `client` as a resource.
    #[must_use]
    pub fn new(client: Client) -> LocusPlugin {
        LocusPlugin {
            client: Mutex::new(Some(client)),
        }
    }
}

impl Plugin for LocusPlugin {
    fn build(&self, app: &mut App) {
        add_common(app);
        if let Some(client) = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            app.insert_resource(client);
        }
        app.add_systems(PreUpdate, poll_client.in_set(LocusSystems::Poll));
    }
}

fn add_common(app: &mut App) {
    app.add_message::<LocusEvent>()
        .init_resource::<RowEntities>()
        .configure_sets(PreUpdate, LocusSystems::Mirror.after(LocusSystems::Poll));
}

/// Poll the [`Client`] resource, if any, and write its events.
pub fn poll_client(client: Option<ResMut<'_, Client>>, mut out: MessageWriter<'_, LocusEvent>) {
    if let Some(mut client) = client {
        out.write_batch(client.poll().into_iter().map(LocusEvent));
    }
}

/// Adds table mirroring to an [`App`].
pub trait MirrorTableExt {
    /// Keep one entity per row of `table` in view, with the row as component `T` (the table's row struct) and
    /// a [`LocusRow`]. See the [module docs](self).
    fn mirror_table<T: Component + DeserializeOwned>(&mut self, table: &str) -> &mut Self;
}

impl MirrorTableExt for App {
    fn mirror_table<T: Component + DeserializeOwned>(&mut self, table: &str) -> &mut Self {
        add_common(self);
        let table: Arc<str> = table.into();
        let system = move |reader: MessageReader<'_, '_, LocusEvent>,
                           rows: ResMut<'_, RowEntities>,
                           commands: Commands<'_, '_>| {
            mirror::<T>(&table, reader, rows, commands);
        };
        self.add_systems(PreUpdate, system.in_set(LocusSystems::Mirror))
    }
}

fn decode<T: DeserializeOwned>(table: &str, row: &[u8]) -> Option<T> {
    rmp_serde::from_slice(row)
        .inspect_err(|e| warn!("a row of `{table}` is not mirrored: it does not decode: {e}"))
        .ok()
}

fn mirror<T: Component + DeserializeOwned>(
    wanted: &str,
    mut reader: MessageReader<'_, '_, LocusEvent>,
    mut rows: ResMut<'_, RowEntities>,
    mut commands: Commands<'_, '_>,
) {
    for LocusEvent(event) in reader.read() {
        match event {
            Event::Inserted {
                table,
                name,
                key,
                row: value,
            }
            | Event::Updated {
                table,
                name,
                key,
                new: value,
                ..
            } if **name == *wanted => {
                let entities = rows.tables.entry(*table).or_default();
                let Some(value) = decode::<T>(name, value) else {
                    // Do not leave a stale value behind.
                    if let Some(entity) = entities.remove(&**key) {
                        commands.entity(entity).try_despawn();
                    }
                    continue;
                };
                match entities.get(&**key) {
                    Some(&entity) => {
                        commands.entity(entity).try_insert(value);
                    }
                    None => {
                        let entity = commands
                            .spawn((
                                value,
                                LocusRow {
                                    table: *table,
                                    key: key.to_vec(),
                                },
                            ))
                            .id();
                        entities.insert(key.to_vec(), entity);
                    }
                }
            }
            Event::Deleted {
                table, name, key, ..
            } if **name == *wanted => {
                if let Some(entity) = rows
                    .tables
                    .get_mut(table)
                    .and_then(|entities| entities.remove(&**key))
                {
                    commands.entity(entity).try_despawn();
                }
            }
            _ => {}
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::Cache;
    use crate::cache::tests::{PLAYER, key, player, tick, welcome};

    #[derive(Component, Deserialize, Debug, Clone, PartialEq)]
    struct Player {
        id: u64,
        name: String,
        hp: i32,
    }

    /// Apply `message` to the cache, publish its events as the plugin would, run one frame.
    fn step(app: &mut App, cache: &mut Cache, message: &locus_protocol::ServerMessage) {
        for event in cache.apply(message) {
            app.world_mut().write_message(LocusEvent(event));
        }
        app.update();
    }

    fn mirrored(app: &mut App) -> Vec<(u64, String, i32, Vec<u8>)> {
        let world = app.world_mut();
        let mut out: Vec<_> = world
            .query::<(&Player, &LocusRow)>()
            .iter(world)
            .map(|(p, row)| {
                assert_eq!(row.table, PLAYER);
                (p.id, p.name.clone(), p.hp, row.key.clone())
            })
            .collect();
        out.sort_by_key(|r| r.0);
        out
    }

    #[test]
    fn rows_become_entities_that_follow_updates_and_despawn_on_delete() {
        let mut app = App::new();
        app.add_plugins(LocusPlugin::default())
            .mirror_table::<Player>("player");
        let mut cache = Cache::new();
        step(&mut app, &mut cache, &welcome());
        assert!(mirrored(&mut app).is_empty());

        step(
            &mut app,
            &mut cache,
            &tick(
                101,
                vec![player(1, "ann", 10), player(2, "bob", 20)],
                vec![],
                vec![],
            ),
        );
        assert_eq!(
            mirrored(&mut app),
            [
                (1, "ann".into(), 10, key(1).0),
                (2, "bob".into(), 20, key(2).0)
            ]
        );
        let ann = app
            .world()
            .resource::<RowEntities>()
            .get(PLAYER, &key(1).0)
            .unwrap();

        step(
            &mut app,
            &mut cache,
            &tick(
                102,
                vec![player(3, "cat", 30)],
                vec![player(1, "ann", 5)],
                vec![key(2)],
            ),
        );
        assert_eq!(
            mirrored(&mut app),
            [
                (1, "ann".into(), 5, key(1).0),
                (3, "cat".into(), 30, key(3).0)
            ]
        );
        // An update replaces the component on the same entity.
        assert_eq!(
            app.world().entity(ann).get::<Player>().unwrap().hp,
            5,
            "same entity"
        );
        assert_eq!(app.world().resource::<RowEntities>().len(), 2);
        let entities = app.world_mut().query::<Entity>().iter(app.world()).count();

        // A frame without messages changes nothing; a new Welcome (reconnect) empties the mirror.
        app.update();
        assert_eq!(mirrored(&mut app).len(), 2);
        step(&mut app, &mut cache, &welcome());
        assert!(mirrored(&mut app).is_empty());
        assert!(app.world().resource::<RowEntities>().is_empty());
        assert_eq!(
            app.world_mut().query::<Entity>().iter(app.world()).count(),
            entities - 2
        );
    }

    #[test]
    fn only_the_mirrored_table_is_mirrored_and_other_tables_are_left_alone() {
        #[derive(Component, Deserialize)]
        struct Other;
        let mut app = App::new();
        app.add_plugins(LocusPlugin::default())
            .mirror_table::<Other>("other");
        let mut cache = Cache::new();
        step(&mut app, &mut cache, &welcome());
        step(
            &mut app,
            &mut cache,
            &tick(101, vec![player(1, "ann", 10)], vec![], vec![]),
        );
        assert_eq!(
            app.world_mut()
                .query::<&LocusRow>()
                .iter(app.world())
                .count(),
            0
        );
    }
}
