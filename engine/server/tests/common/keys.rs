//! A hand-written module for tests that need rows in forms the Rust SDK never writes (shared by `server.rs` and
//! `world.rs`).

/// A hand-written module (WAT): one public table `thing` (`id: U64` primary key, `n: U64`) and two client reducers
/// that keep the key's bytes exactly as the caller wrote them in the arguments `[k]`: `put(k: u64)` inserts the row
/// `[k, k]`, and `remove(k: u64)` deletes the row whose key is `k`. (The Rust SDK always writes the shortest
/// integer form; this module writes whatever form the call used, e.g. `cf` and 8 bytes, as another language's
/// SDK may.)
pub(crate) fn keys_module() -> Vec<u8> {
    keys_module_at(None)
}

/// [`keys_module`] at module version `version` (its `__locus_module_version` export), with an upgrade reducer
/// `upgrade(from: u32, to: u32)` whose WAT body is `hook` (`(param $len i32) (result i32)`). Its memory has the row
/// `[99, 99]` at 2000 (3 bytes), the text "content broken" at 2010 (14 bytes), and the functions `$thing` (the
/// table's id), `$insert`, `$fail` (`reducer_fail`) and `$log`.
#[allow(dead_code, reason = "world.rs only")]
pub(crate) fn keys_module_at(upgrade: Option<(u32, &str)>) -> Vec<u8> {
    use locus_types::{ColumnDef, ColumnType, ReducerDef, ReducerKind, TableAccess, TableDef};
    let table = TableDef::builder("thing")
        .column("id", ColumnType::U64)
        .column("n", ColumnType::U64)
        .primary_key("id")
        .access(TableAccess::Public)
        .build()
        .unwrap();
    let reducer = |name: &str| ReducerDef {
        name: name.into(),
        kind: ReducerKind::Client,
        params: vec![ColumnDef::new("k", ColumnType::U64)],
    };
    let (mut data, mut describe, mut at) = (String::new(), String::new(), 4096u64);
    let mut upgrade_def = Vec::new();
    let mut upgrade_funcs = String::new();
    if let Some((version, hook)) = upgrade {
        let def = ReducerDef {
            name: "upgrade".into(),
            kind: ReducerKind::Upgrade,
            params: vec![
                ColumnDef::new("from", ColumnType::U32),
                ColumnDef::new("to", ColumnType::U32),
            ],
        };
        upgrade_def.push(("reducer", "upgrade", rmp_serde::to_vec_named(&def).unwrap()));
        upgrade_funcs = format!(
            r#"(func (export "__locus_module_version") (result i32) i32.const {version})
  (func (export "__locus_reducer_upgrade") (param $len i32) (result i32)
    {hook})"#
        );
    }
    for (kind, name, bytes) in [
        ("table", "thing", rmp_serde::to_vec_named(&table).unwrap()),
        (
            "reducer",
            "put",
            rmp_serde::to_vec_named(&reducer("put")).unwrap(),
        ),
        (
            "reducer",
            "remove",
            rmp_serde::to_vec_named(&reducer("remove")).unwrap(),
        ),
    ]
    .into_iter()
    .chain(upgrade_def)
    {
        let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
        data.push_str(&format!("(data (i32.const {at}) \"{escaped}\")\n"));
        describe.push_str(&format!(
            "(func (export \"__locus_describe_{kind}_{name}\") (result i64) i64.const {})\n",
            (at << 32) | bytes.len() as u64
        ));
        at += bytes.len() as u64 + 8;
    }
    let wat = format!(
        r#"(module
  (import "locus_v1" "table_id" (func $table_id (param i32 i32 i32) (result i32)))
  (import "locus_v1" "insert" (func $insert (param i32 i32 i32 i32) (result i32)))
  (import "locus_v1" "delete" (func $delete (param i32 i32 i32) (result i32)))
  (import "locus_v1" "reducer_args" (func $args (param i32 i32 i32) (result i32)))
  (import "locus_v1" "reducer_fail" (func $fail (param i32 i32) (result i32)))
  (import "locus_v1" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "thing")
  (data (i32.const 2000) "\92\63\63")
  (data (i32.const 2010) "content broken")
  {upgrade_funcs}
  {data}
  (func (export "__locus_abi_version") (result i32) i32.const 1)
  {describe}
  ;; The id of `thing`.
  (func $thing (result i32)
    (if (call $table_id (i32.const 256) (i32.const 5) (i32.const 300)) (then unreachable))
    (i32.load (i32.const 300)))
  ;; Copy the arguments (fixarray(1), then k) to 1024; return the length of k's bytes (at 1025).
  (func $key (result i32)
    (if (call $args (i32.const 1024) (i32.const 1024) (i32.const 308)) (then unreachable))
    (i32.sub (i32.load (i32.const 308)) (i32.const 1)))
  ;; put(k): insert the row [k, k]: the header 92, then k's bytes twice.
  (func (export "__locus_reducer_put") (param $len i32) (result i32) (local $k i32)
    (local.set $k (call $key))
    (i32.store8 (i32.const 1024) (i32.const 0x92))
    (memory.copy (i32.add (i32.const 1025) (local.get $k)) (i32.const 1025) (local.get $k))
    (i32.ne
      (call $insert (call $thing) (i32.const 1024)
        (i32.add (i32.const 1) (i32.shl (local.get $k) (i32.const 1))) (i32.const 320))
      (i32.const 0)))
  ;; remove(k): delete the row whose key is k.
  (func (export "__locus_reducer_remove") (param $len i32) (result i32)
    (i32.ne (call $delete (call $thing) (i32.const 1025) (call $key)) (i32.const 0)))
)"#
    );
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}
