//! The Locus test module: uses every table and reducer feature of `locus-module`, with deterministic, observable
//! effects, so the host's integration tests can load it and assert on exact table contents.
//!
//! Build: `cargo build -p locus-test-module --release --target wasm32-unknown-unknown` →
//! `locus_test_module.wasm`.
//!
//! # Tables
//!
//! | table | access | columns (in order) |
//! |---|---|---|
//! | `player` | public | `id: u64` primary key, auto_inc, btree · `name: String` unique · `pos: Vec2` spatial · `owner: Identity` owner · `level: u32` btree · `hp: Option<i32>` · `bag: Bytes` · `gear: Opaque` ([`Gear`]) · `joined: Timestamp` |
//! | `mover` | private | `id: u64` primary key, auto_inc · `pos: Vec2` spatial · `steps: u32` |
//! | `counter` | private | `name: String` primary key · `value: i64` |
//! | `event_log` | private | `id: u64` primary key, auto_inc · `text: String` |
//!
//! Most reducers append rows to `event_log`; assert on the `text`s in `id` order (the ids themselves depend on
//! whether the host's sequences roll back). "bump `c`" means: counter `c` is created with value 1, or its value
//! goes up by 1. `{sender}` is the caller's identity as 64 lowercase hex digits.
//!
//! # Lifecycle and server reducers
//!
//! | reducer | kind | effect |
//! |---|---|---|
//! | `init` | init | bump `init`; event `init` |
//! | `on_connect` | client_connected | bump `connected`; event `connected {sender}` |
//! | `on_disconnect` | client_disconnected | bump `disconnected`; event `disconnected {sender}` |
//! | `on_tick(dt: f32)` | tick | bump `ticks`; counter `last_dt_micros` = `round(dt as f64 * 1e6)` (set, not bumped); no event |
//! | `every_half_second` | every_ms = 500 | bump `every_500ms`; no event |
//! | `ping(text: String)` | scheduled | bump `pings`; event `ping {text}` |
//! | `upgrade(from: u32, to: u32)` | upgrade | bump `upgrades`; event `upgrade {from} -> {to}`; fails with `no downgrade from {from} to {to}` if `from > to` (after writing); panics with `upgrade panic` if `from` is 666 |
//!
//! The module is version 7 (`locus_module::version!(7)`): a new world's data is at version 7, and `upgrade` runs
//! when it takes over data at another version.
//!
//! # Client reducers: players
//!
//! | reducer | effect on success | failure (nothing written) |
//! |---|---|---|
//! | `spawn(name: String, x: f32, y: f32, level: u32)` | insert player `{id: next, name, pos: (x, y), owner: sender, level, hp: Some(100), bag: name's UTF-8 bytes, gear: Sword { damage: level }, joined: ctx.timestamp}`; event `spawn {id} {name}` | name taken: `insert into `player`: a row with the same primary key or unique value already exists`; position outside ±1e9: `insert into `player`: the position is not finite or is outside the world` |
//! | `move_player(id: u64, x: f32, y: f32)` | that player's `pos` = (x, y); no event (the hot-path benchmark reducer: find by pk + update) | `no player {id}` |
//! | `rename(id: u64, name: String)` | player's `name` = name; event `rename {id} {name}` | `no player {id}`; name taken: `update of `player`: another row has the same unique value` |
//! | `damage(id: u64, amount: i32)` | `hp` = `hp - amount`, or `None` if that is ≤ 0 (stays `None` once `None`); event `damage {id} hp={hp:?}` (e.g. `damage 1 hp=Some(70)`, `damage 1 hp=None`) | `no player {id}` |
//! | `set_gear(id: u64, bag: Vec<u8>, gear: Gear)` | player's `bag` and `gear` replaced; event `set_gear {id} bag={bag:?} gear={gear:?}` (e.g. `set_gear 1 bag=[1, 2] gear=Potions([3])`) | `no player {id}` |
//! | `remove_by_name(name: String)` | delete through the unique index; event `remove_by_name {name} {deleted}` (`true`/`false`) | — |
//! | `remove_by_id(id: u64)` | delete through the primary key; event `remove_by_id {id} {deleted}` | — |
//! | `remove_row(id: u64)` | find, then delete by row (`player().delete(&row)`); event `remove_row {id} {deleted}` (`false` if not found) | — |
//!
//! # Client reducers: queries
//!
//! `probe(x: f32, y: f32, radius: f32, level: u32, k: u32, name: String)` writes nothing but these 13 events, in
//! this order (`{:?}` is Rust's `Debug`: lists look like `[1, 2]`, pairs like `(1, 5)`):
//!
//! 1. `count={n}`: `player().count()`
//! 2. `iter={ids:?}`: `player().iter()`, ids sorted ascending
//! 3. `within={ids:?}`: `pos().within((x, y), radius)`, sorted
//! 4. `within_box={ids:?}`: `pos().within_box((x - radius, y - radius), (x + radius, y + radius))`, sorted
//! 5. `nearest={ids:?}`: `pos().nearest((x, y), k)`, in the order returned (nearest first)
//! 6. `filter={ids:?}`: `level().filter(&level)`, sorted
//! 7. `range={pairs:?}`: `level().range(level..level + 10)` as `(id, level)` pairs, in the order returned
//! 8. `range_incl={pairs:?}`: `level().range(level..=level + 10)`
//! 9. `range_from={pairs:?}`: `level().range(level..)`
//! 10. `range_to={pairs:?}`: `level().range(..level)`
//! 11. `pk_range={ids:?}`: `id().range(2..=4)`, in the order returned
//! 12. `name_range={names:?}`: `name().range::<str>((Included("b"), Excluded("n")))` (names in `[b, n)`), in the order returned
//! 13. `find={found}`: `name().find(&name)` then `id().find(&its id)`: `{id} {name} {level}` or `-`
//!
//! It fails (`range not in key order: …`) if a range's levels (7–10) or ids (11) or names (12) are not
//! non-decreasing.
//!
//! # Client reducers: randomness, logging, scheduling
//!
//! | reducer | effect |
//! |---|---|
//! | `roll_dice(n: u32)` | event `rng={values:?} die={die}`: `values` are the first `n` outputs of `next_u64()` of `rand_chacha::ChaCha8Rng::seed_from_u64(rng_seed)` (the first `n / 2` through one `ctx.rng()`, the rest through a second `ctx.rng()`, which continues the stream); then `die = rng.random_range(1..=6u32)` (rand 0.10) from the same stream |
//! | `log_all(text: String)` | logs `error {text}`, `warn {text}`, `info {text}`, `debug {text}`, `trace {text}` at levels error, warn, info, debug, trace (in that order); event `log_all {text}` |
//! | `schedule_ping(delay_ms: u64, text: String)` | schedules `ping(text)` at `timestamp + delay_ms * 1000` µs; counter `last_schedule_id` = the schedule id (set); event `schedule_ping {id} at={micros}` |
//! | `cancel_ping(id: u64)` | `unschedule(id)`; event `cancel_ping {id} {cancelled}` (`true`/`false`) |
//! | `schedule_and_cancel(text: String)` | schedules `ping(text)` 1 s ahead, then unschedules it; event `schedule_and_cancel {id} {cancelled}` (`true` expected; nothing stays scheduled) |
//! | `schedule_wrong()` | tries to schedule the client reducer `spawn` (`ScheduledCall::unchecked(spawn::call(..))`: typed, it does not compile); event `schedule_wrong {error}` with error `cannot schedule `spawn`: no scheduled reducer has that name`; fails with `scheduling a client reducer succeeded` if the host accepts it |
//!
//! # Client reducers: areas of interest
//!
//! Each sets or clears the **sender's** area (a row of the system table `locus_area`) and writes nothing else; on
//! an error the reducer fails with the `AreaError`'s message.
//!
//! | reducer | effect | failure |
//! |---|---|---|
//! | `follow(id: u64, enter: f32, leave: f32)` | area follows player `id` (which need not exist) | `area radii must satisfy 0 < enter (…) <= leave (…) <= 512` |
//! | `follow_counter(name: String)` | tries to follow counter `name`, radii 1 and 2 | always: `cannot follow a row of `counter`: the table has no #[spatial] column` |
//! | `look_at(x: f32, y: f32, enter: f32, leave: f32)` | area fixed at (x, y) | `area centre [x, y] is not finite or is outside the world`; the radii message |
//! | `clear_view()` | area removed | `no area to clear` if the sender had none |
//! | `follow_then_fail(id: u64)` | area follows player `id` with radii 64 and 72 | then always: `deliberate failure after setting an area` |
//!
//! # Calls between regions
//!
//! | reducer | kind | effect | failure |
//! |---|---|---|---|
//! | `region_note(text: String)` | region | event `region_note {text} from {sender}` | — |
//! | `send_note(region: String, text: String)` | client | sends `region_note(text)` to region `region`; event `send_note {region} {text}` | the `RegionSendError`'s message: `this world is not split into regions`, ``no region named `{region}` `` |
//! | `broadcast_note(text: String)` | client | sends `region_note(text)` to every region; event `broadcast_note {text}` | `this world is not split into regions` |
//! | `send_log(region: String, text: String)` | client | sends the client reducer `log_all(text)` to region `region`; event `send_log {region} {text}` | as `send_note` |
//! | `send_then_fail(region: String, text: String)` | client | sends `region_note(text)` to `region` and to every region, writes event `send_then_fail {text}` | then always: `deliberate failure after sending` (nothing is sent) |
//! | `where_am_i()` | client | event `where_am_i {region} / {regions}`: `{region}` is `ctx.region()` as `{name}#{index} {x0},{y0}..{x1},{y1}` (numbers as Rust's `Display` of `f32`: `2048`, `0.5`), or `none`; `{regions}` is `ctx.regions()`'s names in order, joined by `,`, the own one followed by `*` (empty in a world not split) | — |
//! | `send_wrong()` | client | sends what the host must refuse — a reducer name the module lacks (`nothing`), the scheduled reducer `ping` (unchecked), `region_note` with the arguments `[5]`, arguments longer than `MAX_REGION_CALL_ARGS` — each to region `east` and to every region; event `send_wrong {e1} | {e2} | … ` with the 8 errors' messages in that order | `sending … succeeded` if the host accepts one |
//!
//! # Client reducers: failures (every one writes before failing; nothing of it may survive)
//!
//! | reducer | writes first | then (with `locus-host`'s `CallError`) |
//! |---|---|---|
//! | `fail_after_write(text: String)` | event `fail_after_write {text}`; bump `fail_attempts` | returns `Err` → `Failed { message: "deliberate failure: {text}" }` |
//! | `panic_after_write(text: String)` | event `panic_after_write {text}` | panics with `deliberate panic: {text}` → trap → `Panicked { message: "deliberate panic: {text}", location: engine/host/test-module/src/lib.rs:<line>:<col> }` (the SDK's panic hook reports both through `reducer_panic` before the trap, and logs `panicked at engine/host/test-module/src/lib.rs:<line>:<col>: deliberate panic: {text}` at level error) |
//! | `spin()` | event `spin` | loops forever (a `black_box` counter the optimizer cannot remove) → `Interrupted` (time or fuel) |
//! | `memory_bomb()` | event `memory_bomb` | allocates and fills 1 MiB chunks, keeping them, forever → `MemoryLimit` (`memory.grow` past the limit traps; were it to return −1 instead, the allocation failure would abort → `Trapped`) |
//!
//! # Reference run
//!
//! Against `locus-host` with the default config, one instance: `init`; `client_connected` and
//! `client_disconnected` with sender `[7; 32]`; `tick(0.05)`; then client calls with sender `[1; 32]`:
//! `spawn("alice", 0, 0, 5)`, `spawn("bob", 3, 4, 7)`, `spawn("carol", 10, 0, 12)`, `spawn("dave", -1, -1, 20)`,
//! `move_player(2, 3.5, 4.5)`, `rename(1, "alicia")`, `damage(1, 30)`, `damage(1, 80)`,
//! `set_gear(2, [1, 2], Potions([3]))`, `probe(0, 0, 5, 5, 2, "bob")` gives the events
//!
//! ```text
//! init
//! connected 0707…07
//! disconnected 0707…07
//! spawn 1 alice
//! spawn 2 bob
//! spawn 3 carol
//! spawn 4 dave
//! rename 1 alicia
//! damage 1 hp=Some(70)
//! damage 1 hp=None
//! set_gear 2 bag=[1, 2] gear=Potions([3])
//! count=4
//! iter=[1, 2, 3, 4]
//! within=[1, 4]
//! within_box=[1, 2, 4]
//! nearest=[1, 4]
//! filter=[1]
//! range=[(1, 5), (2, 7), (3, 12)]
//! range_incl=[(1, 5), (2, 7), (3, 12)]
//! range_from=[(1, 5), (2, 7), (3, 12), (4, 20)]
//! range_to=[]
//! pk_range=[2, 3, 4]
//! name_range=["bob", "carol", "dave"]
//! find=2 bob 7
//! ```
//!
//! and the counters `init = 1`, `connected = 1`, `disconnected = 1`, `ticks = 1`, `last_dt_micros = 50000`.
//! `roll_dice(4)` with `rng_seed` 42 writes `rng=[12578764544318200737, 17529487244874322312,
//! 7886285670807131020, 11572758976476374866] die=5`.
//!
//! # Benchmark reducers
//!
//! | reducer | effect |
//! |---|---|
//! | `noop()` | nothing at all (the one reducer with no observable effect) |
//! | `spawn_movers(count: u64)` | with `n` = the `mover` row count before the call, inserts movers `id` = `n + 1 ..= n + count`, each `{id, pos: ((id % 100) * 10, (id / 100) * 10), steps: 0}`; no event |
//! | `move_mover(id: u64, x: f32, y: f32)` | that mover's `pos` = (x, y) and `steps` + 1 (find by primary key + update); fails `no mover {id}`; no event |

use std::ops::Bound;

use locus_module::rand::{Rng, RngExt};
use locus_module::{
    MAX_REGION_CALL_ARGS, ReducerCall, ReducerContext, ScheduleId, ScheduledCall, Vec2, debug,
    error, info, reducer, trace, warn,
};

pub use tables::{
    Counter, CounterTable, EventLog, EventLogTable, Gear, Mover, MoverTable, Player, PlayerTable,
};

/// The module's tables. They live in their own module to show that the generated accessor traits
/// (`PlayerTable`, …) are imported like any other item.
pub mod tables {
    use locus_module::serde::{Deserialize, Serialize};
    use locus_module::{Identity, Timestamp, Vec2, table};

    /// A player's equipment: an opaque column (any serde type, stored as one MessagePack value).
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(crate = "locus_module::serde")]
    pub enum Gear {
        /// Nothing equipped.
        Nothing,
        /// A sword.
        Sword {
            /// Its damage.
            damage: u32,
        },
        /// Potion strengths.
        Potions(Vec<u16>),
    }

    /// A player: public, spatial, owned.
    #[table(public)]
    #[derive(Clone, Debug, PartialEq)]
    pub struct Player {
        /// Assigned on insert; also btree-indexed, so `id().range(..)` works.
        #[primary_key]
        #[auto_inc]
        #[index(btree)]
        pub id: u64,
        /// Unique display name.
        #[unique]
        pub name: String,
        /// Position in the world.
        #[spatial]
        pub pos: Vec2,
        /// The client that spawned it; only it sees the row.
        #[owner]
        pub owner: Identity,
        /// Level, indexed for ranges.
        #[index(btree)]
        pub level: u32,
        /// Hit points; `None` once dead.
        pub hp: Option<i32>,
        /// Raw bytes.
        pub bag: Vec<u8>,
        /// Equipment (opaque).
        pub gear: Gear,
        /// When it spawned.
        pub joined: Timestamp,
    }

    /// A moving entity for the host's benchmarks (private, spatial).
    #[table]
    #[derive(Clone, Debug, PartialEq)]
    pub struct Mover {
        /// Given by `spawn_movers`.
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        /// Position.
        #[spatial]
        pub pos: Vec2,
        /// How many times `move_mover` moved it.
        pub steps: u32,
    }

    /// A named counter (private; a `String` primary key).
    #[table]
    #[derive(Clone, Debug, PartialEq)]
    pub struct Counter {
        /// The counter's name.
        #[primary_key]
        pub name: String,
        /// Its value.
        pub value: i64,
    }

    /// One line of observable history per reducer effect (private).
    #[table]
    #[derive(Clone, Debug, PartialEq)]
    pub struct EventLog {
        /// Assigned on insert.
        #[primary_key]
        #[auto_inc]
        pub id: u64,
        /// What happened.
        pub text: String,
    }
}

/// Append an event.
fn event(ctx: &ReducerContext, text: String) -> Result<(), String> {
    ctx.db.event_log().insert(EventLog { id: 0, text })?;
    Ok(())
}

/// Add `by` to counter `name` (creating it at `by`); returns the new value.
fn bump(ctx: &ReducerContext, name: &str, by: i64) -> Result<i64, String> {
    let counters = ctx.db.counter();
    match counters.name().find(name) {
        Some(mut c) => {
            c.value += by;
            Ok(counters.name().update(c)?.value)
        }
        None => Ok(counters
            .insert(Counter {
                name: name.to_owned(),
                value: by,
            })?
            .value),
    }
}

/// Set counter `name` to `value`.
fn set_counter(ctx: &ReducerContext, name: &str, value: i64) -> Result<(), String> {
    let counters = ctx.db.counter();
    let row = Counter {
        name: name.to_owned(),
        value,
    };
    if counters.name().find(name).is_some() {
        counters.name().update(row)?;
    } else {
        counters.insert(row)?;
    }
    Ok(())
}

fn player(ctx: &ReducerContext, id: u64) -> Result<Player, String> {
    ctx.db
        .player()
        .id()
        .find(&id)
        .ok_or_else(|| format!("no player {id}"))
}

// ---- lifecycle and server reducers ----

locus_module::version!(7);

/// Bring data at module version `from` to `to` (this module's, 7).
#[reducer(upgrade)]
pub fn upgrade(ctx: &ReducerContext, from: u32, to: u32) -> Result<(), String> {
    bump(ctx, "upgrades", 1)?;
    event(ctx, format!("upgrade {from} -> {to}"))?;
    if from == 666 {
        panic!("upgrade panic");
    }
    if from > to {
        return Err(format!("no downgrade from {from} to {to}"));
    }
    Ok(())
}

/// Runs once when the world is created.
#[reducer(init)]
pub fn init(ctx: &ReducerContext) -> Result<(), String> {
    bump(ctx, "init", 1)?;
    event(ctx, "init".into())
}

/// A client connected.
#[reducer(client_connected)]
pub fn on_connect(ctx: &ReducerContext) -> Result<(), String> {
    bump(ctx, "connected", 1)?;
    event(ctx, format!("connected {}", ctx.sender))
}

/// A client disconnected.
#[reducer(client_disconnected)]
pub fn on_disconnect(ctx: &ReducerContext) -> Result<(), String> {
    bump(ctx, "disconnected", 1)?;
    event(ctx, format!("disconnected {}", ctx.sender))
}

/// Every tick.
#[reducer(tick)]
pub fn on_tick(ctx: &ReducerContext, dt: f32) -> Result<(), String> {
    bump(ctx, "ticks", 1)?;
    set_counter(ctx, "last_dt_micros", (f64::from(dt) * 1e6).round() as i64)
}

/// Every 500 ms of world time.
#[reducer(every_ms = 500)]
pub fn every_half_second(ctx: &ReducerContext) -> Result<(), String> {
    bump(ctx, "every_500ms", 1)?;
    Ok(())
}

/// Scheduled by `schedule_ping`.
#[reducer(scheduled)]
pub fn ping(ctx: &ReducerContext, text: String) -> Result<(), String> {
    bump(ctx, "pings", 1)?;
    event(ctx, format!("ping {text}"))
}

// ---- players ----

/// Spawn a player owned by the caller.
#[reducer]
pub fn spawn(ctx: &ReducerContext, name: String, x: f32, y: f32, level: u32) -> Result<(), String> {
    let p = ctx.db.player().insert(Player {
        id: 0,
        bag: name.as_bytes().to_vec(),
        name,
        pos: Vec2::new(x, y),
        owner: ctx.sender,
        level,
        hp: Some(100),
        gear: Gear::Sword { damage: level },
        joined: ctx.timestamp,
    })?;
    event(ctx, format!("spawn {} {}", p.id, p.name))
}

/// Move a player: find by primary key, then update (the hot path).
#[reducer]
pub fn move_player(ctx: &ReducerContext, id: u64, x: f32, y: f32) -> Result<(), String> {
    let players = ctx.db.player();
    let mut p = players
        .id()
        .find(&id)
        .ok_or_else(|| format!("no player {id}"))?;
    p.pos = Vec2::new(x, y);
    players.id().update(p)?;
    Ok(())
}

/// Rename a player (the unique index may refuse).
#[reducer]
pub fn rename(ctx: &ReducerContext, id: u64, name: String) -> Result<(), String> {
    let mut p = player(ctx, id)?;
    p.name = name;
    let p = ctx.db.player().id().update(p)?;
    event(ctx, format!("rename {id} {}", p.name))
}

/// Damage a player: `hp` goes down, to `None` at zero.
#[reducer]
pub fn damage(ctx: &ReducerContext, id: u64, amount: i32) -> Result<(), String> {
    let mut p = player(ctx, id)?;
    p.hp =
        p.hp.map(|hp| hp.saturating_sub(amount))
            .filter(|hp| *hp > 0);
    let p = ctx.db.player().id().update(p)?;
    event(ctx, format!("damage {id} hp={:?}", p.hp))
}

/// Replace a player's bytes and opaque gear.
#[reducer]
pub fn set_gear(ctx: &ReducerContext, id: u64, bag: Vec<u8>, gear: Gear) -> Result<(), String> {
    let mut p = player(ctx, id)?;
    p.bag = bag;
    p.gear = gear;
    let p = ctx.db.player().id().update(p)?;
    event(
        ctx,
        format!("set_gear {id} bag={:?} gear={:?}", p.bag, p.gear),
    )
}

/// Delete through the unique index.
#[reducer]
pub fn remove_by_name(ctx: &ReducerContext, name: String) -> Result<(), String> {
    let deleted = ctx.db.player().name().delete(&name);
    event(ctx, format!("remove_by_name {name} {deleted}"))
}

/// Delete through the primary key.
#[reducer]
pub fn remove_by_id(ctx: &ReducerContext, id: u64) -> Result<(), String> {
    let deleted = ctx.db.player().id().delete(&id);
    event(ctx, format!("remove_by_id {id} {deleted}"))
}

/// Delete a row by value.
#[reducer]
pub fn remove_row(ctx: &ReducerContext, id: u64) -> Result<(), String> {
    let deleted = match ctx.db.player().id().find(&id) {
        Some(row) => ctx.db.player().delete(&row),
        None => false,
    };
    event(ctx, format!("remove_row {id} {deleted}"))
}

// ---- queries ----

fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids
}

fn in_order<T: PartialOrd + std::fmt::Debug>(what: &str, keys: &[T]) -> Result<(), String> {
    if keys.windows(2).all(|w| w[0] <= w[1]) {
        Ok(())
    } else {
        Err(format!("range not in key order: {what} {keys:?}"))
    }
}

fn level_pairs(what: &str, rows: impl Iterator<Item = Player>) -> Result<Vec<(u64, u32)>, String> {
    let pairs: Vec<(u64, u32)> = rows.map(|p| (p.id, p.level)).collect();
    in_order(what, &pairs.iter().map(|p| p.1).collect::<Vec<_>>())?;
    Ok(pairs)
}

/// Run every kind of query and record the answers (see the crate docs for the exact events).
#[reducer]
pub fn probe(
    ctx: &ReducerContext,
    x: f32,
    y: f32,
    radius: f32,
    level: u32,
    k: u32,
    name: String,
) -> Result<(), String> {
    let players = ctx.db.player();
    let center = Vec2::new(x, y);
    let ids = |rows: locus_module::RowIter<Player>| rows.map(|p| p.id).collect::<Vec<u64>>();

    event(ctx, format!("count={}", players.count()))?;
    event(ctx, format!("iter={:?}", sorted(ids(players.iter()))))?;
    event(
        ctx,
        format!(
            "within={:?}",
            sorted(ids(players.pos().within(center, radius)))
        ),
    )?;
    let (min, max) = (center - Vec2::splat(radius), center + Vec2::splat(radius));
    event(
        ctx,
        format!(
            "within_box={:?}",
            sorted(ids(players.pos().within_box(min, max)))
        ),
    )?;
    event(
        ctx,
        format!("nearest={:?}", ids(players.pos().nearest(center, k))),
    )?;
    event(
        ctx,
        format!("filter={:?}", sorted(ids(players.level().filter(&level)))),
    )?;
    let hi = level.saturating_add(10);
    let range = level_pairs("range", players.level().range(level..hi))?;
    event(ctx, format!("range={range:?}"))?;
    let range = level_pairs("range_incl", players.level().range(level..=hi))?;
    event(ctx, format!("range_incl={range:?}"))?;
    let range = level_pairs("range_from", players.level().range(level..))?;
    event(ctx, format!("range_from={range:?}"))?;
    let range = level_pairs("range_to", players.level().range(..level))?;
    event(ctx, format!("range_to={range:?}"))?;
    let pk = ids(players.id().range(2..=4));
    in_order("pk_range", &pk)?;
    event(ctx, format!("pk_range={pk:?}"))?;
    let names: Vec<String> = players
        .name()
        .range::<str>((Bound::Included("b"), Bound::Excluded("n")))
        .map(|p| p.name)
        .collect();
    in_order("name_range", &names)?;
    event(ctx, format!("name_range={names:?}"))?;
    let found = match players.name().find(&name) {
        Some(p) => match players.id().find(&p.id) {
            Some(q) => format!("{} {} {}", q.id, q.name, q.level),
            None => {
                return Err(format!(
                    "unique find gave id {} but the primary key has no such row",
                    p.id
                ));
            }
        },
        None => "-".to_owned(),
    };
    event(ctx, format!("find={found}"))
}

// ---- randomness, logging, scheduling ----

/// Draw from the deterministic RNG through two `ctx.rng()` handles.
#[reducer]
pub fn roll_dice(ctx: &ReducerContext, n: u32) -> Result<(), String> {
    let mut values = Vec::with_capacity(n as usize);
    let mut first = ctx.rng();
    for _ in 0..n / 2 {
        values.push(first.next_u64());
    }
    for _ in n / 2..n {
        values.push(ctx.rng().next_u64());
    }
    let die: u32 = first.random_range(1..=6);
    event(ctx, format!("rng={values:?} die={die}"))
}

/// Log at every level.
#[reducer]
pub fn log_all(ctx: &ReducerContext, text: String) -> Result<(), String> {
    error!("error {text}");
    warn!("warn {text}");
    info!("info {text}");
    debug!("debug {text}");
    trace!("trace {text}");
    event(ctx, format!("log_all {text}"))
}

/// Schedule `ping(text)` in `delay_ms`.
#[reducer]
pub fn schedule_ping(ctx: &ReducerContext, delay_ms: u64, text: String) -> Result<(), String> {
    let delay = std::time::Duration::from_millis(delay_ms);
    let id = ctx.schedule_in(delay, ping::call(text))?;
    set_counter(ctx, "last_schedule_id", id.0 as i64)?;
    let at = ctx.timestamp.add_micros(delay_ms.saturating_mul(1000));
    event(ctx, format!("schedule_ping {} at={}", id.0, at.as_micros()))
}

/// Cancel a schedule.
#[reducer]
pub fn cancel_ping(ctx: &ReducerContext, id: u64) -> Result<(), String> {
    let cancelled = ctx.unschedule(ScheduleId(id));
    event(ctx, format!("cancel_ping {id} {cancelled}"))
}

/// Schedule and cancel in one call.
#[reducer]
pub fn schedule_and_cancel(ctx: &ReducerContext, text: String) -> Result<(), String> {
    let id = ctx.schedule_in(std::time::Duration::from_secs(1), ping::call(text))?;
    let cancelled = ctx.unschedule(id);
    event(ctx, format!("schedule_and_cancel {} {cancelled}", id.0))
}

/// Try to schedule a client reducer (the host must refuse).
#[reducer]
pub fn schedule_wrong(ctx: &ReducerContext) -> Result<(), String> {
    // `spawn::call(..)` is a client reducer's call: scheduling it does not compile. Unchecked, the host refuses it.
    let call = ScheduledCall::unchecked(spawn::call("nobody".into(), 0.0, 0.0, 1));
    match ctx.schedule_in(std::time::Duration::from_secs(1), call) {
        Ok(_) => Err("scheduling a client reducer succeeded".into()),
        Err(e) => event(ctx, format!("schedule_wrong {e}")),
    }
}

// ---- calls between regions ----

/// A note another region (or this one) sent with `send_note` or `broadcast_note`.
#[reducer(region)]
pub fn region_note(ctx: &ReducerContext, text: String) -> Result<(), String> {
    event(ctx, format!("region_note {text} from {}", ctx.sender))
}

/// Send `region_note(text)` to `region`.
#[reducer]
pub fn send_note(ctx: &ReducerContext, region: String, text: String) -> Result<(), String> {
    ctx.send_to_region(&region, region_note::call(text.clone()))?;
    event(ctx, format!("send_note {region} {text}"))
}

/// Send `region_note(text)` to every region.
#[reducer]
pub fn broadcast_note(ctx: &ReducerContext, text: String) -> Result<(), String> {
    ctx.send_to_all_regions(region_note::call(text.clone()))?;
    event(ctx, format!("broadcast_note {text}"))
}

/// Send the client reducer `log_all(text)` to `region`.
#[reducer]
pub fn send_log(ctx: &ReducerContext, region: String, text: String) -> Result<(), String> {
    ctx.send_to_region(&region, log_all::call(text.clone()))?;
    event(ctx, format!("send_log {region} {text}"))
}

/// Send to `region` and to every region, then fail: nothing may be sent.
#[reducer]
pub fn send_then_fail(ctx: &ReducerContext, region: String, text: String) -> Result<(), String> {
    ctx.send_to_region(&region, region_note::call(text.clone()))?;
    ctx.send_to_all_regions(region_note::call(text.clone()))?;
    event(ctx, format!("send_then_fail {text}"))?;
    Err("deliberate failure after sending".into())
}

/// Which region this is, and the world's regions.
#[reducer]
pub fn where_am_i(ctx: &ReducerContext) -> Result<(), String> {
    let here = ctx.region().map_or_else(
        || "none".to_owned(),
        |r| {
            let (min, max) = (r.rect.min, r.rect.max);
            format!(
                "{}#{} {},{}..{},{}",
                r.name, r.index, min.x, min.y, max.x, max.y
            )
        },
    );
    let all: Vec<String> = ctx
        .regions()
        .into_iter()
        .map(|r| format!("{}{}", r.name, if r.own { "*" } else { "" }))
        .collect();
    event(ctx, format!("where_am_i {here} / {}", all.join(",")))
}

/// Send calls the host must refuse, to `east` and to every region.
#[reducer]
pub fn send_wrong(ctx: &ReducerContext) -> Result<(), String> {
    let long = "x".repeat(MAX_REGION_CALL_ARGS);
    let wrong = [
        ReducerCall::new("nothing", vec![0x90]),
        ping::call("x".into()).into_call(),
        ReducerCall::new(region_note::NAME, vec![0x91, 0x05]),
        region_note::call(long).into_call(),
    ];
    let mut errors = Vec::new();
    for call in wrong {
        match ctx.send_to_region("east", call.clone()) {
            Ok(()) => return Err(format!("sending `{}` to east succeeded", call.reducer)),
            Err(e) => errors.push(e.to_string()),
        }
        match ctx.send_to_all_regions(call.clone()) {
            Ok(()) => return Err(format!("sending `{}` everywhere succeeded", call.reducer)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    event(ctx, format!("send_wrong {}", errors.join(" | ")))
}

// ---- areas of interest ----

/// The sender's area follows player `id`.
#[reducer]
pub fn follow(ctx: &ReducerContext, id: u64, enter: f32, leave: f32) -> Result<(), String> {
    ctx.set_area_follow(ctx.sender, ctx.db.player(), &id, enter, leave)?;
    Ok(())
}

/// Try to follow a row of a table with no spatial column (the host must refuse).
#[reducer]
pub fn follow_counter(ctx: &ReducerContext, name: String) -> Result<(), String> {
    ctx.set_area_follow(ctx.sender, ctx.db.counter(), &name, 1.0, 2.0)?;
    Err("following a non-spatial table succeeded".into())
}

/// The sender's area sits at (x, y).
#[reducer]
pub fn look_at(ctx: &ReducerContext, x: f32, y: f32, enter: f32, leave: f32) -> Result<(), String> {
    ctx.set_area_fixed(ctx.sender, Vec2::new(x, y), enter, leave)?;
    Ok(())
}

/// Remove the sender's area.
#[reducer]
pub fn clear_view(ctx: &ReducerContext) -> Result<(), String> {
    if ctx.clear_area(ctx.sender) {
        Ok(())
    } else {
        Err("no area to clear".into())
    }
}

/// Set an area, then fail: the area must roll back.
#[reducer]
pub fn follow_then_fail(ctx: &ReducerContext, id: u64) -> Result<(), String> {
    ctx.set_area_follow(ctx.sender, ctx.db.player(), &id, 64.0, 72.0)?;
    Err("deliberate failure after setting an area".into())
}

// ---- failures ----

/// Write, then fail: everything must roll back.
#[reducer]
pub fn fail_after_write(ctx: &ReducerContext, text: String) -> Result<(), String> {
    event(ctx, format!("fail_after_write {text}"))?;
    bump(ctx, "fail_attempts", 1)?;
    Err(format!("deliberate failure: {text}"))
}

/// Write, then panic (a trap): everything must roll back.
#[reducer]
pub fn panic_after_write(ctx: &ReducerContext, text: String) -> Result<(), String> {
    event(ctx, format!("panic_after_write {text}"))?;
    panic!("deliberate panic: {text}");
}

/// Write, then never return: the host must interrupt it.
#[reducer]
pub fn spin(ctx: &ReducerContext) -> Result<(), String> {
    event(ctx, "spin".into())?;
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Write, then allocate until allocation fails.
#[reducer]
pub fn memory_bomb(ctx: &ReducerContext) -> Result<(), String> {
    const CHUNK: usize = 1 << 20;
    event(ctx, "memory_bomb".into())?;
    // Room for 4 GiB of chunks, so growing the list itself never allocates.
    let mut hoard: Vec<Vec<u8>> = Vec::with_capacity(4096);
    loop {
        hoard.push(vec![0xa5; CHUNK]);
        std::hint::black_box(&hoard);
    }
}

// ---- benchmarks ----

/// Do nothing (the host's empty-call benchmark). The one reducer with no observable effect.
#[reducer]
pub fn noop(_ctx: &ReducerContext) {}

/// The grid position of mover `id`: `((id % 100) * 10, (id / 100) * 10)`.
fn mover_home(id: u64) -> Vec2 {
    Vec2::new((id % 100) as f32 * 10.0, (id / 100) as f32 * 10.0)
}

/// Add `count` movers with the next ids after the current row count, each at its grid position.
#[reducer]
pub fn spawn_movers(ctx: &ReducerContext, count: u64) -> Result<(), String> {
    let movers = ctx.db.mover();
    let base = movers.count();
    for id in base + 1..=base + count {
        movers.insert(Mover {
            id,
            pos: mover_home(id),
            steps: 0,
        })?;
    }
    Ok(())
}

/// Move a mover: find by primary key, set the position, count the step, update (the host's hot-path benchmark).
#[reducer]
pub fn move_mover(ctx: &ReducerContext, id: u64, x: f32, y: f32) -> Result<(), String> {
    let movers = ctx.db.mover();
    let mut m = movers
        .id()
        .find(&id)
        .ok_or_else(|| format!("no mover {id}"))?;
    m.pos = Vec2::new(x, y);
    m.steps += 1;
    movers.id().update(m)?;
    Ok(())
}
