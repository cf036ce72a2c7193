//! Private and owner-only rows never reach another client: a property test over random sessions and worlds of the
//! demo module, checked on what each session was actually sent (every frame, decoded as a client decodes it), not
//! on the interest stage's bookkeeping.
//!
//! Four identities connect, disconnect, reconnect, rename, whisper to each other, chat, drop items, walk, and
//! subscribe to every table of the module — private ones and the engine's system tables included — with every kind
//! of filter (`All`, `Owner`, `Eq` on the owner column with their own or another identity), while the server
//! gives items to random players and spawns creatures (whose `creature_mind` rows are private). After every tick:
//!
//! - no frame to a session names a table its `Welcome` did not list (private tables are never listed), and no
//!   subscription to a private or unknown table is answered `Subscribed`;
//! - every row of an owned table (`inventory_item`, `whisper`) a session was sent — inserted, updated or patched —
//!   has the session's identity in its owner column;
//! - and, so that the check is not vacuous, each session's cache of an owned table holds exactly the rows of that
//!   table the world has for its identity (all of them with `All`, `Owner` or `Eq` on its own identity; none with
//!   `Eq` on another's).

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use game_module as gm;
use locus_host::{HostConfig, Module, Runtime};
use locus_protocol::{Filter, ServerMessage, TableDelta};
use locus_server::testing::{TestSession, TestWorld, TestWorldConfig};
use locus_types::codec::{decode_row, decode_value};
use locus_types::{ColumnDef, ColumnType, Identity, TableDef, Value};
use proptest::prelude::*;

static DEMO: LazyLock<Module> = LazyLock::new(|| {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = locus_host::build::build_module(
        &workspace,
        "game-module",
        &locus_host::build::module_target_dir(&workspace, "wasm-modules"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Runtime::new(HostConfig::default())
        .unwrap()
        .load(&wasm)
        .unwrap()
});

/// Every table a client might name: the demo module's, public and private, the engine's, and one that is not.
const TABLES: &[&str] = &[
    "player",
    "inventory_item",
    "whisper",
    "ground_item",
    "local_message",
    "global_message",
    "creature",
    "creature_mind",
    "chat_quota",
    "item_kind",
    "locus_area",
    "locus_schedule",
    "locus_module",
    "nothing_here",
];

/// The tables whose rows only their owner is sent.
const OWNED: &[&str] = &["inventory_item", "whisper"];

const PEOPLE: usize = 4;

fn encode_value(column: &ColumnDef, value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    locus_types::codec::encode_value(column, value, &mut out).expect("the value fits its column");
    out
}

fn identity(i: usize) -> Identity {
    Identity([i as u8 + 1; 32])
}

#[derive(Clone, Debug)]
enum FilterOp {
    All,
    Owner,
    /// `Eq` on the owner column (or the first column, for a table without one) with person `i`'s identity.
    EqOwner(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Connect(usize),
    Disconnect(usize),
    Subscribe(usize, usize, FilterOp),
    Unsubscribe(usize, usize),
    Rename(usize),
    Whisper(usize, usize),
    Say(usize),
    Drop(usize),
    Walk(usize, f32, f32),
    /// The server gives player `id` (ids are handed out 1, 2, … as players are made) some wood.
    Give(u64),
    SpawnCreatures,
    Ticks(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..PEOPLE;
    let filter = prop_oneof![
        Just(FilterOp::All),
        Just(FilterOp::Owner),
        (0..PEOPLE).prop_map(FilterOp::EqOwner),
    ];
    prop_oneof![
        3 => who.clone().prop_map(Op::Connect),
        1 => who.clone().prop_map(Op::Disconnect),
        6 => (who.clone(), 0..TABLES.len(), filter).prop_map(|(i, t, f)| Op::Subscribe(i, t, f)),
        1 => (who.clone(), 0..TABLES.len()).prop_map(|(i, t)| Op::Unsubscribe(i, t)),
        2 => who.clone().prop_map(Op::Rename),
        3 => (who.clone(), who.clone()).prop_map(|(i, j)| Op::Whisper(i, j)),
        1 => who.clone().prop_map(Op::Say),
        2 => who.clone().prop_map(Op::Drop),
        2 => (who, -40.0f32..40.0, -40.0f32..40.0).prop_map(|(i, x, y)| Op::Walk(i, x, y)),
        2 => (1u64..8).prop_map(Op::Give),
        1 => Just(Op::SpawnCreatures),
        4 => (1u8..4).prop_map(Op::Ticks),
    ]
}

/// What one person's current session was sent, and asked for.
struct Person {
    session: TestSession,
    /// Table id → definition, from its `Welcome`.
    tables: HashMap<u32, TableDef>,
    /// Its filter per table name, as last asked (and not refused).
    filters: HashMap<&'static str, FilterOp>,
}

fn owner_column(def: &TableDef) -> Option<usize> {
    def.owner.map(|c| c.0 as usize)
}

/// Check every frame `p` was sent since the last check; `Err` names a leak.
fn check_frames(w: &mut TestWorld, p: &mut Person, me: Identity) -> Result<(), String> {
    for m in w.take_messages(p.session) {
        match m {
            ServerMessage::Welcome(welcome) => {
                p.tables = welcome
                    .tables
                    .into_iter()
                    .map(|t| (t.id.0, t.def))
                    .collect();
            }
            ServerMessage::Subscribed { table, .. } => {
                let Some(def) = p.tables.get(&table.0) else {
                    return Err(format!(
                        "subscribed to table {} that its Welcome did not list",
                        table.0
                    ));
                };
                if !TABLES.contains(&def.name.as_str()) {
                    return Err(format!("subscribed to unexpected table {}", def.name));
                }
            }
            ServerMessage::Tick { tables, .. } => {
                for delta in tables {
                    check_delta(p, &delta, me)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_delta(p: &Person, delta: &TableDelta, me: Identity) -> Result<(), String> {
    let Some(def) = p.tables.get(&delta.table.0) else {
        return Err(format!(
            "rows of table {} that its Welcome did not list (a private table?)",
            delta.table.0
        ));
    };
    let Some(owner) = owner_column(def) else {
        return Ok(());
    };
    for row in delta.inserts.iter().chain(&delta.updates) {
        let values = decode_row(&def.columns, &row.0)
            .map_err(|e| format!("{}: a bad row: {e}", def.name))?;
        if values[owner] != Value::Identity(me) {
            return Err(format!(
                "a row of {} owned by {:?} reached {me:?}",
                def.name, values[owner]
            ));
        }
    }
    for patch in &delta.patches {
        // A patch: [key, (column, value)…] (version 2), or [(column, value)…] after a handle (version 3).
        if let Some(value) = patched_owner(def, owner, &patch.0)
            && value != Value::Identity(me)
        {
            return Err(format!(
                "a patch of {} set its owner to {value:?}, sent to {me:?}",
                def.name
            ));
        }
    }
    Ok(())
}

/// The owner column's new value in a patch, if the patch sets it. Patches of the demo module's owned tables never
/// do; if one did, its value is checked.
fn patched_owner(def: &TableDef, owner: usize, patch: &[u8]) -> Option<Value> {
    let mut rest = patch;
    let len = rmp::decode::read_array_len(&mut rest).ok()? as usize;
    // Version 3 patches carry no key: an even number of elements, (column, value) pairs.
    if len % 2 == 1 {
        let key = &def.columns[def.primary_key.0 as usize];
        let n = locus_types::codec::value_len(key, rest).ok()?;
        rest = &rest[n..];
    }
    for _ in 0..len / 2 {
        let column: u64 = rmp::decode::read_int(&mut rest).ok()?;
        let def_col = def.columns.get(column as usize)?;
        let n = locus_types::codec::value_len(def_col, rest).ok()?;
        if column as usize == owner {
            return decode_value(def_col, &rest[..n]).ok();
        }
        rest = &rest[n..];
    }
    None
}

/// The rows of owned table `name` the world holds for `me`, by primary key bytes → row bytes.
fn owned_rows(w: &TestWorld, name: &str, me: Identity) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = w.world().db();
    let table = db
        .tables()
        .find(|t| t.name() == name)
        .expect("the table exists");
    let def = table.def();
    let owner = owner_column(def).expect("an owned table");
    let key = def.primary_key.0 as usize;
    let mut rows = BTreeMap::new();
    for row in table.iter() {
        let values = decode_row(&def.columns, row).expect("a valid row");
        if values[owner] == Value::Identity(me) {
            let key_bytes = encode_value(&def.columns[key], &values[key]);
            rows.insert(key_bytes, row.to_vec());
        }
    }
    rows
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut w = TestWorld::new(
        &DEMO,
        TestWorldConfig {
            init: false,
            ..TestWorldConfig::default()
        },
    )
    .unwrap();
    let mut people: Vec<Option<Person>> = (0..PEOPLE).map(|_| None).collect();
    let mut seq = 0u32;
    let identity_column = ColumnDef::new("owner", ColumnType::Identity);
    for op in ops {
        seq += 1;
        match op.clone() {
            Op::Connect(i) if people[i].is_none() => {
                let session = w.connect(identity(i));
                people[i] = Some(Person {
                    session,
                    tables: HashMap::new(),
                    filters: HashMap::new(),
                });
            }
            Op::Disconnect(i) => {
                if let Some(p) = people[i].take() {
                    w.disconnect(p.session);
                }
            }
            Op::Subscribe(i, t, f) => {
                if let Some(p) = people[i].as_mut() {
                    let name = TABLES[t];
                    let filter = match &f {
                        FilterOp::All => Filter::All,
                        FilterOp::Owner => Filter::Owner,
                        FilterOp::EqOwner(j) => {
                            let column = match name {
                                "inventory_item" | "whisper" => "owner",
                                "player" => "identity",
                                _ => "id",
                            };
                            Filter::Eq {
                                column: column.into(),
                                value: encode_value(
                                    &identity_column,
                                    &Value::Identity(identity(*j)),
                                ),
                            }
                        }
                    };
                    w.subscribe(p.session, name, filter);
                    p.filters.insert(name, f);
                }
            }
            Op::Unsubscribe(i, t) => {
                if let Some(p) = people[i].as_mut() {
                    w.unsubscribe(p.session, TABLES[t]);
                    p.filters.remove(TABLES[t]);
                }
            }
            Op::Rename(i) => {
                if let Some(p) = &people[i] {
                    w.call(p.session, &gm::set_name::call(format!("person{i}")));
                }
            }
            Op::Whisper(i, j) => {
                if let Some(p) = &people[i] {
                    w.call(
                        p.session,
                        &gm::whisper::call(format!("person{j}"), format!("secret {seq}")),
                    );
                }
            }
            Op::Say(i) => {
                if let Some(p) = &people[i] {
                    w.call(p.session, &gm::say::call(format!("hello {seq}")));
                }
            }
            Op::Drop(i) => {
                if let Some(p) = &people[i] {
                    w.call(p.session, &gm::drop_item::call("wood".into(), 1));
                }
            }
            Op::Walk(i, dx, dy) => {
                if let Some(p) = &people[i] {
                    let c = gm::content().world.spawn.center;
                    w.call(p.session, &gm::move_to::call(c[0] + dx, c[1] + dy));
                }
            }
            Op::Give(id) => {
                let _ = w.local_call(&gm::admin::admin_give::call(id, "stone".into(), 2));
            }
            Op::SpawnCreatures => {
                let c = gm::content().world.spawn.center;
                let _ = w.local_call(&gm::admin::admin_spawn_creatures_in::call(
                    3,
                    c[0] - 50.0,
                    c[1] - 50.0,
                    c[0] + 50.0,
                    c[1] + 50.0,
                ));
            }
            Op::Ticks(n) => w.run(u64::from(n)),
            Op::Connect(_) => {}
        }
        if !matches!(op, Op::Ticks(_)) {
            w.tick();
        }
        for (i, p) in people.iter_mut().enumerate() {
            let Some(p) = p else { continue };
            check_frames(&mut w, p, identity(i))
                .map_err(|e| TestCaseError::fail(format!("person {i}: {e}")))?;
        }
    }
    // Exactness: each session holds exactly its own rows of each owned table it subscribed to.
    w.run(2);
    for (i, p) in people.iter_mut().enumerate() {
        let Some(p) = p else { continue };
        check_frames(&mut w, p, identity(i))
            .map_err(|e| TestCaseError::fail(format!("person {i}: {e}")))?;
        for &name in OWNED {
            let held: BTreeMap<Vec<u8>, Vec<u8>> = w
                .cache(p.session)
                .iter_raw(name)
                .map(|(k, r)| (k.to_vec(), r.to_vec()))
                .collect();
            let expected = match p.filters.get(name) {
                None => BTreeMap::new(),
                Some(FilterOp::All | FilterOp::Owner) => owned_rows(&w, name, identity(i)),
                Some(FilterOp::EqOwner(j)) if *j == i => owned_rows(&w, name, identity(i)),
                Some(FilterOp::EqOwner(_)) => BTreeMap::new(),
            };
            prop_assert_eq!(&held, &expected, "person {}'s {} rows", i, name);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn private_and_owned_rows_reach_only_their_owner(ops in proptest::collection::vec(op(), 1..60)) {
        run(&ops)?;
    }
}

/// A fixed run in which every kind of leak has something to leak: all four people subscribe to everything with
/// `All`, whisper to each other, are given items, and creatures think.
#[test]
fn a_busy_world_leaks_nothing_and_every_owner_holds_its_rows() {
    let mut ops = Vec::new();
    for i in 0..PEOPLE {
        ops.push(Op::Connect(i));
        ops.push(Op::Rename(i));
        for t in 0..TABLES.len() {
            ops.push(Op::Subscribe(i, t, FilterOp::All));
        }
    }
    for i in 0..PEOPLE {
        ops.push(Op::Whisper(i, (i + 1) % PEOPLE));
        ops.push(Op::Give(i as u64 + 1));
        ops.push(Op::Drop(i));
    }
    ops.push(Op::SpawnCreatures);
    ops.push(Op::Ticks(3));
    run(&ops).unwrap();
}
