//! A hand-written module whose server-run reducer always fails (shared by `ops.rs` and `world.rs`).

/// A module with no tables: its tick reducer `on_tick` fails with "no luck" every tick, its client reducer `spin`
/// loops forever, and its client reducer `crash` executes `unreachable` (a bare trap: the module reports no panic).
pub(crate) fn failing_module() -> Vec<u8> {
    use locus_types::{ColumnDef, ColumnType, ReducerDef, ReducerKind};
    let reducers = [
        ReducerDef {
            name: "on_tick".into(),
            kind: ReducerKind::Tick,
            params: vec![ColumnDef::new("dt", ColumnType::F32)],
        },
        ReducerDef {
            name: "spin".into(),
            kind: ReducerKind::Client,
            params: vec![],
        },
        ReducerDef {
            name: "crash".into(),
            kind: ReducerKind::Client,
            params: vec![],
        },
    ];
    let mut data = String::new();
    let mut describe = String::new();
    let mut at = 4096u64;
    for r in &reducers {
        let bytes = rmp_serde::to_vec_named(r).unwrap();
        let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
        data.push_str(&format!("(data (i32.const {at}) \"{escaped}\")\n"));
        describe.push_str(&format!(
            "(func (export \"__locus_describe_reducer_{}\") (result i64) i64.const {})\n",
            r.name,
            (at << 32) | bytes.len() as u64
        ));
        at += bytes.len() as u64 + 8;
    }
    wat::parse_str(format!(
        r#"(module
          (import "locus_v1" "reducer_fail" (func $fail (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "no luck")
          {data}
          (func (export "__locus_abi_version") (result i32) i32.const 1)
          {describe}
          (func (export "__locus_reducer_on_tick") (param i32) (result i32)
            (drop (call $fail (i32.const 0) (i32.const 7)))
            i32.const 1)
          (func (export "__locus_reducer_spin") (param i32) (result i32)
            (loop $l (br $l))
            i32.const 0)
          (func (export "__locus_reducer_crash") (param i32) (result i32)
            unreachable))"#
    ))
    .unwrap()
}
