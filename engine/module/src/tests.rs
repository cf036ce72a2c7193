//! Tests of the macros' output against hand-built definitions and the row codec.

use locus_types::abi::Errno;
use locus_types::codec;
use locus_types::{ColumnDef, ColumnType, IndexKind, TableAccess, TableDef, Value};

use crate::{Identity, ReducerDef, ReducerKind, Table, Timestamp, Vec2, reducer, table};

/// An opaque column type.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Gear {
    /// Nothing.
    None,
    /// A sword.
    Sword {
        /// Damage.
        damage: u32,
    },
    /// Potions.
    Potions(Vec<u16>),
}

/// Every column type and attribute.
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Hero {
    /// Key.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// Unique.
    #[unique]
    pub name: String,
    /// Spatial.
    #[spatial]
    pub pos: Vec2,
    /// Owner.
    #[owner]
    pub owner: Identity,
    /// Btree.
    #[index(btree)]
    pub level: u32,
    /// Optional.
    pub hp: Option<i32>,
    /// Bytes.
    pub bag: Vec<u8>,
    /// Optional bytes.
    pub sigil: Option<Vec<u8>>,
    /// Opaque.
    pub gear: Gear,
    /// Forced opaque.
    #[opaque]
    pub pair: (u8, u8),
    /// The rest of the scalar types.
    pub flags: (bool,),
    /// A bool.
    pub alive: bool,
    /// Small ints.
    pub a: i8,
    /// Small ints.
    pub b: i16,
    /// Big ints.
    pub c: i64,
    /// Small ints.
    pub d: u8,
    /// Small ints.
    pub e: u16,
    /// Float.
    pub f: f32,
    /// Double.
    pub g: f64,
    /// Time.
    pub born: Timestamp,
}

/// A private table with a String key and a custom name.
#[table(name = "kv_store")]
pub(crate) struct KeyValue {
    /// Key.
    #[primary_key]
    pub key: String,
    /// Value.
    pub value: i64,
}

/// A table with a bytes primary key and a signed auto_inc-less key elsewhere.
#[table]
pub(crate) struct Blob {
    /// Key.
    #[primary_key]
    pub hash: Vec<u8>,
}

/// A signed auto_inc key.
#[table]
pub(crate) struct Signed {
    /// Key.
    #[primary_key]
    #[auto_inc]
    pub id: i32,
}

/// A primary key with a btree index too, so it can answer ranges.
#[table]
pub(crate) struct Ranked {
    /// Key.
    #[primary_key]
    #[index(btree)]
    pub rank: u32,
}

/// A movable avatar: it moves between regions, and its `who` (unique) is the identity whose rows go with it.
#[table(public, movable)]
pub(crate) struct Avatar {
    /// Key.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// Where it is: the engine places it in a region by it.
    #[spatial]
    pub pos: Vec2,
    /// Whose it is.
    #[unique]
    pub who: Identity,
}

/// Type-checks the typed API (it cannot run natively).
#[allow(dead_code)]
fn api_type_checks(ctx: &crate::ReducerContext) -> Result<(), String> {
    let _: Vec<Ranked> = ctx.db.ranked().rank().range(1..5).collect();
    let _: Vec<Ranked> = ctx.db.ranked().rank().range(..=7u32).collect();
    let heroes = ctx.db.hero();
    let _: Option<Hero> = heroes.name().find("ada");
    let _: Option<Hero> = heroes.name().find(&String::from("ada"));
    let _: bool = heroes.name().delete("ada");
    let _: Vec<Hero> = heroes
        .level()
        .filter(&3)
        .chain(heroes.level().range(1..=2))
        .collect();
    let _ = heroes
        .name()
        .range::<str>((std::ops::Bound::Included("a"), std::ops::Bound::Unbounded));
    let _ = heroes.pos().within(Vec2::ZERO, 1.0).count();
    let _ = heroes.pos().within_box(Vec2::ZERO, Vec2::ONE).count();
    let _ = heroes.pos().nearest(Vec2::ZERO, 3).count();
    let h = heroes.insert(hero())?;
    let h = heroes.id().update(h)?;
    let _ = heroes.delete(&h) && heroes.id().delete(&h.id);
    let _ = heroes.iter().count() as u64 + heroes.count();
    let _: Option<Blob> = ctx.db.blob().hash().find(&[1u8, 2][..]);
    let _: Option<Blob> = ctx.db.blob().hash().find(&vec![1u8, 2]);
    let _: Option<KeyValue> = ctx.db.kv_store().key().find("k");
    let id = ctx.schedule_at(
        crate::Timestamp(0),
        later::call(Identity::SERVER, vec![], None, Gear::None),
    )?;
    let _ = ctx.unschedule(id);
    let _: u32 = crate::rand::RngExt::random_range(&mut ctx.rng(), 0..10);
    ctx.set_area_follow(ctx.sender, ctx.db.hero(), &h.id, 64.0, 72.0)?;
    ctx.set_area_follow(
        ctx.sender,
        crate::TableHandle::<Hero>::new(),
        &1,
        64.0,
        72.0,
    )?;
    let _: Result<(), crate::AreaError> =
        ctx.set_area_follow(Identity::SERVER, ctx.db.blob(), &vec![1u8], 1.0, 2.0);
    ctx.set_area_fixed(
        ctx.sender,
        Vec2::new(1.0, 2.0),
        10.0,
        crate::MAX_AREA_RADIUS,
    )?;
    let _: bool = ctx.clear_area(ctx.sender);
    ctx.send_to_region("east", relay::call("hi".into(), Some(3)))?;
    ctx.send_to_region("east", say::call("hi".into()))?;
    match ctx.send_to_all_regions(relay::call("all".into(), None)) {
        Ok(()) | Err(crate::RegionBroadcastError::NotSplit) => {}
        Err(e) => return Err(e.into()),
    }
    let _: Result<(), crate::RegionSendError> =
        ctx.send_to_region("west", crate::ReducerCall::new("relay", vec![0x90]));
    let here: Option<crate::Region> = ctx.region();
    if let Some(r) = here {
        let _: bool = r.rect.contains(Vec2::ZERO) && r.own;
    }
    let _: Vec<crate::Region> = ctx.regions();
    crate::info!("x = {}", 1);
    Ok(())
}

/// Run when a region sends it.
#[reducer(region)]
pub(crate) fn relay(ctx: &crate::ReducerContext, text: String, hops: Option<u32>) {
    let _ = (ctx, text, hops);
}

/// Says something.
#[reducer]
pub(crate) fn say(ctx: &crate::ReducerContext, text: String) -> Result<(), String> {
    let _ = (ctx, text);
    Ok(())
}

/// Every kind of parameter.
#[reducer(scheduled)]
pub(crate) fn later(
    _ctx: &crate::ReducerContext,
    who: Identity,
    data: Vec<u8>,
    at: Option<Timestamp>,
    gear: Gear,
) {
    let _ = (who, data, at, gear);
}

/// Tick.
#[reducer(tick)]
pub(crate) fn on_tick(_ctx: &crate::ReducerContext, dt: f32) {
    let _ = dt;
}

/// Every 250 ms.
#[reducer(every_ms = 250)]
pub(crate) fn quarter(_ctx: &crate::ReducerContext) -> Result<(), std::fmt::Error> {
    Ok(())
}

/// Init.
#[reducer(init)]
pub(crate) fn setup(_ctx: &crate::ReducerContext) {}

fn hero() -> Hero {
    Hero {
        id: 7,
        name: "ada".into(),
        pos: Vec2::new(1.5, -2.0),
        owner: Identity([3; 32]),
        level: 12,
        hp: None,
        bag: vec![1, 2, 3],
        sigil: Some(vec![9]),
        gear: Gear::Sword { damage: 4 },
        pair: (1, 2),
        flags: (true,),
        alive: true,
        a: -1,
        b: -300,
        c: -5_000_000_000,
        d: 255,
        e: 65535,
        f: 0.5,
        g: 0.25,
        born: Timestamp(1_700_000_000_000_000),
    }
}

#[test]
fn generated_table_def_equals_the_hand_built_one() {
    let opt = |t| ColumnType::Option(Box::new(t));
    let expected = TableDef::builder("hero")
        .column("id", ColumnType::U64)
        .column("name", ColumnType::String)
        .column("pos", ColumnType::Vec2)
        .column("owner", ColumnType::Identity)
        .column("level", ColumnType::U32)
        .column("hp", opt(ColumnType::I32))
        .column("bag", ColumnType::Bytes)
        .column("sigil", opt(ColumnType::Bytes))
        .column("gear", ColumnType::Opaque)
        .column("pair", ColumnType::Opaque)
        .column("flags", ColumnType::Opaque)
        .column("alive", ColumnType::Bool)
        .column("a", ColumnType::I8)
        .column("b", ColumnType::I16)
        .column("c", ColumnType::I64)
        .column("d", ColumnType::U8)
        .column("e", ColumnType::U16)
        .column("f", ColumnType::F32)
        .column("g", ColumnType::F64)
        .column("born", ColumnType::Timestamp)
        .primary_key("id")
        .auto_inc()
        .index("name", IndexKind::Unique)
        .index("pos", IndexKind::Spatial)
        .index("level", IndexKind::BTree)
        .owner("owner")
        .access(TableAccess::Public)
        .build()
        .unwrap();
    assert_eq!(Hero::def(), expected);
    assert_eq!(Hero::NAME, "hero");

    let kv = KeyValue::def();
    kv.validate().unwrap();
    assert_eq!(kv.name, "kv_store");
    assert_eq!(kv.access, TableAccess::Private);
    assert!(!kv.auto_inc);
    assert_eq!(kv.columns[0], ColumnDef::new("key", ColumnType::String));
    Blob::def().validate().unwrap();
    Signed::def().validate().unwrap();
    let ranked = Ranked::def();
    ranked.validate().unwrap();
    assert_eq!(
        ranked.indexes,
        [locus_types::IndexDef {
            column: locus_types::ColumnId(0),
            kind: IndexKind::BTree
        }]
    );
}

#[test]
fn table_rows_are_valid_codec_rows() {
    let def = Hero::def();
    let row = rmp_serde::to_vec(&hero()).unwrap();
    let mut offsets = Vec::new();
    codec::validate_row(&def.columns, &row, &mut offsets).unwrap();
    let values = codec::decode_row(&def.columns, &row).unwrap();
    assert_eq!(values[6], Value::Bytes(vec![1, 2, 3].into()));
    assert_eq!(values[7], Value::Bytes(vec![9].into()));
    assert_eq!(values[5], Value::Null);
    assert_eq!(
        values[19],
        Value::Timestamp(Timestamp(1_700_000_000_000_000))
    );
    // And back: the codec's encoding of the values decodes as the struct.
    let reencoded = codec::encode_row(&def.columns, &values).unwrap();
    let back: Hero = rmp_serde::from_slice(&reencoded).unwrap();
    assert_eq!(back, hero());
}

/// Generated handles name their row type.
const _: () = {
    const fn row_is<H: crate::IntoTableHandle<Row = R>, R>() {}
    row_is::<HeroHandle, Hero>();
    row_is::<BlobHandle, Blob>();
    row_is::<crate::TableHandle<Hero>, Hero>();
};

#[test]
fn primary_keys_encode_as_their_column_and_take_host_bits() {
    let mut h = hero();
    let mut out = Vec::new();
    h.__encode_primary_key(&mut out);
    assert_eq!(out, [7]);
    h.__set_primary_key(1 << 40);
    assert_eq!(*h.primary_key(), 1 << 40);

    let blob = Blob {
        hash: vec![0xab, 0xcd],
    };
    out.clear();
    blob.__encode_primary_key(&mut out);
    assert_eq!(out, [0xc4, 2, 0xab, 0xcd], "a bytes key is bin");
    let value = codec::decode_value(&Blob::def().columns[0], &out).unwrap();
    assert_eq!(value, Value::Bytes(vec![0xab, 0xcd].into()));

    out.clear();
    Blob::__encode_key(&vec![0xab, 0xcd], &mut out);
    assert_eq!(out, [0xc4, 2, 0xab, 0xcd], "a bare bytes key is bin too");
    out.clear();
    KeyValue::__encode_key(&"k".to_owned(), &mut out);
    assert_eq!(out, [0xa1, b'k']);
    out.clear();
    Hero::__encode_key(&300, &mut out);
    assert_eq!(out, [0xcd, 0x01, 0x2c]);

    let mut s = Signed { id: 0 };
    s.__set_primary_key(u64::MAX);
    assert_eq!(s.id, -1, "signed keys arrive as two's-complement bits");

    let mut kv = KeyValue {
        key: "k".into(),
        value: 1,
    };
    kv.__set_primary_key(0);
    assert_eq!(kv.key, "k", "non-integer keys are left alone");
}

#[test]
fn iterator_batches_decode_row_by_row() {
    let mut a = hero();
    a.hp = Some(3);
    let mut b = hero();
    b.id = 8;
    b.sigil = None;
    let mut batch = rmp_serde::to_vec(&a).unwrap();
    let first = batch.len();
    batch.extend(rmp_serde::to_vec(&b).unwrap());
    let (row, used) = crate::table::decode_prefix::<Hero>(&batch);
    assert_eq!((row, used), (a, first));
    let (row, used) = crate::table::decode_prefix::<Hero>(&batch[first..]);
    assert_eq!((row, used), (b, batch.len() - first));
}

#[test]
fn reducer_calls_encode_one_array_of_arguments() {
    let call = say::call("hi".into());
    assert_eq!(call.reducer, "say");
    assert_eq!(say::NAME, "say");
    assert_eq!(call.args, [0x91, 0xa2, b'h', b'i']);

    // A scheduled reducer's call is a `ScheduledCall` (what `schedule_at` takes), a `ReducerCall` underneath.
    let call: crate::ScheduledCall = later::call(Identity([1; 32]), vec![5, 6], None, Gear::None);
    assert_eq!(call.reducer, "later");
    let call: crate::ReducerCall = call.into();
    let params = later::def().params;
    let mut offsets = Vec::new();
    codec::validate_row(&params, &call.args, &mut offsets).unwrap();
    assert_eq!(
        codec::decode_row(&params, &call.args).unwrap()[1],
        Value::Bytes(vec![5, 6].into())
    );
    assert_eq!(
        on_tick::call(0.05).args,
        [0x91, 0xca, 0x3d, 0x4c, 0xcc, 0xcd],
        "dt is one float 32"
    );
    assert_eq!(setup::call().args, [0x90]);

    // A region reducer's call is a `RegionCall` (what `send_to_region` takes), a `ReducerCall` underneath.
    let call: crate::RegionCall = relay::call("hi".into(), Some(3));
    assert_eq!(call.reducer, "relay");
    assert_eq!(call.args, [0x92, 0xa2, b'h', b'i', 0x03]);
    let call: crate::ReducerCall = call.into();
    codec::validate_row(&relay::def().params, &call.args, &mut offsets).unwrap();
}

#[test]
fn reducer_defs_have_kinds_and_typed_params() {
    assert_eq!(
        say::def(),
        ReducerDef {
            name: "say".into(),
            kind: ReducerKind::Client,
            params: vec![ColumnDef::new("text", ColumnType::String)],
        }
    );
    assert_eq!(
        later::def()
            .params
            .iter()
            .map(|p| p.ty.clone())
            .collect::<Vec<_>>(),
        [
            ColumnType::Identity,
            ColumnType::Bytes,
            ColumnType::Option(Box::new(ColumnType::Timestamp)),
            ColumnType::Opaque,
        ]
    );
    assert_eq!(later::def().kind, ReducerKind::Scheduled);
    assert_eq!(on_tick::def().kind, ReducerKind::Tick);
    assert_eq!(
        on_tick::def().params,
        [ColumnDef::new("dt", ColumnType::F32)]
    );
    assert_eq!(quarter::def().kind, ReducerKind::Every { millis: 250 });
    assert_eq!(setup::def().kind, ReducerKind::Init);
    assert!(setup::def().params.is_empty());
    assert_eq!(
        relay::def(),
        ReducerDef {
            name: "relay".into(),
            kind: ReducerKind::Region,
            params: vec![
                ColumnDef::new("text", ColumnType::String),
                ColumnDef::new("hops", ColumnType::Option(Box::new(ColumnType::U32))),
            ],
        }
    );
}

#[test]
fn natively_every_host_call_answers_not_in_reducer() {
    assert_eq!(crate::sys::scan(0), Err(Errno::NotInReducer));
    assert_eq!(crate::sys::table_id("hero"), Err(Errno::NotInReducer));
    assert_eq!(
        crate::sys::area_clear(&Identity::SERVER),
        Err(Errno::NotInReducer)
    );
    assert_eq!(
        crate::sys::area_fixed(&Identity::SERVER, 0.0, 0.0, 1.0, 2.0),
        Err(Errno::NotInReducer)
    );
    assert_eq!(
        crate::sys::reducer_context().unwrap_err(),
        Errno::NotInReducer
    );
    assert_eq!(
        crate::sys::region_send("east", "relay", &[0x90]),
        Err(Errno::NotInReducer)
    );
    assert_eq!(
        crate::sys::region_broadcast("relay", &[0x90]),
        Err(Errno::NotInReducer)
    );
    assert_eq!(
        crate::sys::region_list(&mut Vec::new()),
        Err(Errno::NotInReducer)
    );
    let result = std::panic::catch_unwind(Hero::__table_id);
    let msg = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("no reducer is running"), "{msg}");
}

#[test]
fn a_movable_table_says_so_in_its_description_and_others_leave_the_field_out() {
    let expected = TableDef::builder("avatar")
        .column("id", ColumnType::U64)
        .column("pos", ColumnType::Vec2)
        .column("who", ColumnType::Identity)
        .primary_key("id")
        .auto_inc()
        .index("pos", IndexKind::Spatial)
        .index("who", IndexKind::Unique)
        .access(TableAccess::Public)
        .movable(true)
        .build()
        .unwrap();
    assert_eq!(Avatar::def(), expected);
    assert_eq!(
        Avatar::def().identity_column(),
        Some(locus_types::ColumnId(2))
    );
    assert!(!Hero::def().movable);
    // What the describe export hands the host: `"movable": true` for this table, nothing for the others (so a host
    // built before the field existed still reads them all).
    let bytes = rmp_serde::to_vec_named(&Avatar::def()).unwrap();
    assert!(bytes.ends_with(b"\xa7movable\xc3"));
    assert_eq!(rmp_serde::from_slice::<TableDef>(&bytes).unwrap(), expected);
    let hero = rmp_serde::to_vec_named(&Hero::def()).unwrap();
    assert!(!hero.windows(7).any(|w| w == b"movable"));
}

#[test]
fn descriptions_are_named_msgpack() {
    let bytes = rmp_serde::to_vec_named(&Hero::def()).unwrap();
    let back: TableDef = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, Hero::def());
    assert!(
        bytes.windows(7).any(|w| w == b"columns"),
        "field names are included"
    );
}
