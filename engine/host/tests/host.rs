//! locus-host integration tests: ABI edge cases with tiny WAT modules, and the SDK test module built from source.

use std::time::Duration;

use locus_host::{
    Budget, CallContext, CallError, HostConfig, Hosted, LoadError, Runtime, UpgradeError,
};
use locus_store::Database;
use locus_types::abi::{AreaCenter, AreaRow, Errno};
use locus_types::migrate::Change;
use locus_types::{
    ColumnDef, ColumnType, Identity, ReducerDef, ReducerKind, TableDef, TableId, Tick, Timestamp,
    Value, codec,
};

// ---- WAT fixtures ---------------------------------------------------------------------------------------------

/// Where fixture modules keep their data: descriptions from 4096 up, scratch below.
const DESC_BASE: usize = 4096;

fn thing_table() -> TableDef {
    TableDef::builder("thing")
        .column("id", ColumnType::U64)
        .column("n", ColumnType::U64)
        .primary_key("id")
        .build()
        .unwrap()
}

fn client(name: &str, params: &[(&str, ColumnType)]) -> ReducerDef {
    ReducerDef {
        name: name.into(),
        kind: ReducerKind::Client,
        params: params
            .iter()
            .map(|(n, ty)| ColumnDef::new(*n, ty.clone()))
            .collect(),
    }
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// The row `[id, n]` of `thing`.
fn thing_row(id: u64, n: u64) -> Vec<u8> {
    codec::encode_row(&thing_table().columns, &[Value::U64(id), Value::U64(n)]).unwrap()
}

/// A module with the given tables, reducers (name, description, WAT body of `(param $len i32) (result i32)`),
/// and extra WAT (data segments, functions). Data at 256: the name "thing"; at 512: the row [1, 5]; at 600: the
/// row [2, 7].
struct Fixture {
    tables: Vec<TableDef>,
    reducers: Vec<(ReducerDef, String)>,
    version: u32,
    extra: String,
    memory: bool,
    import_module: &'static str,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            tables: vec![thing_table()],
            reducers: Vec::new(),
            version: 1,
            extra: String::new(),
            memory: true,
            import_module: "locus_v1",
        }
    }

    fn reducer(mut self, def: ReducerDef, body: &str) -> Fixture {
        self.reducers.push((def, body.into()));
        self
    }

    fn wat(&self) -> String {
        let mut data = String::new();
        let mut funcs = String::new();
        let mut at = DESC_BASE;
        let mut describe = |kind: &str, name: &str, bytes: Vec<u8>| {
            data.push_str(&format!("(data (i32.const {at}) \"{}\")\n", escape(&bytes)));
            funcs.push_str(&format!(
                "(func (export \"__locus_describe_{kind}_{name}\") (result i64) i64.const {})\n",
                ((at as u64) << 32) | bytes.len() as u64
            ));
            at += bytes.len() + 8;
        };
        for t in &self.tables {
            describe("table", &t.name, rmp_serde::to_vec_named(t).unwrap());
        }
        for (r, _) in &self.reducers {
            describe("reducer", &r.name, rmp_serde::to_vec_named(r).unwrap());
        }
        for (r, body) in &self.reducers {
            funcs.push_str(&format!(
                "(func (export \"__locus_reducer_{}\") (param $len i32) (result i32) (local $r i32)\n{body})\n",
                r.name
            ));
        }
        let m = self.import_module;
        format!(
            r#"(module
  (import "{m}" "table_id" (func $table_id (param i32 i32 i32) (result i32)))
  (import "{m}" "insert" (func $insert (param i32 i32 i32 i32) (result i32)))
  (import "{m}" "get" (func $get (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "{m}" "reducer_fail" (func $fail (param i32 i32) (result i32)))
  (import "{m}" "reducer_args" (func $args (param i32 i32 i32) (result i32)))
  (import "{m}" "log" (func $log (param i32 i32 i32) (result i32)))
  {extra}
  {memory}
  (data (i32.const 256) "thing")
  (data (i32.const 512) "{row1}")
  (data (i32.const 600) "{row2}")
  (data (i32.const 700) "boom")
  (func $thing (result i32)
    (if (call $table_id (i32.const 256) (i32.const 5) (i32.const 300)) (then unreachable))
    (i32.load (i32.const 300)))
  (func (export "__locus_abi_version") (result i32) i32.const {version})
  {data}
  {funcs}
)"#,
            memory = if self.memory {
                "(memory (export \"memory\") 1)"
            } else {
                "(memory 1)"
            },
            row1 = escape(&thing_row(1, 5)),
            row2 = escape(&thing_row(2, 7)),
            version = self.version,
            extra = self.extra,
        )
    }

    fn bytes(&self) -> Vec<u8> {
        wat::parse_str(self.wat()).unwrap_or_else(|e| panic!("{e}\n{}", self.wat()))
    }
}

fn runtime() -> Runtime {
    Runtime::new(HostConfig {
        budget: Budget::Time(Duration::from_millis(50)),
        memory_limit: 4 << 20,
        ..HostConfig::default()
    })
    .unwrap()
}

fn fuel_runtime() -> Runtime {
    Runtime::new(HostConfig {
        budget: Budget::Fuel(1_000_000),
        memory_limit: 4 << 20,
        ..HostConfig::default()
    })
    .unwrap()
}

fn ctx() -> CallContext {
    CallContext::server(Tick(1), Timestamp(1_000_000), 42)
}

fn instance(runtime: &Runtime, f: &Fixture) -> Hosted {
    runtime
        .load(&f.bytes())
        .unwrap()
        .hosted(Database::default())
        .unwrap()
}

fn things(inst: &Hosted) -> Vec<Vec<u8>> {
    let db = inst.db();
    let t = db.table(db.table_id("thing").unwrap()).unwrap();
    let mut rows: Vec<Vec<u8>> = t.iter().map(<[u8]>::to_vec).collect();
    rows.sort();
    rows
}

const INSERT_ROW1: &str =
    "(drop (call $insert (call $thing) (i32.const 512) (i32.const 3) (i32.const 320)))";

/// WAT that traps unless `call` (an expression returning an errno) returns `code`.
fn expect(call: &str, code: Errno) -> String {
    format!(
        "(if (i32.ne {call} (i32.const {})) (then unreachable))",
        code.code()
    )
}

/// A module whose `insert1` inserts [1, 5], `trap_after_write` inserts [2, 7] then traps, and `bad_ptr` inserts
/// [2, 7] then passes a pointer past the end of memory.
fn writer() -> Fixture {
    Fixture::new()
        .reducer(client("insert1", &[]), &format!("{INSERT_ROW1} i32.const 0"))
        .reducer(
            client("trap_after_write", &[]),
            "(drop (call $insert (call $thing) (i32.const 600) (i32.const 3) (i32.const 320))) unreachable",
        )
        .reducer(
            client("bad_ptr", &[]),
            "(drop (call $insert (call $thing) (i32.const 600) (i32.const 3) (i32.const 320)))
             (drop (call $insert (call $thing) (i32.const 65530) (i32.const 100) (i32.const 320)))
             i32.const 0",
        )
}

#[test]
fn a_reducer_commits_its_writes() {
    let rt = runtime();
    let mut inst = instance(&rt, &writer());
    let changes = inst.call("insert1", &[0x90], &ctx()).unwrap();
    assert_eq!(changes.row_count(), 1);
    assert_eq!(things(&inst), vec![thing_row(1, 5)]);
}

#[test]
fn a_trap_mid_reducer_rolls_back_its_writes_and_the_instance_carries_on() {
    let rt = runtime();
    let mut inst = instance(&rt, &writer());
    inst.call("insert1", &[0x90], &ctx()).unwrap();
    let err = inst.call("trap_after_write", &[0x90], &ctx()).unwrap_err();
    // A bare trap (no panic reported) is one short line; the backtrace is kept apart, for the server's log.
    assert_eq!(
        err.to_string(),
        "reducer `trap_after_write` trapped: wasm `unreachable` instruction executed"
    );
    assert!(
        matches!(&err, CallError::Trapped { reducer, message, .. } if reducer == "trap_after_write" && message == "wasm `unreachable` instruction executed"),
        "{err:?}"
    );
    let backtrace = err.backtrace().expect("a trap has a backtrace").to_string();
    assert!(
        backtrace.starts_with("wasm backtrace:\n    0: "),
        "{backtrace}"
    );
    assert!(
        backtrace.contains("<wasm function"),
        "a module without names: {backtrace}"
    );
    assert_eq!(err.detailed(), err.to_string());
    assert_eq!(
        things(&inst),
        vec![thing_row(1, 5)],
        "row [2, 7] rolled back"
    );
    // The instance was replaced and still works: it sees the committed row.
    let changes = inst.call("insert1", &[0x90], &ctx()).unwrap();
    assert!(
        changes.is_empty(),
        "[1, 5] already there: the insert failed with an errno"
    );
}

#[test]
fn a_bad_pointer_traps_and_rolls_back_without_harming_the_host() {
    let rt = runtime();
    let mut inst = instance(&rt, &writer());
    let err = inst.call("bad_ptr", &[0x90], &ctx()).unwrap_err();
    match &err {
        CallError::Trapped { message, .. } => {
            assert_eq!(
                message,
                "host call `insert`: buffer 0xfffa+100 lies outside the module's memory"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(things(&inst).is_empty(), "the first insert was rolled back");
    inst.call("insert1", &[0x90], &ctx()).unwrap();
    assert_eq!(things(&inst), vec![thing_row(1, 5)]);
}

/// A module reporting panics as the Rust SDK's hook does (`reducer_panic`, then a trap): `panics` inserts [2, 7],
/// reports "index 9 out of range" at `src/rules.rs:12:5`, and traps; `no_location` reports "lost" with an empty
/// file and traps; `recovers` reports a panic and then returns Ok, committing [2, 7]; `bad_utf8` reports a
/// message that is not UTF-8 (and fails with the errno it got as its status).
fn panicking() -> Fixture {
    Fixture {
        extra: r#"(import "locus_v1" "reducer_panic" (func $panic (param i32 i32 i32 i32 i32 i32) (result i32)))
               (data (i32.const 800) "index 9 out of range")
               (data (i32.const 832) "src/rules.rs")
               (data (i32.const 848) "lost")
               (data (i32.const 856) "\ff\fe")"#
        .into(),
        ..Fixture::new()
    }
        .reducer(
            client("panics", &[]),
            "(drop (call $insert (call $thing) (i32.const 600) (i32.const 3) (i32.const 320)))
             (drop (call $panic (i32.const 800) (i32.const 20) (i32.const 832) (i32.const 12) (i32.const 12) (i32.const 5)))
             unreachable",
        )
        .reducer(
            client("no_location", &[]),
            "(drop (call $panic (i32.const 848) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
             unreachable",
        )
        .reducer(
            client("recovers", &[]),
            "(drop (call $panic (i32.const 800) (i32.const 20) (i32.const 832) (i32.const 12) (i32.const 12) (i32.const 5)))
             (drop (call $insert (call $thing) (i32.const 600) (i32.const 3) (i32.const 320)))
             i32.const 0",
        )
        .reducer(
            client("bad_utf8", &[]),
            "(call $panic (i32.const 856) (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))",
        )
}

#[test]
fn a_reported_panic_is_reported_with_its_message_and_location_and_rolls_back() {
    let rt = runtime();
    let mut inst = instance(&rt, &panicking());
    let err = inst.call("panics", &[0x90], &ctx()).unwrap_err();
    assert_eq!(
        err,
        CallError::Panicked {
            reducer: "panics".into(),
            message: "index 9 out of range".into(),
            location: Some(locus_host::PanicLocation {
                file: "src/rules.rs".into(),
                line: 12,
                column: 5,
            }),
            backtrace: err.backtrace().cloned(),
        }
    );
    assert!(err.backtrace().is_some());
    // What a client is told, and what the operator is.
    assert_eq!(
        err.to_string(),
        "reducer `panics` panicked: index 9 out of range"
    );
    assert_eq!(
        err.detailed(),
        "reducer `panics` panicked at src/rules.rs:12:5: index 9 out of range"
    );
    assert!(things(&inst).is_empty(), "its insert was rolled back");

    let err = inst.call("no_location", &[0x90], &ctx()).unwrap_err();
    assert!(
        matches!(&err, CallError::Panicked { message, location: None, .. } if message == "lost"),
        "{err:?}"
    );
    assert_eq!(err.detailed(), "reducer `no_location` panicked: lost");

    // A panic is only a panic if the call traps after it: a reducer that returns a status is judged by it, and the
    // record does not leak into the next call's trap.
    inst.call("recovers", &[0x90], &ctx()).unwrap();
    assert_eq!(things(&inst), vec![thing_row(2, 7)]);
    let code = inst.call("bad_utf8", &[0x90], &ctx()).unwrap_err();
    assert_eq!(
        code,
        CallError::Trapped {
            reducer: "bad_utf8".into(),
            message: format!(
                "the entry point returned an unknown status {}",
                Errno::BadUtf8.code()
            ),
            backtrace: None,
        }
    );
}

#[test]
fn host_calls_return_errnos_for_runtime_conditions() {
    let get_missing = expect(
        // key 9 (a positive fixint), no such row
        "(call $get (call $thing) (i32.const 800) (i32.const 1) (i32.const 1000) (i32.const 64) (i32.const 320))",
        Errno::NotFound,
    );
    let f = Fixture {
        extra: "(data (i32.const 800) \"\\09\\c1\")".into(),
        ..Fixture::new()
    }
    .reducer(
        client("errnos", &[]),
        &[
            expect("(call $insert (i32.const 99) (i32.const 512) (i32.const 3) (i32.const 320))", Errno::NoSuchTable),
            expect("(call $table_id (i32.const 700) (i32.const 4) (i32.const 320))", Errno::NoSuchTable),
            expect("(call $insert (call $thing) (i32.const 700) (i32.const 4) (i32.const 320))", Errno::BadRow),
            expect("(call $insert (call $thing) (i32.const 512) (i32.const 3) (i32.const 320))", Errno::Ok),
            expect("(call $insert (call $thing) (i32.const 512) (i32.const 3) (i32.const 320))", Errno::UniqueViolation),
            get_missing,
            // 0xc1 is never valid MessagePack: a bad key
            expect("(call $get (call $thing) (i32.const 801) (i32.const 1) (i32.const 1000) (i32.const 64) (i32.const 320))", Errno::BadKey),
            // the row [1, 5] needs 3 bytes: a 2-byte buffer is too small, and the needed length is written
            expect("(call $get (call $thing) (i32.const 513) (i32.const 1) (i32.const 1000) (i32.const 2) (i32.const 320))", Errno::BufferTooSmall),
            "(if (i32.ne (i32.load (i32.const 320)) (i32.const 3)) (then unreachable))".into(),
            expect("(call $get (call $thing) (i32.const 513) (i32.const 1) (i32.const 1000) (i32.const 3) (i32.const 320))", Errno::Ok),
            expect("(call $log (i32.const 9) (i32.const 700) (i32.const 4))", Errno::BadArgument),
            expect("(call $log (i32.const 2) (i32.const 700) (i32.const 4))", Errno::Ok),
            "i32.const 0".into(),
        ]
        .join("\n"),
    );
    let rt = runtime();
    let mut inst = instance(&rt, &f);
    let changes = inst.call("errnos", &[0x90], &ctx()).unwrap();
    assert_eq!(changes.row_count(), 1);
    let logs = inst.drain_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].message, "boom");
    assert_eq!(&*logs[0].reducer, "errnos");
    assert_eq!(logs[0].tick, Tick(1));
}

#[test]
fn failure_status_rolls_back_and_reports_the_modules_message() {
    let f = Fixture::new().reducer(
        client("refuse", &[]),
        &format!("{INSERT_ROW1} (drop (call $fail (i32.const 700) (i32.const 4))) i32.const 1"),
    );
    let rt = runtime();
    let mut inst = instance(&rt, &f);
    let err = inst.call("refuse", &[0x90], &ctx()).unwrap_err();
    assert_eq!(
        err,
        CallError::Failed {
            reducer: "refuse".into(),
            message: "boom".into()
        }
    );
    assert!(things(&inst).is_empty());
}

#[test]
fn arguments_are_checked_against_the_reducers_parameters() {
    let f = Fixture::new().reducer(
        client("takes_u8", &[("x", ColumnType::U8)]),
        // echo the args length back through a failure if reducer_args disagrees with $len
        &format!(
            "{} (if (i32.ne (i32.load (i32.const 320)) (local.get $len)) (then unreachable)) i32.const 0",
            expect("(call $args (i32.const 1000) (i32.const 64) (i32.const 320))", Errno::Ok)
        ),
    );
    let rt = runtime();
    let mut inst = instance(&rt, &f);
    inst.call("takes_u8", &[0x91, 0x07], &ctx()).unwrap();
    for bad in [
        &[0x90][..],
        &[0x91, 0xcd, 0x01, 0x00],
        &[0x91, 0xa1, b'x'],
        &[0x91, 0x07, 0x00],
        &[],
    ] {
        let err = inst.call("takes_u8", bad, &ctx()).unwrap_err();
        assert!(
            matches!(&err, CallError::BadArguments { reducer, .. } if reducer == "takes_u8"),
            "{bad:?}: {err:?}"
        );
    }
    assert_eq!(
        inst.call("nope", &[0x90], &ctx()).unwrap_err(),
        CallError::NoSuchReducer("nope".into())
    );
}

#[test]
fn a_float_parameter_takes_an_int_or_a_float_64_and_the_reducer_gets_a_float_32() {
    // Traps unless its arguments are exactly `91 ca 3f 80 00 00`: [1.0 as float 32].
    let f = Fixture::new().reducer(
        client("takes_f32", &[("x", ColumnType::F32)]),
        &format!(
            "{} (if (i32.ne (i32.load (i32.const 320)) (i32.const 6)) (then unreachable))
             (if (i32.ne (i32.load (i32.const 1000)) (i32.const 0x803fca91)) (then unreachable))
             (if (i32.ne (i32.load16_u (i32.const 1004)) (i32.const 0)) (then unreachable))
             i32.const 0",
            expect(
                "(call $args (i32.const 1000) (i32.const 64) (i32.const 320))",
                Errno::Ok
            )
        ),
    );
    let rt = runtime();
    let mut inst = instance(&rt, &f);
    for given in [
        &[0x91, 0xca, 0x3f, 0x80, 0, 0][..],
        &[0x91, 0x01],
        &[0x91, 0xd3, 0, 0, 0, 0, 0, 0, 0, 1],
        // 1.0 as float 64
        &[0x91, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
    ] {
        inst.call("takes_f32", given, &ctx())
            .unwrap_or_else(|e| panic!("{given:02x?}: {e}"));
    }
    // 2^24 + 1 has no f32; a bool is no number.
    let err = inst
        .call("takes_f32", &[0x91, 0xce, 0x01, 0, 0, 0x01], &ctx())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad arguments for `takes_f32`: column `x` expects F32, found int 16777217, which does not convert to it"
    );
    let err = inst.call("takes_f32", &[0x91, 0xc3], &ctx()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad arguments for `takes_f32`: column `x` expects F32, found bool"
    );
}

#[test]
fn only_client_reducers_can_be_called_by_name() {
    let init = ReducerDef {
        kind: ReducerKind::Init,
        ..client("setup", &[])
    };
    let f = Fixture::new().reducer(init, &format!("{INSERT_ROW1} i32.const 0"));
    let rt = runtime();
    let mut inst = instance(&rt, &f);
    assert!(matches!(
        inst.call("setup", &[0x90], &ctx()).unwrap_err(),
        CallError::NotCallable {
            kind: ReducerKind::Init,
            ..
        }
    ));
    assert_eq!(inst.init(&ctx()).unwrap().row_count(), 1);
}

const SPIN: &str = "(loop $l (br $l)) i32.const 0";

#[test]
fn an_infinite_loop_is_interrupted_by_time_and_the_engine_carries_on() {
    let f = writer().reducer(client("spin", &[]), &format!("{INSERT_ROW1} {SPIN}"));
    let rt = runtime();
    let mut inst = instance(&rt, &f);
    let err = inst.call("spin", &[0x90], &ctx()).unwrap_err();
    assert_eq!(
        err,
        CallError::Interrupted {
            reducer: "spin".into(),
            budget: "time"
        }
    );
    assert!(
        things(&inst).is_empty(),
        "the write before the loop was rolled back"
    );
    inst.call("insert1", &[0x90], &ctx()).unwrap();
    assert_eq!(things(&inst).len(), 1);
}

#[test]
fn an_infinite_loop_is_interrupted_by_fuel() {
    let f = writer().reducer(client("spin", &[]), SPIN);
    let rt = fuel_runtime();
    let mut inst = instance(&rt, &f);
    let err = inst.call("spin", &[0x90], &ctx()).unwrap_err();
    assert_eq!(
        err,
        CallError::Interrupted {
            reducer: "spin".into(),
            budget: "fuel"
        }
    );
    // Fuel is refilled per call.
    inst.call("insert1", &[0x90], &ctx()).unwrap();
    assert_eq!(things(&inst).len(), 1);
}

#[test]
fn a_memory_bomb_hits_the_limit_and_the_instance_is_replaced() {
    // Grow one 64 KiB page at a time until memory.grow fails (or the limiter traps).
    let bomb = format!(
        "{INSERT_ROW1} (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) i32.const 0"
    );
    let f = writer().reducer(client("bomb", &[]), &bomb);
    let rt = runtime();
    let mut inst = instance(&rt, &f);
    let err = inst.call("bomb", &[0x90], &ctx()).unwrap_err();
    assert_eq!(
        err,
        CallError::MemoryLimit {
            reducer: "bomb".into(),
            limit: 4 << 20
        }
    );
    assert!(things(&inst).is_empty());
    // The next call runs in a fresh instance with a fresh (small) memory: it can bomb again, same result.
    assert!(matches!(
        inst.call("bomb", &[0x90], &ctx()).unwrap_err(),
        CallError::MemoryLimit { .. }
    ));
    inst.call("insert1", &[0x90], &ctx()).unwrap();
}

fn load_err(f: &Fixture) -> LoadError {
    runtime().load(&f.bytes()).unwrap_err()
}

#[test]
fn load_rejects_modules_that_do_not_fit_the_abi() {
    let rt = runtime();
    assert!(matches!(
        rt.load(b"\0asm junk").unwrap_err(),
        LoadError::Compile(_)
    ));

    let no_memory = Fixture {
        memory: false,
        ..Fixture::new()
    };
    assert!(matches!(
        load_err(&no_memory),
        LoadError::MissingExport("memory")
    ));

    let v2 = Fixture {
        version: 2,
        ..Fixture::new()
    };
    assert!(matches!(
        load_err(&v2),
        LoadError::AbiVersion {
            found: 2,
            expected: 1
        }
    ));

    let imports_v2 = Fixture {
        import_module: "locus_v2",
        ..Fixture::new()
    };
    let err = load_err(&imports_v2);
    assert!(
        matches!(&err, LoadError::AbiModule { found, .. } if found == "locus_v2"),
        "{err}"
    );

    let unknown = Fixture {
        extra: r#"(import "locus_v1" "teleport" (func))"#.into(),
        ..Fixture::new()
    };
    let err = load_err(&unknown);
    assert!(
        matches!(&err, LoadError::UnknownImport { name, .. } if name == "teleport"),
        "{err}"
    );

    let env_import = Fixture {
        extra: r#"(import "env" "abort" (func))"#.into(),
        ..Fixture::new()
    };
    assert!(matches!(
        load_err(&env_import),
        LoadError::UnknownImport { .. }
    ));

    let wrong_type = Fixture {
        extra: r#"(import "locus_v1" "row_count" (func (param i64)))"#.into(),
        ..Fixture::new()
    };
    let err = load_err(&wrong_type);
    assert!(
        matches!(&err, LoadError::ImportType(m) if m.contains("row_count")),
        "{err}"
    );

    let bad_entry = Fixture {
        extra: r#"(func (export "__locus_reducer_x") (result i32) i32.const 0)"#.into(),
        ..Fixture::new()
    };
    assert!(matches!(load_err(&bad_entry), LoadError::ExportType { .. }));

    let undescribed = Fixture {
        extra: r#"(func (export "__locus_reducer_x") (param i32) (result i32) i32.const 0)"#.into(),
        ..Fixture::new()
    };
    assert!(matches!(load_err(&undescribed), LoadError::Reducer { .. }));

    let garbage_description = Fixture {
        extra: r#"(func (export "__locus_describe_table_junk") (result i64) i64.const 0x0000020000000004)"#
            .into(),
        ..Fixture::new()
    };
    assert!(matches!(
        load_err(&garbage_description),
        LoadError::Describe { .. }
    ));

    let out_of_bounds = Fixture {
        extra: r#"(func (export "__locus_describe_table_oob") (result i64) i64.const 0x00010000000000ff)"#
            .into(),
        ..Fixture::new()
    };
    let err = load_err(&out_of_bounds);
    assert!(
        matches!(&err, LoadError::Describe { reason, .. } if reason.contains("outside")),
        "{err}"
    );

    let mut renamed = thing_table();
    renamed.name = "locus_mine".into();
    let reserved = Fixture {
        tables: vec![renamed],
        ..Fixture::new()
    };
    // The export is named after the description, so the reserved prefix is what fails.
    assert!(matches!(load_err(&reserved), LoadError::ReservedName(_)));

    let mut no_pk = thing_table();
    no_pk.primary_key = locus_types::ColumnId(7);
    let invalid = Fixture {
        tables: vec![no_pk],
        ..Fixture::new()
    };
    assert!(matches!(load_err(&invalid), LoadError::Schema { .. }));

    let bad_tick = Fixture::new().reducer(
        ReducerDef {
            kind: ReducerKind::Tick,
            ..client("t", &[])
        },
        "i32.const 0",
    );
    assert!(matches!(load_err(&bad_tick), LoadError::Reducer { .. }));

    let spinning_describe = Fixture {
        extra: r#"(func (export "__locus_describe_table_spin") (result i64) (loop $l (br $l)) i64.const 0)"#
            .into(),
        ..Fixture::new()
    };
    let err = load_err(&spinning_describe);
    assert!(
        matches!(&err, LoadError::Describe { reason, .. } if reason.contains("interrupt")),
        "{err}"
    );
}

#[test]
fn findings_of_the_abi_review_stay_fixed() {
    let f = Fixture {
        extra: r#"(import "locus_v1" "nearest" (func $nearest (param i32 f32 f32 i32 i32) (result i32)))
                  (import "locus_v1" "index_range" (func $range (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#
            .into(),
        ..Fixture::new()
    }
    .reducer(
        client("edges", &[]),
        &[
            // A spatial query on a table without a spatial index (the store tests cover a huge k).
            expect("(call $nearest (call $thing) (f32.const 0) (f32.const 0) (i32.const -1) (i32.const 320))", Errno::NoSuchIndex),
            // Table ids are checked, then names: a non-UTF-8 name is BadUtf8.
            expect("(call $table_id (i32.const 801) (i32.const 1) (i32.const 320))", Errno::BadUtf8),
            // An inverted range over a column without an ordered index is NoSuchIndex, not an empty result.
            expect("(call $range (call $thing) (i32.const 0) (i32.const 513) (i32.const 1) (i32.const 800) (i32.const 1) (i32.const 5) (i32.const 320))", Errno::NoSuchIndex),
            // An invalid bound kind is BadArgument even when its buffer is out of bounds.
            expect("(call $range (call $thing) (i32.const 1) (i32.const -8) (i32.const 100) (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 320))", Errno::BadArgument),
            "i32.const 0".into(),
        ]
        .join("\n"),
    );
    let f = Fixture {
        extra: format!("{} (data (i32.const 800) \"\\09\\c1\")", f.extra),
        ..f
    };
    let rt = runtime();
    let mut inst = instance(&rt, &f);
    inst.call("edges", &[0x90], &ctx()).unwrap();
}

#[test]
fn the_log_lines_of_a_rolled_back_call_are_kept() {
    // Each writes a row, logs "boom" (at 700), then fails, traps or runs out of time.
    let log_then = |how: &str| {
        format!(
            "{INSERT_ROW1} (drop (call $log (i32.const 1) (i32.const 700) (i32.const 4))) {how}"
        )
    };
    let f = Fixture::new()
        .reducer(client("fails", &[]), &log_then("i32.const 1"))
        .reducer(client("traps", &[]), &log_then("unreachable"))
        .reducer(client("spins", &[]), &log_then(SPIN));
    let rt = runtime();
    let mut inst = instance(&rt, &f);
    for reducer in ["fails", "traps", "spins"] {
        inst.call(reducer, &[0x90], &ctx()).unwrap_err();
    }
    assert!(things(&inst).is_empty(), "every write was rolled back");
    let logs: Vec<(String, String)> = inst
        .drain_logs()
        .into_iter()
        .map(|l| (l.reducer.to_string(), l.message))
        .collect();
    let boom = |r: &str| (r.to_owned(), "boom".to_owned());
    assert_eq!(logs, [boom("fails"), boom("traps"), boom("spins")]);
}

#[test]
fn every_host_call_outside_a_reducer_answers_as_documented() {
    // engine/docs/module-abi.md §7: from a describe export (no reducer running) every call returns NotInReducer,
    // except `table_id` (no table is known yet), `log` (works) and `iter_close` (no iterator is open). The calls come
    // from the ABI list itself, so a new call is checked too. All arguments are 0 (every buffer lies in memory).
    macro_rules! signatures {
        ($( $(#[$doc:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty; )*) => {
            &[$((stringify!($name), &[$(stringify!($ty)),*] as &[&str])),*]
        };
    }
    let calls: &[(&str, &[&str])] = locus_types::for_each_host_call!(signatures);
    let wasm_type = |ty: &str| match ty {
        "u32" => "i32",
        "u64" => "i64",
        "f32" => "f32",
        other => panic!("an ABI argument of type {other}"),
    };
    let mut imports = String::new();
    let mut checks = String::new();
    for (name, params) in calls {
        let types: Vec<&str> = params.iter().map(|t| wasm_type(t)).collect();
        imports.push_str(&format!(
            "(import \"locus_v1\" \"{name}\" (func $h_{name} (param {}) (result i32)))\n",
            types.join(" ")
        ));
        let zeros: String = types.iter().map(|t| format!(" ({t}.const 0)")).collect();
        let code = match *name {
            "table_id" => Errno::NoSuchTable,
            "log" => Errno::Ok,
            "iter_close" => Errno::NoSuchIterator,
            _ => Errno::NotInReducer,
        };
        checks.push_str(&expect(&format!("(call $h_{name}{zeros})"), code));
        checks.push('\n');
    }
    // `index_range` with invalid bounds reads no buffer: out-of-memory pointers do not trap.
    checks.push_str(&expect(
        "(call $h_index_range (i32.const 0) (i32.const 0) (i32.const -8) (i32.const 100) (i32.const -8) (i32.const 100) (i32.const 3) (i32.const 0))",
        Errno::NotInReducer,
    ));
    let thing = rmp_serde::to_vec_named(&thing_table()).unwrap();
    let wat = format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (data (i32.const 2048) "{desc}")
  (func (export "__locus_abi_version") (result i32) i32.const 1)
  (func (export "__locus_describe_table_thing") (result i64)
    {checks}
    i64.const {packed}))"#,
        desc = escape(&thing),
        packed = (2048u64 << 32) | thing.len() as u64,
    );
    // The module loads only if every check passed (a failed one is `unreachable` in the describe export).
    let module = runtime()
        .load(&wat::parse_str(&wat).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(module.def().tables, [thing_table()]);
}

// ---- Areas of interest: `area_follow`, `area_fixed`, `area_clear` ---------------------------------------------

const AREA_IMPORTS: &str = r#"
  (import "locus_v1" "area_follow" (func $area_follow (param i32 i32 i32 i32 f32 f32) (result i32)))
  (import "locus_v1" "area_fixed" (func $area_fixed (param i32 f32 f32 f32 f32) (result i32)))
  (import "locus_v1" "area_clear" (func $area_clear (param i32) (result i32)))"#;

/// A spatial table: `spot (id U64 primary key, pos Vec2 spatial)`.
fn spot_table() -> TableDef {
    TableDef::builder("spot")
        .column("id", ColumnType::U64)
        .column("pos", ColumnType::Vec2)
        .primary_key("id")
        .index("pos", locus_types::IndexKind::Spatial)
        .build()
        .unwrap()
}

#[test]
fn area_calls_return_errnos_in_the_documented_order() {
    // Memory: 800 key 9 then 0xc1 · 810 the str "x" · 900 identity [5; 32] · 940 identity [6; 32] · 1100 "spot".
    let extra = format!(
        r#"{AREA_IMPORTS}
  (data (i32.const 800) "\09\c1")
  (data (i32.const 810) "\a1x")
  (data (i32.const 900) "{five}")
  (data (i32.const 940) "{six}")
  (data (i32.const 1100) "spot")
  (func $spot (result i32)
    (if (call $table_id (i32.const 1100) (i32.const 4) (i32.const 304)) (then unreachable))
    (i32.load (i32.const 304)))"#,
        five = escape(&[5; 32]),
        six = escape(&[6; 32]),
    );
    let follow = |table: &str, key: (u32, u32), enter: &str, leave: &str| {
        format!(
            "(call $area_follow (i32.const 900) {table} (i32.const {}) (i32.const {}) (f32.const {enter}) (f32.const {leave}))",
            key.0, key.1
        )
    };
    let fixed = |x: &str, y: &str, enter: &str, leave: &str| {
        format!(
            "(call $area_fixed (i32.const 900) (f32.const {x}) (f32.const {y}) (f32.const {enter}) (f32.const {leave}))"
        )
    };
    let spot = "(call $spot)";
    let key9 = (800, 1);
    let mut body = vec![
        // NoSuchTable: an unknown id, and the system tables (ids 2 and 3 in this database, checked below).
        expect(
            &follow("(i32.const 99)", key9, "10", "20"),
            Errno::NoSuchTable,
        ),
        expect(
            &follow("(i32.const 2)", key9, "10", "20"),
            Errno::NoSuchTable,
        ),
        expect(
            &follow("(i32.const 3)", key9, "10", "20"),
            Errno::NoSuchTable,
        ),
        // NoSuchIndex (no spatial column) comes before a bad key and bad radii.
        expect(
            &follow("(call $thing)", (801, 1), "nan", "20"),
            Errno::NoSuchIndex,
        ),
        // BadArgument for the key: not MessagePack, trailing bytes, the wrong type, empty.
        expect(&follow(spot, (801, 1), "10", "20"), Errno::BadArgument),
        expect(&follow(spot, (800, 2), "10", "20"), Errno::BadArgument),
        expect(&follow(spot, (810, 2), "10", "20"), Errno::BadArgument),
        expect(&follow(spot, (800, 0), "10", "20"), Errno::BadArgument),
    ];
    for (enter, leave) in [
        ("0", "20"),
        ("-1", "20"),
        ("nan", "20"),
        ("inf", "inf"),
        ("10", "nan"),
        ("10", "inf"),
        ("20", "10"),
        ("10", "512.5"),
    ] {
        body.push(expect(
            &follow(spot, key9, enter, leave),
            Errno::BadArgument,
        ));
        body.push(expect(&fixed("0", "0", enter, leave), Errno::BadArgument));
    }
    body.extend([
        // The largest radius is allowed; the followed row (key 9) need not exist.
        expect(&follow(spot, key9, "512", "512"), Errno::Ok),
        // InvalidPosition (before the radii are looked at).
        expect(&fixed("nan", "0", "10", "20"), Errno::InvalidPosition),
        expect(&fixed("0", "-inf", "10", "20"), Errno::InvalidPosition),
        expect(&fixed("2e9", "0", "10", "20"), Errno::InvalidPosition),
        expect(&fixed("nan", "0", "0", "0"), Errno::InvalidPosition),
        // Clearing: the area set above, then nothing.
        expect("(call $area_clear (i32.const 900))", Errno::Ok),
        expect("(call $area_clear (i32.const 900))", Errno::NotFound),
        expect("(call $area_clear (i32.const 940))", Errno::NotFound),
        // What stays: identity 5 follows spot 9; identity 6 sits at (100, 200).
        expect(&follow(spot, key9, "10", "20"), Errno::Ok),
        expect(
            "(call $area_fixed (i32.const 940) (f32.const 100) (f32.const 200) (f32.const 5) (f32.const 6))",
            Errno::Ok,
        ),
        "i32.const 0".into(),
    ]);
    let f = Fixture {
        tables: vec![thing_table(), spot_table()],
        extra,
        ..Fixture::new()
    }
    .reducer(client("areas", &[]), &body.join("\n"));
    let rt = runtime();
    let mut inst = instance(&rt, &f);
    let db = inst.db();
    let (spot_id, area) = (db.table_id("spot").unwrap(), inst.area_table());
    assert_eq!(db.table_id("locus_schedule"), Some(TableId(2)));
    assert_eq!(db.table_id("locus_area"), Some(area));
    assert_eq!(area, TableId(3));

    let changes = inst.call("areas", &[0x90], &ctx()).unwrap();
    assert_eq!(changes.tables.len(), 1, "only the area table changed");
    let written = &changes.tables[0];
    assert_eq!(written.table, area);
    assert!(written.updates.is_empty() && written.deletes.is_empty());
    let mut rows: Vec<AreaRow> = written
        .inserts
        .iter()
        .map(|r| AreaRow::decode(r).unwrap())
        .collect();
    rows.sort_by_key(|r| r.identity);
    let follows_spot_9 = AreaRow {
        identity: Identity([5; 32]),
        center: AreaCenter::Follow {
            table: spot_id,
            key: vec![0x09],
        },
        enter: 10.0,
        leave: 20.0,
    };
    let fixed_at = AreaRow {
        identity: Identity([6; 32]),
        center: AreaCenter::Fixed(locus_types::Vec2::new(100.0, 200.0)),
        enter: 5.0,
        leave: 6.0,
    };
    assert_eq!(rows, [follows_spot_9.clone(), fixed_at.clone()]);
    assert_eq!(inst.area(Identity([5; 32])), Some(follows_spot_9));
    assert_eq!(inst.area(Identity([6; 32])), Some(fixed_at));
    assert_eq!(inst.area(Identity([7; 32])), None);
}

#[test]
fn area_calls_need_a_reducer_and_trap_on_a_bad_identity_pointer() {
    // A describe export (no reducer running) checks that every area call answers NotInReducer before looking at
    // its other arguments, then describes `thing`; the module loads only if all three did.
    let thing = rmp_serde::to_vec_named(&thing_table()).unwrap();
    let not_in_reducer = [
        "(call $area_follow (i32.const 0) (i32.const 99) (i32.const 0) (i32.const 0) (f32.const nan) (f32.const 0))",
        "(call $area_fixed (i32.const 0) (f32.const nan) (f32.const 0) (f32.const 0) (f32.const 0))",
        "(call $area_clear (i32.const 0))",
    ]
    .map(|c| expect(c, Errno::NotInReducer))
    .join("\n");
    let extra = format!(
        r#"{AREA_IMPORTS}
  (data (i32.const 2048) "{desc}")
  (func (export "__locus_describe_table_thing") (result i64)
    {not_in_reducer}
    i64.const {packed})"#,
        desc = escape(&thing),
        packed = (2048u64 << 32) | thing.len() as u64,
    );
    let f = Fixture {
        tables: Vec::new(),
        extra,
        ..Fixture::new()
    }
    .reducer(
        client("bad_identity", &[]),
        "(drop (call $area_clear (i32.const 65530))) i32.const 0",
    );
    let rt = runtime();
    let mut inst = instance(&rt, &f);
    assert_eq!(inst.def().tables, [thing_table()]);
    let err = inst.call("bad_identity", &[0x90], &ctx()).unwrap_err();
    assert!(
        matches!(&err, CallError::Trapped { message, .. } if message.contains("area_clear") && message.contains("outside the module's memory")),
        "{err}"
    );
}

// ---- Calls between regions: `region_send`, `region_broadcast` ------------------------------------------------

const REGION_IMPORTS: &str = r#"
  (import "locus_v1" "region_send" (func $region_send (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "locus_v1" "region_broadcast" (func $region_broadcast (param i32 i32 i32 i32) (result i32)))"#;

/// The regions of the split world of the tests: `west` and `east` (indexes 0 and 1), the halves of a 4096 m world.
const WEST_EAST: [(&str, [f32; 4]); 2] = [
    ("west", [0.0, 0.0, 2048.0, 4096.0]),
    ("east", [2048.0, 0.0, 4096.0, 4096.0]),
];

/// The database of region `own` (an index into [`WEST_EAST`]) with the server's system tables of a world split into
/// regions, made before any module is instantiated over it (as the server does).
fn split_world_as(own: usize) -> Database {
    use locus_region::message::{outbox_table_def, regions_row, regions_table_def};
    let mut db = Database::default();
    db.create_table(outbox_table_def()).unwrap();
    let regions = db.create_table(regions_table_def()).unwrap();
    let mut tx = db.begin();
    for (i, (name, rect)) in WEST_EAST.into_iter().enumerate() {
        tx.insert(
            regions,
            &regions_row(
                name,
                locus_region::RegionId(i as u16),
                rect.into(),
                i == own,
            ),
        )
        .unwrap();
    }
    drop(tx.commit());
    db
}

/// The database of region `west` of the split world ([`split_world_as`]).
fn split_world() -> Database {
    split_world_as(0)
}

/// A regions table of an older build: names and indexes only, no rectangles. A table of that name with another
/// definition is not the engine's: the world counts as not split.
fn old_regions_table() -> TableDef {
    TableDef::builder(locus_region::message::REGIONS_TABLE)
        .column("name", ColumnType::String)
        .column("index", ColumnType::U32)
        .primary_key("name")
        .build()
        .unwrap()
}

/// The outbox rows of `db`, parsed: `(seq, to, message)`.
fn outbox(
    db: &Database,
) -> Vec<(
    u64,
    locus_region::Destination,
    locus_region::message::RegionMessage,
)> {
    rows_of(db, locus_region::message::OUTBOX_TABLE)
        .iter()
        .map(|row| {
            let (seq, to, payload) = locus_region::message::parse_outbox_row(row).unwrap();
            (seq, to, rmp_serde::from_slice(&payload).unwrap())
        })
        .collect()
}

/// A module with a `Region` reducer `note(text: String)`, a scheduled `later()`, and client reducers that send:
/// `send(region: String)` sends `note("hi")` to `region` and records the errno as the row [1, errno] of `thing`
/// (replacing the last);
/// `broadcast()` sends it to every region and records [2, errno]; `send_then_trap(region)` sends, then traps;
/// `errnos()` checks every errno the two calls return before they look at the database; `bad_ptr()` passes a
/// region name outside memory.
fn regions_fixture() -> Fixture {
    // Memory: 800 "east" · 816 "nowhere" · 832 "note" · 840 "nothing" · 848 "\ff" · 856 the args ["hi"] ·
    // 864 the args [5] · 868 the args [] · 872 "later" · 880 "errnos" · 900 the row [id, errno] · 1024 the reducer's args.
    let extra = format!(
        r#"{REGION_IMPORTS}
  (import "locus_v1" "delete" (func $delete (param i32 i32 i32) (result i32)))
  (data (i32.const 800) "east")
  (data (i32.const 816) "nowhere")
  (data (i32.const 832) "note")
  (data (i32.const 840) "nothing")
  (data (i32.const 848) "\ff")
  (data (i32.const 856) "\91\a2hi")
  (data (i32.const 864) "\91\05")
  (data (i32.const 868) "\90")
  (data (i32.const 872) "later")
  (data (i32.const 880) "errnos")
  (func $record (param $id i32) (param $code i32)
    (i32.store8 (i32.const 900) (i32.const 0x92))
    (i32.store8 (i32.const 901) (local.get $id))
    (i32.store8 (i32.const 902) (local.get $code))
    (drop (call $delete (call $thing) (i32.const 901) (i32.const 1)))
    (if (call $insert (call $thing) (i32.const 900) (i32.const 3) (i32.const 320)) (then unreachable)))
  (func $send (param $len i32) (result i32)
    ;; The args are [region]: 91, a fixstr header, then the name.
    (if (call $args (i32.const 1024) (i32.const 256) (i32.const 320)) (then unreachable))
    (call $region_send (i32.const 1026) (i32.sub (local.get $len) (i32.const 2))
                       (i32.const 832) (i32.const 4) (i32.const 856) (i32.const 4)))"#
    );
    let send = |region: (u32, u32), name: (u32, u32), args: (u32, u32)| {
        format!(
            "(call $region_send (i32.const {}) (i32.const {}) (i32.const {}) (i32.const {}) (i32.const {}) (i32.const {}))",
            region.0, region.1, name.0, name.1, args.0, args.1
        )
    };
    let broadcast = |name: (u32, u32), args: (u32, u32)| {
        format!(
            "(call $region_broadcast (i32.const {}) (i32.const {}) (i32.const {}) (i32.const {}))",
            name.0, name.1, args.0, args.1
        )
    };
    let (east, nowhere, bad) = ((800, 4), (816, 7), (848, 1));
    let (note, nothing, later, errnos) = ((832, 4), (840, 7), (872, 5), (880, 6));
    let (hi, five) = ((856, 4), (864, 2));
    let checks = [
        // BadUtf8: the region's name, then the reducer's.
        expect(&send(bad, note, hi), Errno::BadUtf8),
        expect(&send(east, bad, hi), Errno::BadUtf8),
        expect(&broadcast(bad, hi), Errno::BadUtf8),
        // NoSuchReducer: no reducer of that name, or one of a kind no region may call (scheduled). Before the
        // region is looked up.
        expect(&send(nowhere, nothing, hi), Errno::NoSuchReducer),
        expect(&send(nowhere, later, (868, 1)), Errno::NoSuchReducer),
        expect(&broadcast(nothing, hi), Errno::NoSuchReducer),
        expect(&broadcast(later, (868, 1)), Errno::NoSuchReducer),
        // BadArgument: arguments that are not the reducer's (an int for a string; a client reducer's too).
        expect(&send(nowhere, note, five), Errno::BadArgument),
        expect(&send(nowhere, errnos, hi), Errno::BadArgument),
        expect(&broadcast(note, five), Errno::BadArgument),
        expect(&broadcast(note, (856, 3)), Errno::BadArgument),
        "i32.const 0".to_owned(),
    ]
    .join("\n");
    let scheduled = ReducerDef {
        name: "later".into(),
        kind: ReducerKind::Scheduled,
        params: Vec::new(),
    };
    let region = ReducerDef {
        name: "note".into(),
        kind: ReducerKind::Region,
        params: vec![ColumnDef::new("text", ColumnType::String)],
    };
    Fixture {
        extra,
        ..Fixture::new()
    }
    .reducer(region, "i32.const 0")
    .reducer(scheduled, "i32.const 0")
    .reducer(
        client("send", &[("region", ColumnType::String)]),
        "(call $record (i32.const 1) (call $send (local.get $len))) i32.const 0",
    )
    .reducer(
        client("broadcast", &[]),
        &format!(
            "(call $record (i32.const 2) {}) i32.const 0",
            broadcast(note, hi)
        ),
    )
    .reducer(
        client("send_then_trap", &[("region", ColumnType::String)]),
        "(drop (call $send (local.get $len))) unreachable",
    )
    .reducer(client("errnos", &[]), &checks)
    .reducer(
        client("bad_ptr", &[]),
        &format!("(drop {}) i32.const 0", send((65530, 100), note, hi)),
    )
}

/// The errno a `send`/`broadcast` call of [`regions_fixture`] recorded as row `id` of `thing`.
fn recorded(inst: &Hosted, id: u64) -> Errno {
    let row = things(inst)
        .into_iter()
        .find(|r| r[1] == id as u8)
        .unwrap_or_else(|| panic!("no row {id}"));
    Errno::from_code(u32::from(row[2])).unwrap()
}

#[test]
fn region_calls_write_one_outbox_row_in_the_reducers_transaction() {
    use locus_region::Destination;
    use locus_region::message::{OUTBOX_TABLE, RegionMessage, TO_ALL};
    let rt = runtime();
    let module = rt.load(&regions_fixture().bytes()).unwrap();
    let mut inst = module.hosted(split_world()).unwrap();
    let ada = CallContext {
        sender: Identity([9; 32]),
        ..ctx()
    };
    let note = |sender: Identity| RegionMessage::Call {
        reducer: "note".into(),
        args: vec![0x91, 0xa2, b'h', b'i'],
        sender,
    };
    inst.call("errnos", &[0x90], &ctx()).unwrap();

    // To one region: the row (seq 0 → the outbox's next number, to = the region's index, the payload) and the
    // errno, in one changeset.
    let changes = inst
        .call("send", &rmp_serde::to_vec(&("east",)).unwrap(), &ada)
        .unwrap();
    assert_eq!(recorded(&inst, 1), Errno::Ok);
    let outbox_id = inst.db().table_id(OUTBOX_TABLE).unwrap();
    let written: Vec<_> = changes
        .tables
        .iter()
        .filter(|t| t.table == outbox_id)
        .flat_map(|t| t.inserts.iter())
        .collect();
    assert_eq!(
        written.len(),
        1,
        "the outbox row is in the call's changeset"
    );
    let expected_row = locus_region::message::outbox_row(
        1,
        Destination::Region(locus_region::RegionId(1)),
        &rmp_serde::to_vec(&note(ada.sender)).unwrap(),
    );
    assert_eq!(**written[0], expected_row[..]);
    assert_eq!(
        outbox(inst.db()),
        [(
            1,
            Destination::Region(locus_region::RegionId(1)),
            note(ada.sender)
        )]
    );

    // To every region: `to` is TO_ALL (u32::MAX), the sender the server's here.
    inst.call("broadcast", &[0x90], &ctx()).unwrap();
    assert_eq!(recorded(&inst, 2), Errno::Ok);
    let all = outbox(inst.db());
    assert_eq!(all[1], (2, Destination::All, note(Identity::SERVER)));
    let to_column = codec::decode_row(
        &locus_region::message::outbox_table_def().columns,
        &rows_of(inst.db(), OUTBOX_TABLE)[1],
    )
    .unwrap()[1]
        .clone();
    assert_eq!(to_column, Value::U64(u64::from(TO_ALL)));

    // A region that is not in `locus_regions`: NotFound, and nothing written (the call still commits its errno).
    let mut fresh = module.hosted(split_world()).unwrap();
    fresh
        .call("send", &rmp_serde::to_vec(&("nowhere",)).unwrap(), &ada)
        .unwrap();
    assert_eq!(recorded(&fresh, 1), Errno::NotFound);
    assert!(outbox(fresh.db()).is_empty());

    // A trap after sending, a bad pointer: nothing sent.
    let before = outbox(inst.db());
    let err = inst
        .call(
            "send_then_trap",
            &rmp_serde::to_vec(&("east",)).unwrap(),
            &ada,
        )
        .unwrap_err();
    assert!(matches!(err, CallError::Trapped { .. }), "{err}");
    let err = inst.call("bad_ptr", &[0x90], &ada).unwrap_err();
    assert!(
        matches!(&err, CallError::Trapped { message, .. } if message.contains("region_send") && message.contains("outside the module's memory")),
        "{err}"
    );
    assert_eq!(
        outbox(inst.db()),
        before,
        "a rolled-back call sends nothing"
    );
    // And the numbers of the rolled-back sends are given out again.
    inst.call("broadcast", &[0x90], &ctx()).unwrap();
    assert_eq!(outbox(inst.db())[2].0, 3);
}

#[test]
fn a_world_not_split_into_regions_refuses_region_calls() {
    use locus_region::message::{outbox_table_def, regions_table_def};
    let rt = runtime();
    let module = rt.load(&regions_fixture().bytes()).unwrap();
    // No region tables at all; only one of the two; a table of the name with another definition.
    let only_regions = || {
        let mut db = Database::default();
        db.create_table(regions_table_def()).unwrap();
        db
    };
    let only_outbox = || {
        let mut db = Database::default();
        db.create_table(outbox_table_def()).unwrap();
        db
    };
    let impostor = |def: TableDef| {
        let mut db = Database::default();
        db.create_table(outbox_table_def()).unwrap();
        db.create_table(def).unwrap();
        db
    };
    let mut another = regions_table_def();
    another.columns[1].ty = ColumnType::U64;
    for (what, db) in [
        ("no tables", Database::default()),
        ("no outbox", only_regions()),
        ("no regions", only_outbox()),
        ("another regions table", impostor(another)),
        ("an old regions table", impostor(old_regions_table())),
    ] {
        let mut inst = module.hosted(db).unwrap();
        inst.call("errnos", &[0x90], &ctx())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        inst.call("send", &rmp_serde::to_vec(&("east",)).unwrap(), &ctx())
            .unwrap();
        inst.call("broadcast", &[0x90], &ctx()).unwrap();
        assert_eq!(recorded(&inst, 1), Errno::NotSplit, "{what}");
        assert_eq!(recorded(&inst, 2), Errno::NotSplit, "{what}");
    }
    // The tables made after the module was instantiated (the server splits a running world) count.
    let mut inst = module.hosted(Database::default()).unwrap();
    let split = split_world();
    for name in ["locus_outbox", "locus_regions"] {
        let t = split.table(split.table_id(name).unwrap()).unwrap();
        let id = inst.db_mut().create_table(t.def().clone()).unwrap();
        let mut tx = inst.db_mut().begin();
        for row in t.iter() {
            tx.insert(id, row).unwrap();
        }
        drop(tx.commit());
    }
    inst.call("send", &rmp_serde::to_vec(&("east",)).unwrap(), &ctx())
        .unwrap();
    assert_eq!(recorded(&inst, 1), Errno::Ok);
    assert_eq!(outbox(inst.db()).len(), 1);
}

// ---- Which region this is: `region_list` ------------------------------------------------------------------------

/// A table of bytes: `blob (id U64 primary key, data Bytes)`.
fn blob_table() -> TableDef {
    TableDef::builder("blob")
        .column("id", ColumnType::U64)
        .column("data", ColumnType::Bytes)
        .primary_key("id")
        .build()
        .unwrap()
}

/// A module whose `list()` calls `region_list` with a 1024-byte buffer, records the errno as the row [1, errno] of
/// `thing` and, on success, the list as the row [1, list] of `blob`; `list_small()` calls it with a 4-byte buffer
/// and records the errno as [2, errno] and `out_len` as [3, out_len]; `list_bad_ptr()` passes a buffer outside
/// memory.
fn region_list_fixture() -> Fixture {
    // Memory: 880 "blob" · 900 the row [id, n] · 1000 out_len · 1990 the blob row: 92 01 c5 <len:2> <list>.
    let extra = r#"
  (import "locus_v1" "region_list" (func $region_list (param i32 i32 i32) (result i32)))
  (import "locus_v1" "delete" (func $delete (param i32 i32 i32) (result i32)))
  (data (i32.const 880) "blob")
  (func $blob (result i32)
    (if (call $table_id (i32.const 880) (i32.const 4) (i32.const 300)) (then unreachable))
    (i32.load (i32.const 300)))
  (func $record (param $id i32) (param $code i32)
    (i32.store8 (i32.const 900) (i32.const 0x92))
    (i32.store8 (i32.const 901) (local.get $id))
    (i32.store8 (i32.const 902) (local.get $code))
    (drop (call $delete (call $thing) (i32.const 901) (i32.const 1)))
    (if (call $insert (call $thing) (i32.const 900) (i32.const 3) (i32.const 320)) (then unreachable)))"#
        .to_owned();
    let list = r#"
    (local.set $r (call $region_list (i32.const 1995) (i32.const 1024) (i32.const 1000)))
    (call $record (i32.const 1) (local.get $r))
    (if (i32.eqz (local.get $r)) (then
      (i32.store8 (i32.const 1990) (i32.const 0x92))
      (i32.store8 (i32.const 1991) (i32.const 0x01))
      (i32.store8 (i32.const 1992) (i32.const 0xc5))
      (i32.store8 (i32.const 1993) (i32.shr_u (i32.load (i32.const 1000)) (i32.const 8)))
      (i32.store8 (i32.const 1994) (i32.load (i32.const 1000)))
      (if (call $insert (call $blob) (i32.const 1990) (i32.add (i32.load (i32.const 1000)) (i32.const 5))
                        (i32.const 320))
        (then unreachable))))
    i32.const 0"#;
    let small = r#"
    (i32.store (i32.const 1000) (i32.const 0))
    (call $record (i32.const 2) (call $region_list (i32.const 1995) (i32.const 4) (i32.const 1000)))
    (call $record (i32.const 3) (i32.load (i32.const 1000)))
    i32.const 0"#;
    let mut f = Fixture {
        extra,
        ..Fixture::new()
    }
    .reducer(client("list", &[]), list)
    .reducer(client("list_small", &[]), small)
    .reducer(
        client("list_bad_ptr", &[]),
        "(drop (call $region_list (i32.const 65530) (i32.const 100) (i32.const 1000))) i32.const 0",
    );
    f.tables.push(blob_table());
    f
}

/// The list `list()` of [`region_list_fixture`] stored; `None` if it stored none.
fn stored_list(inst: &Hosted) -> Option<Vec<u8>> {
    let db = inst.db();
    let t = db.table(db.table_id("blob").unwrap()).unwrap();
    let row = t.get(&Value::U64(1)).unwrap()?;
    match &codec::decode_row(&blob_table().columns, row).unwrap()[..] {
        [_, Value::Bytes(data)] => Some(data.to_vec()),
        other => panic!("not a blob row: {other:?}"),
    }
}

#[test]
fn region_list_gives_the_regions_in_order_and_marks_the_own_one() {
    let rt = runtime();
    let module = rt.load(&region_list_fixture().bytes()).unwrap();
    // The documented example (module-abi.md §7, `region_list`): west (own) and east, the halves of a 4096 m world.
    let mut west = module.hosted(split_world_as(0)).unwrap();
    west.call("list", &[0x90], &ctx()).unwrap();
    assert_eq!(recorded(&west, 1), Errno::Ok);
    let mut expected = vec![0x92];
    for (name, index, rect, own) in [
        ("west", 0u8, [0.0f32, 0.0, 2048.0, 4096.0], 0xc3u8),
        ("east", 1, [2048.0, 0.0, 4096.0, 4096.0], 0xc2),
    ] {
        expected.extend([0x97, 0xa4]);
        expected.extend(name.as_bytes());
        expected.push(index);
        for v in rect {
            expected.push(0xca);
            expected.extend(v.to_be_bytes());
        }
        expected.push(own);
    }
    assert_eq!(
        expected[..12],
        [
            0x92, 0x97, 0xa4, b'w', b'e', b's', b't', 0x00, 0xca, 0, 0, 0
        ]
    );
    assert_eq!(stored_list(&west).as_deref(), Some(&expected[..]));

    // East's own row is east; the list is the same otherwise, in index order whatever the table's order.
    let mut east = module.hosted(split_world_as(1)).unwrap();
    east.call("list", &[0x90], &ctx()).unwrap();
    let list = stored_list(&east).unwrap();
    let rows: Vec<(String, u32, f32, f32, f32, f32, bool)> = rmp_serde::from_slice(&list).unwrap();
    assert_eq!(
        rows,
        [
            ("west".into(), 0, 0.0, 0.0, 2048.0, 4096.0, false),
            ("east".into(), 1, 2048.0, 0.0, 4096.0, 4096.0, true),
        ]
    );

    // Too small a buffer: BufferTooSmall and the length needed, nothing else written.
    east.call("list_small", &[0x90], &ctx()).unwrap();
    assert_eq!(recorded(&east, 2), Errno::BufferTooSmall);
    let len = things(&east)
        .into_iter()
        .find(|r| r[1] == 3)
        .map(|r| u64::from(r[2]))
        .unwrap();
    assert_eq!(len, list.len() as u64);

    // A buffer outside memory traps (the list is written there).
    let err = east.call("list_bad_ptr", &[0x90], &ctx()).unwrap_err();
    assert!(
        matches!(&err, CallError::Trapped { message, .. } if message.contains("region_list") && message.contains("outside the module's memory")),
        "{err}"
    );
}

#[test]
fn region_list_is_not_split_without_the_engines_regions_table_and_sees_one_made_later() {
    use locus_region::message::regions_table_def;
    let rt = runtime();
    let module = rt.load(&region_list_fixture().bytes()).unwrap();
    let with = |def: TableDef| {
        let mut db = Database::default();
        db.create_table(def).unwrap();
        db
    };
    for (what, db) in [
        ("no tables", Database::default()),
        ("an old regions table", with(old_regions_table())),
    ] {
        let mut inst = module.hosted(db).unwrap();
        inst.call("list", &[0x90], &ctx()).unwrap();
        inst.call("list_small", &[0x90], &ctx()).unwrap();
        assert_eq!(recorded(&inst, 1), Errno::NotSplit, "{what}");
        assert_eq!(recorded(&inst, 2), Errno::NotSplit, "{what}");
        assert_eq!(stored_list(&inst), None, "{what}");
        // Nothing is written for NotSplit, so a buffer outside memory does not trap.
        inst.call("list_bad_ptr", &[0x90], &ctx()).unwrap();
    }
    // The regions table alone (no outbox) is enough to describe the world; empty, it lists no region.
    let mut inst = module.hosted(with(regions_table_def())).unwrap();
    inst.call("list", &[0x90], &ctx()).unwrap();
    assert_eq!(stored_list(&inst), Some(vec![0x90]));

    // The table made after the module was instantiated (the server makes it before `init`, after loading).
    let mut inst = module.hosted(Database::default()).unwrap();
    let split = split_world_as(1);
    let t = split
        .table(
            split
                .table_id(locus_region::message::REGIONS_TABLE)
                .unwrap(),
        )
        .unwrap();
    let id = inst.db_mut().create_table(t.def().clone()).unwrap();
    let mut tx = inst.db_mut().begin();
    for row in t.iter() {
        tx.insert(id, row).unwrap();
    }
    drop(tx.commit());
    inst.call("list", &[0x90], &ctx()).unwrap();
    assert_eq!(recorded(&inst, 1), Errno::Ok);
    let rows: Vec<(String, u32, f32, f32, f32, f32, bool)> =
        rmp_serde::from_slice(&stored_list(&inst).unwrap()).unwrap();
    assert_eq!(rows[1].0, "east");
    assert!(rows[1].6 && !rows[0].6);
}

// ---- The database lent for each call; upgrades that migrate only what changed --------------------------------

/// The snapshot encoding of `db`: equal bytes, equal database (schema, sequences and rows in storage order).
fn image(db: &Database) -> Vec<u8> {
    locus_log::EncodedSnapshot::new(Tick(0), db)
        .bytes()
        .to_vec()
}

/// The rows of table `name` of `db`, sorted.
fn rows_of(db: &Database, name: &str) -> Vec<Vec<u8>> {
    let t = db.table(db.table_id(name).unwrap()).unwrap();
    let mut rows: Vec<Vec<u8>> = t.iter().map(<[u8]>::to_vec).collect();
    rows.sort();
    rows
}

#[test]
fn a_lent_database_comes_back_rolled_back_from_a_trap_an_interruption_or_a_failure() {
    let f = writer()
        .reducer(
            client("insert2", &[]),
            "(drop (call $insert (call $thing) (i32.const 600) (i32.const 3) (i32.const 320))) i32.const 0",
        )
        .reducer(client("spin", &[]), &format!("{INSERT_ROW1} {SPIN}"))
        .reducer(
            client("refuse", &[]),
            &format!("{INSERT_ROW1} (drop (call $fail (i32.const 700) (i32.const 4))) i32.const 1"),
        );
    let module = runtime().load(&f.bytes()).unwrap();
    for (reducer, first) in [
        ("trap_after_write", false),
        ("spin", true),
        ("refuse", true),
    ] {
        // The owner keeps the database; the instance only borrows it for each call.
        let mut db = Database::default();
        let mut inst = module.instantiate(&mut db).unwrap();
        if !first {
            inst.call(&mut db, "insert1", &[0x90], &ctx()).unwrap();
        }
        let before = image(&db);
        let err = inst.call(&mut db, reducer, &[0x90], &ctx()).unwrap_err();
        let expected = match reducer {
            "trap_after_write" => matches!(err, CallError::Trapped { .. }),
            "spin" => matches!(err, CallError::Interrupted { budget: "time", .. }),
            _ => matches!(err, CallError::Failed { .. }),
        };
        assert!(expected, "{reducer}: {err:?}");
        assert_eq!(
            image(&db),
            before,
            "{reducer}: the database came back with the call's writes rolled back"
        );
        // The owner writes between calls, and the next call runs over the same database and sees it.
        let thing = db_thing(&db);
        let mut tx = db.begin();
        tx.insert(thing, &thing_row(2, 7)).unwrap();
        let _ = tx.commit();
        let changes = inst.call(&mut db, "insert2", &[0x90], &ctx()).unwrap();
        assert!(
            changes.is_empty(),
            "{reducer}: [2, 7] is the owner's, so the module's insert failed"
        );
        let changes = inst.call(&mut db, "insert1", &[0x90], &ctx()).unwrap();
        assert_eq!(changes.row_count(), usize::from(first), "{reducer}");
        assert_eq!(
            rows_of(&db, "thing"),
            vec![thing_row(1, 5), thing_row(2, 7)]
        );
    }
}

fn db_thing(db: &Database) -> TableId {
    db.table_id("thing").unwrap()
}

/// `thing` with a column `m` added.
fn thing_v2() -> TableDef {
    TableDef::builder("thing")
        .column("id", ColumnType::U64)
        .column("n", ColumnType::U64)
        .column("m", ColumnType::U64)
        .primary_key("id")
        .build()
        .unwrap()
}

/// A table of its own sequence, which no upgrade here changes.
fn tally_table() -> TableDef {
    TableDef::builder("tally")
        .column("id", ColumnType::U64)
        .column("v", ColumnType::U64)
        .primary_key("id")
        .auto_inc()
        .build()
        .unwrap()
}

fn with_tables(tables: Vec<TableDef>) -> Fixture {
    let mut f = writer();
    f.tables = tables;
    f
}

#[test]
fn an_upgrade_migrates_only_the_changed_tables_and_a_refused_one_changes_nothing() {
    let rt = runtime();
    let v1 = rt
        .load(&with_tables(vec![thing_table(), tally_table()]).bytes())
        .unwrap();
    let mut world = v1.hosted(Database::default()).unwrap();
    world.call("insert1", &[0x90], &ctx()).unwrap();
    // `tally`: five rows from its sequence, two deleted (holes in its storage), as the owner writes it.
    let tally = world.db.table_id("tally").unwrap();
    let thing = db_thing(&world.db);
    let mut tx = world.db.begin();
    for v in 1..=5u64 {
        let row = codec::encode_row(&tally_table().columns, &[Value::U64(0), Value::U64(v)]);
        tx.insert(tally, &row.unwrap()).unwrap();
    }
    tx.delete(tally, &Value::U64(2)).unwrap();
    tx.delete(tally, &Value::U64(4)).unwrap();
    tx.insert(thing, &thing_row(2, 5)).unwrap();
    let _ = tx.commit();
    let storage = |db: &Database| {
        let t = db.table(tally).unwrap();
        let rows: Vec<(*const u8, Vec<u8>)> = t.iter().map(|r| (r.as_ptr(), r.to_vec())).collect();
        (t.len(), t.next_auto_inc(), rows)
    };
    let tally_before = storage(&world.db);
    assert_eq!((tally_before.0, tally_before.1), (3, 6));
    let before = image(&world.db);

    // Refused: an incompatible schema, then rows that do not fit the new one (a unique index over n = 5 twice),
    // through an upgrade and through recovery with a newer module. The database is byte for byte as it was.
    let mut retyped = thing_table();
    retyped.columns[1].ty = ColumnType::String;
    let mut unique_n = thing_table();
    unique_n.indexes.push(locus_types::IndexDef {
        column: locus_types::ColumnId(1),
        kind: locus_types::IndexKind::Unique,
    });
    for (thing_def, incompatible) in [(retyped, true), (unique_n, false)] {
        let bad = rt
            .load(&with_tables(vec![thing_def, tally_table()]).bytes())
            .unwrap();
        let err = bad.upgrade(&world.instance, &world.db).unwrap_err();
        assert_eq!(
            matches!(err, UpgradeError::Incompatible(_)),
            incompatible,
            "{err}"
        );
        let err = bad
            .instantiate_upgrading(&mut world.db, &ctx())
            .unwrap_err();
        assert_eq!(
            matches!(err, UpgradeError::Incompatible(_)),
            incompatible,
            "{err}"
        );
        assert_eq!(
            image(&world.db),
            before,
            "a refused upgrade changes nothing"
        );
        assert_eq!(storage(&world.db), tally_before);
    }
    // The running instance carries on over the database.
    assert!(world.call("insert1", &[0x90], &ctx()).unwrap().is_empty());

    // Accepted: `thing` gains a column, `extra` is new, `tally` and the system tables are not touched.
    let mut extra = tally_table();
    extra.name = "extra".into();
    let v2 = rt
        .load(&with_tables(vec![thing_v2(), tally_table(), extra.clone()]).bytes())
        .unwrap();
    let upgrade = v2.upgrade(&world.instance, &world.db).unwrap();
    let mut rebuilt: Vec<&str> = upgrade.rebuilt().map(|t| t.name()).collect();
    rebuilt.sort_unstable();
    assert_eq!(rebuilt, ["extra", "thing"]);
    let planned = locus_log::EncodedSnapshot::of_tables(Tick(0), &upgrade.tables(&world.db));
    assert_eq!(image(&world.db), before, "preparing changes nothing");
    let (instance, replaced) = upgrade
        .apply(&mut world.db, &ctx())
        .unwrap()
        .commit(&mut world.db);
    world.instance = instance;
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].def(), &thing_table());
    assert_eq!(
        planned.bytes(),
        image(&world.db),
        "the snapshot written before the swap is the database after it"
    );
    assert_eq!(
        storage(&world.db),
        tally_before,
        "tally: the same rows, at the same addresses, and the same sequence"
    );
    let zero = |id, n| {
        codec::encode_row(
            &thing_v2().columns,
            &[Value::U64(id), Value::U64(n), Value::U64(0)],
        )
        .unwrap()
    };
    assert_eq!(rows_of(&world.db, "thing"), vec![zero(1, 5), zero(2, 5)]);
    assert_eq!(
        world.db.table_id("extra"),
        Some(TableId(5)),
        "after the system tables"
    );
    assert_eq!(world.db.table(TableId(5)).unwrap().def(), &extra);
    // The new instance runs over the same database: its insert of a two-column row is refused (an errno, no
    // change), and the owner's next write to `tally` continues the sequence.
    assert!(world.call("insert1", &[0x90], &ctx()).unwrap().is_empty());
    let mut tx = world.db.begin();
    let row = codec::encode_row(&tally_table().columns, &[Value::U64(0), Value::U64(9)]).unwrap();
    assert_eq!(tx.insert(tally, &row).unwrap(), Value::U64(6));
    let _ = tx.commit();
}

// ---- System tables the server makes itself; tables made movable --------------------------------------------------

/// A system table of the server's own (as a world split into regions keeps its outbox): not the module's.
fn something_table() -> TableDef {
    TableDef::builder("locus_something")
        .column("id", ColumnType::U64)
        .column("note", ColumnType::String)
        .primary_key("id")
        .build()
        .unwrap()
}

fn something_row(id: u64, note: &str) -> Vec<u8> {
    codec::encode_row(
        &something_table().columns,
        &[Value::U64(id), Value::String(note.into())],
    )
    .unwrap()
}

/// Create `locus_something` in `db` as the server would (`Database::create_table`), with two rows; its id.
fn make_something(db: &mut Database) -> TableId {
    let id = db.create_table(something_table()).unwrap();
    let mut tx = db.begin();
    tx.insert(id, &something_row(1, "one")).unwrap();
    tx.insert(id, &something_row(2, "two")).unwrap();
    let _ = tx.commit();
    id
}

/// `writer()` over `tables`, at module version 1, with a reducer `peek` that traps unless `locus_something` is
/// invisible to it: `table_id` does not know the name, and `get` does not take the table's id (`something`).
fn peeking(tables: Vec<TableDef>, something: TableId) -> Fixture {
    let mut f = with_tables(tables).reducer(
        client("peek", &[]),
        &format!(
            "{} {} i32.const 0",
            expect(
                "(call $table_id (i32.const 800) (i32.const 15) (i32.const 300))",
                Errno::NoSuchTable
            ),
            expect(
                &format!(
                    "(call $get (i32.const {}) (i32.const 830) (i32.const 1) (i32.const 1024) (i32.const 64) \
                     (i32.const 1100))",
                    something.0
                ),
                Errno::NoSuchTable
            ),
        ),
    );
    f.extra = "(func (export \"__locus_module_version\") (result i32) i32.const 1)
               (data (i32.const 800) \"locus_something\")
               (data (i32.const 830) \"\\01\")"
        .into();
    f
}

#[test]
fn a_system_table_the_server_made_survives_instantiation_restarts_and_publishes_unseen() {
    let rt = runtime();
    // Made before the first instantiation (a new world: still at the module's version) or after it (the server
    // adds its table to a running world).
    for before in [true, false] {
        let world = |something: TableId| {
            let v1 = rt
                .load(&peeking(vec![thing_table(), tally_table()], something).bytes())
                .unwrap();
            let v2 = rt
                .load(&peeking(vec![thing_v2(), tally_table()], something).bytes())
                .unwrap();
            (v1, v2)
        };
        let mut db = Database::default();
        let (something, (v1, v2)) = if before {
            let id = make_something(&mut db);
            (id, world(id))
        } else {
            // Two module tables and the host's three come first.
            (TableId(5), world(TableId(5)))
        };
        let mut inst = v1.instantiate(&mut db).unwrap();
        if !before {
            assert_eq!(make_something(&mut db), something);
        }
        assert_eq!(locus_host::data_version(&db), 1, "{before}: a new world");
        inst.call(&mut db, "insert1", &[0x90], &ctx()).unwrap();
        inst.call(&mut db, "peek", &[0x90], &ctx()).unwrap();
        let kept = |db: &Database, what: &str| {
            assert_eq!(
                db.table_id("locus_something"),
                Some(something),
                "{before}, {what}: the same id"
            );
            assert_eq!(
                db.table(something).unwrap().def(),
                &something_table(),
                "{before}, {what}"
            );
            assert_eq!(
                rows_of(db, "locus_something"),
                [something_row(1, "one"), something_row(2, "two")],
                "{before}, {what}: the same rows"
            );
        };
        kept(&db, "instantiated");

        // A restart with the same module (recovery), then with a newer one whose schema changed compatibly.
        drop(inst);
        let mut inst = v1.instantiate(&mut db).unwrap();
        inst.call(&mut db, "peek", &[0x90], &ctx()).unwrap();
        let before_image = image(&db);
        let (mut inst, plan) = v2.instantiate_upgrading(&mut db, &ctx()).unwrap();
        assert_ne!(image(&db), before_image);
        assert_eq!(
            plan.changes,
            [Change::AddColumn {
                table: "thing".into(),
                column: "m".into(),
                default: Value::U64(0),
            }],
            "{before}: the system table is not planned"
        );
        kept(&db, "restarted with v2");
        inst.call(&mut db, "peek", &[0x90], &ctx()).unwrap();
        // An older module over the upgraded data is refused for the module's table only, and changes nothing.
        let image_v2 = image(&db);
        match v1.instantiate_upgrading(&mut db, &ctx()) {
            Err(UpgradeError::Incompatible(wrong)) => assert_eq!(
                wrong.iter().map(ToString::to_string).collect::<Vec<_>>(),
                ["column `thing.m` removed"]
            ),
            other => panic!("{before}: {other:?}"),
        }
        assert_eq!(image(&db), image_v2);

        // A publish: v1's world, then v2 published into it.
        let mut fresh = Database::default();
        if before {
            make_something(&mut fresh);
        }
        let mut world = v1.hosted(fresh).unwrap();
        if !before {
            make_something(&mut world.db);
        }
        world.call("insert1", &[0x90], &ctx()).unwrap();
        let plan = world.upgrade(&v2).unwrap();
        assert_eq!(plan.changes.len(), 1, "{before}: {plan:?}");
        kept(&world.db, "published");
        world.call("peek", &[0x90], &ctx()).unwrap();
        // A refused publish leaves it as it was too.
        let refused = v1
            .upgrade(&world.instance, &world.db)
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(refused, UpgradeError::Incompatible(_)));
        kept(&world.db, "refused publish");
    }
}

#[test]
fn making_a_table_movable_or_not_is_a_compatible_change_the_world_takes_on() {
    let rt = runtime();
    let mut movable = spot_table();
    movable.movable = true;
    let v1 = rt
        .load(&with_tables(vec![thing_table(), spot_table()]).bytes())
        .unwrap();
    let v2 = rt
        .load(&with_tables(vec![thing_table(), movable.clone()]).bytes())
        .unwrap();
    assert!(
        v2.def()
            .tables
            .iter()
            .any(|t| t.name == "spot" && t.movable),
        "the host reads the flag from the description"
    );
    assert!(v1.def().tables.iter().all(|t| !t.movable));
    let spot_row = |id: u64| {
        codec::encode_row(
            &spot_table().columns,
            &[
                Value::U64(id),
                Value::Vec2(locus_types::Vec2::new(1.0, 2.0)),
            ],
        )
        .unwrap()
    };
    let spot_def = |db: &Database| {
        db.table(db.table_id("spot").unwrap())
            .unwrap()
            .def()
            .clone()
    };
    let made = || {
        let mut world = v1.hosted(Database::default()).unwrap();
        world.call("insert1", &[0x90], &ctx()).unwrap();
        let spot = world.db.table_id("spot").unwrap();
        let mut tx = world.db.begin();
        tx.insert(spot, &spot_row(1)).unwrap();
        tx.insert(spot, &spot_row(2)).unwrap();
        let _ = tx.commit();
        world
    };
    let changed = |movable: bool| {
        [Change::Movable {
            table: "spot".into(),
            movable,
        }]
    };

    // A publish: accepted; `spot` is rebuilt with the flag, its rows kept; `thing` is not touched.
    let mut world = made();
    let things_before = rows_of(&world.db, "thing");
    let upgrade = v2.upgrade(&world.instance, &world.db).unwrap();
    assert_eq!(upgrade.plan.changes, changed(true));
    assert_eq!(
        upgrade.plan.changes[0].to_string(),
        "table `spot` is now movable between regions"
    );
    let rebuilt: Vec<&str> = upgrade.rebuilt().map(|t| t.name()).collect();
    assert_eq!(rebuilt, ["spot"]);
    let (instance, _) = upgrade
        .apply(&mut world.db, &ctx())
        .unwrap()
        .commit(&mut world.db);
    world.instance = instance;
    assert_eq!(spot_def(&world.db), movable, "the running world knows it");
    assert_eq!(rows_of(&world.db, "spot"), [spot_row(1), spot_row(2)]);
    assert_eq!(rows_of(&world.db, "thing"), things_before);
    // The same module again is no change; a restart with it (recovery) instantiates over the movable table.
    assert!(world.upgrade(&v2).unwrap().is_empty());
    let mut db = world.into_db();
    v2.instantiate(&mut db).unwrap();
    // A snapshot keeps the flag: recovery gets the movable definition back.
    let snapshot = locus_log::EncodedSnapshot::new(Tick(0), &db);
    let parsed = locus_log::format::parse_snapshot(snapshot.bytes()).unwrap();
    assert!(parsed.schema.contains(&movable), "{:?}", parsed.schema);
    assert_eq!(parsed.schema.iter().filter(|t| t.movable).count(), 1);
    // And back: no longer movable is compatible too.
    let mut world = v2.hosted(db).unwrap();
    assert_eq!(world.upgrade(&v1).unwrap().changes, changed(false));
    assert_eq!(spot_def(&world.db), spot_table());

    // A restart with the newer build over v1's data: the same change, carried over.
    let mut db = made().into_db();
    let (_instance, plan) = v2.instantiate_upgrading(&mut db, &ctx()).unwrap();
    assert_eq!(plan.changes, changed(true));
    assert_eq!(spot_def(&db), movable);
    assert_eq!(rows_of(&db, "spot"), [spot_row(1), spot_row(2)]);
    // A restart with the same build (recovery) instantiates over the movable table as it is.
    v2.instantiate(&mut db).unwrap();
}

// ---- Module versions and the upgrade reducer ---------------------------------------------------------------------

/// The ReducerDef of an upgrade reducer `name` with the parameters `(from: u32, to: u32)` (or `params`).
fn upgrade_def(name: &str, params: &[(&str, ColumnType)]) -> ReducerDef {
    ReducerDef {
        kind: ReducerKind::Upgrade,
        ..client(name, params)
    }
}

const VERSIONS: &[(&str, ColumnType)] = &[("from", ColumnType::U32), ("to", ColumnType::U32)];

/// `writer()` at module version `version`, with an upgrade reducer `upgrade` whose body is `body`; the arguments it
/// was given are at 1000 (their length at 1100) once `(call $args (i32.const 1000) (i32.const 64) (i32.const 1100))`
/// ran.
fn versioned(version: u32, body: &str) -> Fixture {
    let mut f = writer().reducer(upgrade_def("upgrade", VERSIONS), body);
    f.extra = format!(
        "(func (export \"__locus_module_version\") (result i32) i32.const {version})
         (data (i32.const 960) \"unexpected arguments\")"
    );
    f
}

/// An upgrade body: insert [2, 7]; fail with "unexpected arguments" unless the arguments are `[from, to]` as
/// fixints; then `tail` (which returns the status, or traps).
fn hook_body(from: u8, to: u8, tail: &str) -> String {
    format!(
        "(drop (call $insert (call $thing) (i32.const 600) (i32.const 3) (i32.const 320)))
         (if (call $args (i32.const 1000) (i32.const 64) (i32.const 1100)) (then unreachable))
         (if (i32.or (i32.ne (i32.load (i32.const 1100)) (i32.const 3))
               (i32.or (i32.ne (i32.load8_u (i32.const 1000)) (i32.const 0x92))
                 (i32.or (i32.ne (i32.load8_u (i32.const 1001)) (i32.const {from}))
                         (i32.ne (i32.load8_u (i32.const 1002)) (i32.const {to})))))
           (then (drop (call $fail (i32.const 960) (i32.const 20))) (return (i32.const 1))))
         {tail}"
    )
}

#[test]
fn a_version_change_runs_the_upgrade_reducer_once_in_the_upgrades_transaction() {
    let rt = runtime();
    let v0 = rt.load(&writer().bytes()).unwrap();
    assert_eq!(v0.version(), 0, "no version export: version 0");
    let mut world = v0.hosted(Database::default()).unwrap();
    assert_eq!(locus_host::data_version(&world.db), 0);
    world.call("insert1", &[0x90], &ctx()).unwrap();

    let v3 = rt
        .load(
            &versioned(
                3,
                &hook_body(
                    0,
                    3,
                    "(drop (call $log (i32.const 2) (i32.const 700) (i32.const 4))) i32.const 0",
                ),
            )
            .bytes(),
        )
        .unwrap();
    assert_eq!(v3.version(), 3);
    assert_eq!(
        v3.upgrade_reducer().map(|r| r.name.as_str()),
        Some("upgrade")
    );
    // A new database starts at the module's version; over data at another version a plain instantiation is
    // refused: bringing the data over is an upgrade's to do.
    let fresh = v3.hosted(Database::default()).unwrap();
    assert_eq!(locus_host::data_version(fresh.db()), 3);
    let mut other = v0.hosted(Database::default()).unwrap();
    assert!(matches!(
        v3.instantiate(other.db_mut()),
        Err(locus_host::InstantiateError::VersionMismatch { data: 0, module: 3 })
    ));
    let before = image(&world.db);

    let upgrade = v3.upgrade(&world.instance, &world.db).unwrap();
    assert_eq!(
        upgrade.plan.changes.last(),
        Some(&Change::Version {
            from: 0,
            to: 3,
            hook: Some("upgrade".into())
        })
    );
    assert_eq!(
        upgrade.plan.changes.last().unwrap().to_string(),
        "module version 0 → 3 (upgrade reducer `upgrade` ran)"
    );
    assert_eq!(image(&world.db), before, "preparing changes nothing");
    let mut applied = upgrade.apply(&mut world.db, &ctx()).unwrap();
    // Between the apply and the commit, the database is the upgraded one: what a snapshot taken then holds.
    let upgraded = image(&world.db);
    assert_eq!(
        rows_of(&world.db, "thing"),
        vec![thing_row(1, 5), thing_row(2, 7)]
    );
    assert_eq!(locus_host::data_version(&world.db), 3);
    let logs = applied.instance_mut().drain_logs();
    assert_eq!(
        logs.iter()
            .map(|l| (&*l.reducer, l.message.as_str()))
            .collect::<Vec<_>>(),
        [("upgrade", "boom")]
    );
    let (instance, _) = applied.commit(&mut world.db);
    world.instance = instance;
    assert_eq!(image(&world.db), upgraded, "the commit keeps exactly that");
    // Once: the same version again is no change at all, and the reducer cannot be called by anyone.
    let same = v3.upgrade(&world.instance, &world.db).unwrap();
    assert!(same.plan.is_empty(), "{:?}", same.plan);
    let (instance, _) = same
        .apply(&mut world.db, &ctx())
        .unwrap()
        .commit(&mut world.db);
    world.instance = instance;
    assert_eq!(image(&world.db), upgraded);
    assert!(matches!(
        world.call("upgrade", &[0x92, 0x00, 0x03], &ctx()),
        Err(CallError::NotCallable {
            kind: ReducerKind::Upgrade,
            ..
        })
    ));
}

#[test]
fn a_failing_or_trapping_upgrade_reducer_refuses_the_upgrade_and_changes_nothing() {
    let rt = runtime();
    let v0 = rt.load(&writer().bytes()).unwrap();
    let mut world = v0.hosted(Database::default()).unwrap();
    world.call("insert1", &[0x90], &ctx()).unwrap();
    let before = image(&world.db);
    // Each also adds a table (`extra`) and a column to `thing`, so the schema's migration is undone too.
    let mut extra = tally_table();
    extra.name = "extra".into();
    for (tail, expected) in [
        (
            "(drop (call $fail (i32.const 700) (i32.const 4))) i32.const 1",
            "reducer `upgrade` failed: boom",
        ),
        (
            "unreachable",
            "reducer `upgrade` trapped: wasm `unreachable` instruction executed",
        ),
        (
            SPIN,
            "reducer `upgrade` was stopped: it exceeded its time budget",
        ),
    ] {
        let mut f = versioned(2, &hook_body(0, 2, tail));
        f.tables = vec![thing_v2(), extra.clone()];
        let v2 = rt.load(&f.bytes()).unwrap();
        let err = v2
            .upgrade(&world.instance, &world.db)
            .unwrap()
            .apply(&mut world.db, &ctx())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the upgrade from module version 0 to 2 failed: {expected}")
        );
        assert!(
            matches!(err, UpgradeError::Hook { from: 0, to: 2, .. }),
            "{err:?}"
        );
        assert_eq!(image(&world.db), before, "{expected}: nothing changed");
        assert_eq!(locus_host::data_version(&world.db), 0);
        // The same through a restart's instantiation.
        let err = v2.instantiate_upgrading(&mut world.db, &ctx()).unwrap_err();
        assert!(matches!(err, UpgradeError::Hook { .. }), "{err:?}");
        assert_eq!(image(&world.db), before);
    }
    // The old instance carries on over its data.
    assert!(world.call("insert1", &[0x90], &ctx()).unwrap().is_empty());
    // A hook that failed says why in the module log too.
    let mut f = versioned(
        2,
        "(drop (call $log (i32.const 0) (i32.const 700) (i32.const 4))) (drop (call $fail (i32.const 700) (i32.const 4))) i32.const 1",
    );
    f.tables = vec![thing_table()];
    let v2 = rt.load(&f.bytes()).unwrap();
    match v2
        .upgrade(&world.instance, &world.db)
        .unwrap()
        .apply(&mut world.db, &ctx())
    {
        Err(UpgradeError::Hook { logs, .. }) => {
            assert_eq!(logs.len(), 1);
            assert_eq!(
                (&*logs[0].reducer, logs[0].message.as_str()),
                ("upgrade", "boom")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reverted_upgrade_puts_back_the_schema_the_rows_and_the_version() {
    let rt = runtime();
    let v0 = rt
        .load(&with_tables(vec![thing_table(), tally_table()]).bytes())
        .unwrap();
    let mut world = v0.hosted(Database::default()).unwrap();
    world.call("insert1", &[0x90], &ctx()).unwrap();
    let before = image(&world.db);
    let mut extra = tally_table();
    extra.name = "extra".into();
    let mut f = versioned(5, &hook_body(0, 5, "i32.const 0"));
    f.tables = vec![thing_v2(), tally_table(), extra];
    let v5 = rt.load(&f.bytes()).unwrap();
    let applied = v5
        .upgrade(&world.instance, &world.db)
        .unwrap()
        .apply(&mut world.db, &ctx())
        .unwrap();
    assert_ne!(image(&world.db), before);
    assert_eq!(locus_host::data_version(&world.db), 5);
    applied.revert(&mut world.db);
    assert_eq!(image(&world.db), before, "as it was, byte for byte");
    assert_eq!(world.db.table_id("extra"), None);
    assert_eq!(locus_host::data_version(&world.db), 0);
    assert!(world.call("insert1", &[0x90], &ctx()).unwrap().is_empty());
    // Without an upgrade reducer the version is still recorded.
    let mut f = with_tables(vec![thing_table(), tally_table()]);
    f.extra = "(func (export \"__locus_module_version\") (result i32) i32.const 4)".into();
    let v4 = rt.load(&f.bytes()).unwrap();
    let plan = world.upgrade(&v4).unwrap();
    assert_eq!(
        plan.changes,
        [Change::Version {
            from: 0,
            to: 4,
            hook: None
        }]
    );
    assert_eq!(locus_host::data_version(&world.db), 4);
}

#[test]
fn upgrade_reducers_and_versions_are_checked_at_load() {
    let rt = runtime();
    let err = |f: Fixture| rt.load(&f.bytes()).unwrap_err().to_string();
    assert_eq!(
        err(writer().reducer(
            upgrade_def("up", &[("from", ColumnType::U32)]),
            "i32.const 0"
        )),
        "reducer `up`: an upgrade reducer takes two u32 parameters, the data's version and the module's"
    );
    assert_eq!(
        err(writer()
            .reducer(upgrade_def("up", VERSIONS), "i32.const 0")
            .reducer(upgrade_def("up2", VERSIONS), "i32.const 0")),
        "reducers `up` and `up2` are both Upgrade; a module has at most one"
    );
    let mut f = writer();
    f.extra = "(func (export \"__locus_module_version\") (result i64) i64.const 4)".into();
    assert_eq!(
        err(f),
        "export `__locus_module_version` must be a function () -> i32"
    );
    let mut f = writer();
    f.extra = "(func (export \"__locus_module_version\") (result i32) unreachable)".into();
    assert!(err(f).starts_with("export `__locus_module_version` gave no valid description"),);
}

// ---- The SDK test module, built from source -------------------------------------------------------------------

mod sdk {
    use std::path::Path;
    use std::sync::LazyLock;

    use locus_host::{CallContext, CallError, HostConfig, Hosted, Runtime, build};
    use locus_region::message::RegionMessage;
    use locus_region::{Destination, RegionId};
    use locus_store::Database;
    use locus_test_module as tm;
    use locus_types::abi::{AreaCenter, AreaRow, LogLevel};
    use locus_types::{Identity, ReducerKind, Tick, Timestamp, Vec2, codec};

    /// The test module, built once per test run with cargo (its own target dir: the outer cargo holds the lock on
    /// `target/debug`).
    static WASM: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        build::build_module(
            &workspace,
            "locus-test-module",
            &locus_host::build::module_target_dir(&workspace, "wasm-modules"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    });

    fn instance(config: HostConfig) -> Hosted {
        Runtime::new(config)
            .unwrap()
            .load(&WASM)
            .unwrap()
            .hosted(Database::default())
            .unwrap()
    }

    fn as_client(who: u8) -> CallContext {
        CallContext {
            sender: Identity([who; 32]),
            tick: Tick(3),
            timestamp: Timestamp(5_000_000),
            rng_seed: 42,
        }
    }

    fn server() -> CallContext {
        CallContext::server(Tick(3), Timestamp(5_000_000), 42)
    }

    /// Call through the module crate's own typed encoder (`tm::spawn::call(..)` etc.), as a Rust client would.
    fn call(
        inst: &mut Hosted,
        c: locus_module::ReducerCall,
    ) -> Result<locus_store::Changeset, CallError> {
        inst.call(c.reducer, &c.args, &as_client(1))
    }

    fn rows<T: serde::de::DeserializeOwned>(inst: &Hosted, table: &str) -> Vec<T> {
        let db = inst.db();
        let t = db.table(db.table_id(table).unwrap()).unwrap();
        t.iter()
            .map(|r| rmp_serde::from_slice(r).unwrap())
            .collect()
    }

    fn events(inst: &Hosted) -> Vec<String> {
        let mut e: Vec<tm::EventLog> = rows(inst, "event_log");
        e.sort_by_key(|e| e.id);
        e.into_iter().map(|e| e.text).collect()
    }

    fn counter(inst: &Hosted, name: &str) -> Option<i64> {
        rows::<tm::Counter>(inst, "counter")
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.value)
    }

    #[test]
    fn the_description_lists_every_table_and_reducer_kind() {
        let inst = instance(HostConfig::default());
        let def = inst.def();
        let tables: Vec<&str> = def.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(tables, ["counter", "event_log", "mover", "player"]);
        let player = &def.tables[3];
        assert_eq!(player, &<tm::Player as locus_module::Table>::def());
        let kind = |n: &str| def.reducers.iter().find(|r| r.name == n).unwrap().kind;
        assert_eq!(kind("init"), ReducerKind::Init);
        assert_eq!(kind("on_connect"), ReducerKind::ClientConnected);
        assert_eq!(kind("on_disconnect"), ReducerKind::ClientDisconnected);
        assert_eq!(kind("on_tick"), ReducerKind::Tick);
        assert_eq!(kind("upgrade"), ReducerKind::Upgrade);
        assert_eq!(def.version, 7, "locus_module::version!(7)");
        assert_eq!(
            kind("every_half_second"),
            ReducerKind::Every { millis: 500 }
        );
        assert_eq!(kind("ping"), ReducerKind::Scheduled);
        assert_eq!(kind("spawn"), ReducerKind::Client);
        assert_eq!(kind("region_note"), ReducerKind::Region);
    }

    #[test]
    fn the_reference_run_produces_the_documented_state() {
        let mut inst = instance(HostConfig::default());
        let seven = CallContext {
            sender: Identity([7; 32]),
            ..server()
        };
        inst.init(&server()).unwrap();
        inst.client_connected(&seven).unwrap();
        inst.client_disconnected(&seven).unwrap();
        inst.tick(0.05, &server()).unwrap();
        for (name, x, y, level) in [
            ("alice", 0.0, 0.0, 5),
            ("bob", 3.0, 4.0, 7),
            ("carol", 10.0, 0.0, 12),
            ("dave", -1.0, -1.0, 20),
        ] {
            call(&mut inst, tm::spawn::call(name.into(), x, y, level)).unwrap();
        }
        call(&mut inst, tm::move_player::call(2, 3.5, 4.5)).unwrap();
        call(&mut inst, tm::rename::call(1, "alicia".into())).unwrap();
        call(&mut inst, tm::damage::call(1, 30)).unwrap();
        call(&mut inst, tm::damage::call(1, 80)).unwrap();
        call(
            &mut inst,
            tm::set_gear::call(2, vec![1, 2], tm::Gear::Potions(vec![3])),
        )
        .unwrap();
        call(
            &mut inst,
            tm::probe::call(0.0, 0.0, 5.0, 5, 2, "bob".into()),
        )
        .unwrap();
        let sevens = "07".repeat(32);
        let expected = format!(
            "init\nconnected {sevens}\ndisconnected {sevens}\nspawn 1 alice\nspawn 2 bob\nspawn 3 carol\nspawn 4 dave\n\
             rename 1 alicia\ndamage 1 hp=Some(70)\ndamage 1 hp=None\nset_gear 2 bag=[1, 2] gear=Potions([3])\n\
             count=4\niter=[1, 2, 3, 4]\nwithin=[1, 4]\nwithin_box=[1, 2, 4]\nnearest=[1, 4]\nfilter=[1]\n\
             range=[(1, 5), (2, 7), (3, 12)]\nrange_incl=[(1, 5), (2, 7), (3, 12)]\n\
             range_from=[(1, 5), (2, 7), (3, 12), (4, 20)]\nrange_to=[]\npk_range=[2, 3, 4]\n\
             name_range=[\"bob\", \"carol\", \"dave\"]\nfind=2 bob 7"
        );
        assert_eq!(events(&inst).join("\n"), expected);
        for (c, v) in [
            ("init", 1),
            ("connected", 1),
            ("disconnected", 1),
            ("ticks", 1),
            ("last_dt_micros", 50_000),
        ] {
            assert_eq!(counter(&inst, c), Some(v), "counter {c}");
        }
        let mut players: Vec<tm::Player> = rows(&inst, "player");
        players.sort_by_key(|p| p.id);
        let bob = &players[1];
        assert_eq!((bob.name.as_str(), bob.pos), ("bob", Vec2::new(3.5, 4.5)));
        assert_eq!(bob.owner, Identity([1; 32]));
        assert_eq!(bob.bag, vec![1, 2]);
        assert_eq!(bob.joined, Timestamp(5_000_000));
        assert_eq!(players[0].hp, None);
        // A unique violation is the reducer's error, and changes nothing.
        let before = events(&inst);
        let err = call(&mut inst, tm::spawn::call("bob".into(), 0.0, 0.0, 1)).unwrap_err();
        assert!(
            matches!(&err, CallError::Failed { message, .. } if message.contains("unique")),
            "{err}"
        );
        assert_eq!(events(&inst), before);
    }

    #[test]
    fn failures_roll_back_everything_they_wrote() {
        let mut inst = instance(HostConfig {
            memory_limit: 32 << 20,
            ..HostConfig::default()
        });
        call(&mut inst, tm::spawn::call("a".into(), 0.0, 0.0, 1)).unwrap();
        let before = (events(&inst), rows::<tm::Counter>(&inst, "counter"));

        let err = call(&mut inst, tm::fail_after_write::call("x".into())).unwrap_err();
        assert_eq!(
            err,
            CallError::Failed {
                reducer: "fail_after_write".into(),
                message: "deliberate failure: x".into()
            }
        );
        let err = call(&mut inst, tm::panic_after_write::call("y".into())).unwrap_err();
        assert!(matches!(err, CallError::Panicked { .. }), "{err}");
        let logs = inst.drain_logs();
        assert!(
            logs.iter()
                .any(|l| l.level == LogLevel::Error && l.message.contains("deliberate panic: y")),
            "{logs:?}"
        );
        let err = call(&mut inst, tm::spin::call()).unwrap_err();
        assert!(
            matches!(err, CallError::Interrupted { budget: "time", .. }),
            "{err}"
        );
        let err = call(&mut inst, tm::memory_bomb::call()).unwrap_err();
        assert!(
            matches!(err, CallError::MemoryLimit { limit, .. } if limit == 32 << 20),
            "{err}"
        );

        assert_eq!(
            (events(&inst), rows::<tm::Counter>(&inst, "counter")),
            before
        );
        // The replaced instance works, and its id sequence did not keep the rolled-back values.
        call(&mut inst, tm::spawn::call("b".into(), 1.0, 1.0, 1)).unwrap();
        assert_eq!(events(&inst).last().unwrap(), "spawn 2 b");
    }

    /// Where `panic_after_write` panics: the line and column of its `panic!` in the test module's source.
    fn panic_site() -> (u32, u32) {
        let source = include_str!("../test-module/src/lib.rs");
        let (i, line) = source
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains("panic!(\"deliberate panic: {text}\")"))
            .expect("the test module panics");
        (i as u32 + 1, line.find("panic!").unwrap() as u32 + 1)
    }

    #[test]
    fn a_panic_reaches_the_caller_as_its_message_and_location_and_the_log_gets_a_clean_backtrace() {
        let mut inst = instance(HostConfig::default());
        let err = call(&mut inst, tm::panic_after_write::call("y".into())).unwrap_err();
        let (line, column) = panic_site();
        let CallError::Panicked {
            reducer,
            message,
            location: Some(location),
            backtrace: Some(backtrace),
        } = &err
        else {
            panic!("a panic with a location and a backtrace: {err:?}")
        };
        assert_eq!(reducer, "panic_after_write");
        assert_eq!(message, "deliberate panic: y");
        assert_eq!(
            (location.file.as_str(), location.line, location.column),
            ("engine/host/test-module/src/lib.rs", line, column)
        );
        assert_eq!(
            err.to_string(),
            "reducer `panic_after_write` panicked: deliberate panic: y"
        );
        assert_eq!(
            err.detailed(),
            format!(
                "reducer `panic_after_write` panicked at engine/host/test-module/src/lib.rs:{line}:{column}: \
                 deliberate panic: y"
            )
        );
        // The backtrace starts at the function that panicked (the panic runtime's frames are left out) and names
        // every function demangled, without hashes.
        let names: Vec<&str> = backtrace
            .frames
            .iter()
            .map(|f| f.function.as_str())
            .collect();
        assert_eq!(
            names[..3],
            [
                "locus_test_module::panic_after_write",
                "locus_test_module::panic_after_write::__invoke",
                "locus_module::reducer::run_reducer",
            ],
            "{backtrace}"
        );
        assert_eq!(names.last(), Some(&"__locus_reducer_panic_after_write"));
        let text = backtrace.to_string();
        for mangled in ["_ZN", "_R", "[", "panicking", "__rustc"] {
            assert!(!text.contains(mangled), "{mangled} in {text}");
        }
        let hashed = |segment: &str| {
            segment.len() == 17
                && segment.starts_with('h')
                && segment[1..].bytes().all(|b| b.is_ascii_hexdigit())
        };
        assert!(
            !names.iter().any(|n| n.split("::").any(hashed)),
            "a hash in {text}"
        );
        // The module log has the hook's line, with the location.
        let logs = inst.drain_logs();
        let expected = format!(
            "panicked at engine/host/test-module/src/lib.rs:{line}:{column}: deliberate panic: y"
        );
        assert!(
            logs.iter()
                .any(|l| l.level == LogLevel::Error && l.message == expected),
            "{logs:?}"
        );
    }

    #[test]
    fn rng_is_deterministic_per_seed_and_logs_carry_levels() {
        let mut inst = instance(HostConfig::default());
        call(&mut inst, tm::roll_dice::call(4)).unwrap();
        assert_eq!(
            events(&inst),
            [
                "rng=[12578764544318200737, 17529487244874322312, 7886285670807131020, 11572758976476374866] die=5"
            ]
        );
        call(&mut inst, tm::log_all::call("z".into())).unwrap();
        let logs = inst.drain_logs();
        let levels: Vec<(LogLevel, &str)> =
            logs.iter().map(|l| (l.level, l.message.as_str())).collect();
        assert_eq!(
            levels,
            [
                (LogLevel::Error, "error z"),
                (LogLevel::Warn, "warn z"),
                (LogLevel::Info, "info z"),
                (LogLevel::Debug, "debug z"),
                (LogLevel::Trace, "trace z"),
            ]
        );
        assert!(
            logs.iter()
                .all(|l| &*l.reducer == "log_all" && l.tick == Tick(3))
        );
    }

    #[test]
    fn schedules_run_when_due_and_periodic_reducers_keep_time() {
        let mut inst = instance(HostConfig::default());
        call(&mut inst, tm::schedule_ping::call(1_000, "later".into())).unwrap();
        call(
            &mut inst,
            tm::schedule_ping::call(2_000, "cancelled".into()),
        )
        .unwrap();
        let cancel_id = counter(&inst, "last_schedule_id").unwrap() as u64;
        call(&mut inst, tm::cancel_ping::call(cancel_id)).unwrap();
        call(&mut inst, tm::schedule_and_cancel::call("never".into())).unwrap();
        call(&mut inst, tm::schedule_wrong::call()).unwrap();

        let t0 = 5_000_000;
        // Not yet due; the periodic reducer's clock starts here.
        assert!(inst.run_due(Timestamp(t0), &server()).is_empty());
        let runs = inst.run_due(Timestamp(t0 + 600_000), &server());
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].reducer, "every_half_second");
        let runs = inst.run_due(Timestamp(t0 + 1_000_000), &server());
        let names: Vec<&str> = runs.iter().map(|r| r.reducer.as_str()).collect();
        assert_eq!(names, ["every_half_second", "ping"]);
        assert!(runs.iter().all(|r| r.error.is_none()));
        // Three periods later, the periodic reducer runs once (missed periods are skipped); no ping is left.
        let runs = inst.run_due(Timestamp(t0 + 10_000_000), &server());
        assert_eq!(runs.len(), 1);
        assert_eq!(counter(&inst, "every_500ms"), Some(3));
        assert_eq!(counter(&inst, "pings"), Some(1));
        let evs = events(&inst);
        assert!(evs.contains(&"ping later".to_owned()), "{evs:?}");
        assert!(
            !evs.iter()
                .any(|e| e.contains("ping cancelled") || e == "ping never")
        );
        assert!(
            evs.iter()
                .any(|e| e.starts_with("schedule_wrong cannot schedule `spawn`")),
            "{evs:?}"
        );
        let db = inst.db();
        assert_eq!(
            db.table(db.table_id("locus_schedule").unwrap())
                .unwrap()
                .len(),
            0
        );
    }

    /// The `locus_area` rows of a changeset, decoded: (inserts, updates as (old, new), deletes).
    #[allow(clippy::type_complexity)]
    fn area_changes(
        inst: &Hosted,
        changes: &locus_store::Changeset,
    ) -> (Vec<AreaRow>, Vec<(AreaRow, AreaRow)>, Vec<AreaRow>) {
        let decode = |r: &[u8]| AreaRow::decode(r).expect("a valid area row");
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for t in changes
            .tables
            .iter()
            .filter(|t| t.table == inst.area_table())
        {
            out.0.extend(t.inserts.iter().map(|r| decode(r)));
            out.1
                .extend(t.updates.iter().map(|u| (decode(&u.old), decode(&u.new))));
            out.2.extend(t.deletes.iter().map(|r| decode(r)));
        }
        out
    }

    /// Every row of `locus_area` in the database, decoded.
    fn areas(inst: &Hosted) -> Vec<AreaRow> {
        let t = inst.db().table(inst.area_table()).unwrap();
        let mut rows: Vec<AreaRow> = t.iter().map(|r| AreaRow::decode(r).unwrap()).collect();
        rows.sort_by_key(|r| r.identity);
        rows
    }

    fn following(id: u64, enter: f32, leave: f32, inst: &Hosted) -> AreaRow {
        let player = inst.db().table_id("player").unwrap();
        // The key as a `player.id` value is in a row: a positive fixint for small ids.
        let key = codec::encode_row(
            &[locus_types::ColumnDef::new(
                "id",
                locus_types::ColumnType::U64,
            )],
            &[locus_types::Value::U64(id)],
        )
        .unwrap()[1..]
            .to_vec();
        AreaRow {
            identity: Identity([1; 32]),
            center: AreaCenter::Follow { table: player, key },
            enter,
            leave,
        }
    }

    #[test]
    fn a_follow_area_is_the_documented_row_of_locus_area() {
        let mut inst = instance(HostConfig::default());
        let area_id = inst.db().table_id("locus_area").unwrap();
        assert_eq!(inst.area_table(), area_id);
        assert_eq!(
            inst.db().table(area_id).unwrap().def(),
            &locus_types::abi::area_table_def()
        );
        // Player 1 does not exist yet: the area may follow it anyway.
        let changes = call(&mut inst, tm::follow::call(1, 64.0, 72.0)).unwrap();
        assert_eq!(changes.tables.len(), 1, "only locus_area is written");
        let expected = following(1, 64.0, 72.0, &inst);
        assert_eq!(
            expected.center,
            AreaCenter::Follow {
                table: inst.db().table_id("player").unwrap(),
                key: vec![0x01]
            }
        );
        assert_eq!(
            area_changes(&inst, &changes),
            (vec![expected.clone()], vec![], vec![])
        );
        assert_eq!(areas(&inst), std::slice::from_ref(&expected));
        assert_eq!(inst.area(Identity([1; 32])), Some(expected.clone()));

        // Setting it again replaces the row: an update in the changeset.
        let changes = call(&mut inst, tm::follow::call(300, 10.0, 20.0)).unwrap();
        let moved = following(300, 10.0, 20.0, &inst);
        assert_eq!(
            area_changes(&inst, &changes),
            (vec![], vec![(expected, moved.clone())], vec![])
        );
        assert_eq!(areas(&inst), std::slice::from_ref(&moved));

        // The same area again changes nothing.
        let changes = call(&mut inst, tm::follow::call(300, 10.0, 20.0)).unwrap();
        assert!(changes.is_empty());

        // A new instance over the same database finds the table and its row (as after recovery).
        let module = inst.module().clone();
        let inst = module.hosted(inst.into_db()).unwrap();
        assert_eq!(inst.area_table(), area_id);
        assert_eq!(inst.area(Identity([1; 32])), Some(moved));
    }

    #[test]
    fn fixed_areas_can_be_set_and_cleared() {
        let mut inst = instance(HostConfig::default());
        let changes = call(&mut inst, tm::look_at::call(5.0, -6.0, 10.0, 20.0)).unwrap();
        let at = AreaRow {
            identity: Identity([1; 32]),
            center: AreaCenter::Fixed(Vec2::new(5.0, -6.0)),
            enter: 10.0,
            leave: 20.0,
        };
        assert_eq!(
            area_changes(&inst, &changes),
            (vec![at.clone()], vec![], vec![])
        );
        assert_eq!(areas(&inst), std::slice::from_ref(&at));

        // Follow replaces fixed (and back), one row per identity.
        call(&mut inst, tm::follow::call(2, 64.0, 72.0)).unwrap();
        assert_eq!(areas(&inst), [following(2, 64.0, 72.0, &inst)]);
        call(&mut inst, tm::look_at::call(5.0, -6.0, 10.0, 20.0)).unwrap();
        assert_eq!(areas(&inst), std::slice::from_ref(&at));

        let changes = call(&mut inst, tm::clear_view::call()).unwrap();
        assert_eq!(area_changes(&inst, &changes), (vec![], vec![], vec![at]));
        assert!(areas(&inst).is_empty());
        assert_eq!(inst.area(Identity([1; 32])), None);
        let err = call(&mut inst, tm::clear_view::call()).unwrap_err();
        assert!(
            matches!(&err, CallError::Failed { message, .. } if message == "no area to clear"),
            "{err}"
        );
    }

    #[test]
    fn area_errors_reach_the_module_as_area_errors() {
        let mut inst = instance(HostConfig::default());
        let failed = |r: Result<locus_store::Changeset, CallError>| match r {
            Err(CallError::Failed { message, .. }) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            failed(call(&mut inst, tm::follow_counter::call("c".into()))),
            "cannot follow a row of `counter`: the table has no #[spatial] column"
        );
        assert_eq!(
            failed(call(&mut inst, tm::follow::call(1, 80.0, 72.0))),
            "area radii must satisfy 0 < enter (80) <= leave (72) <= 512"
        );
        assert_eq!(
            failed(call(&mut inst, tm::follow::call(1, 0.0, 72.0))),
            "area radii must satisfy 0 < enter (0) <= leave (72) <= 512"
        );
        assert_eq!(
            failed(call(&mut inst, tm::look_at::call(0.0, 0.0, 1.0, 513.0))),
            "area radii must satisfy 0 < enter (1) <= leave (513) <= 512"
        );
        assert_eq!(
            failed(call(&mut inst, tm::look_at::call(f32::NAN, 0.0, 1.0, 2.0))),
            "area centre [NaN, 0] is not finite or is outside the world"
        );
        assert!(areas(&inst).is_empty());
    }

    #[test]
    fn a_reducer_that_sets_an_area_and_fails_leaves_no_trace() {
        let mut inst = instance(HostConfig::default());
        let err = call(&mut inst, tm::follow_then_fail::call(1)).unwrap_err();
        assert_eq!(
            err,
            CallError::Failed {
                reducer: "follow_then_fail".into(),
                message: "deliberate failure after setting an area".into()
            }
        );
        assert!(areas(&inst).is_empty(), "no row was left");
        // Over an existing area, the failed call leaves the old one in place.
        call(&mut inst, tm::look_at::call(1.0, 2.0, 3.0, 4.0)).unwrap();
        let before = areas(&inst);
        assert_eq!(before.len(), 1);
        call(&mut inst, tm::follow_then_fail::call(1)).unwrap_err();
        assert_eq!(areas(&inst), before);
    }

    /// Every table's rows, sorted.
    fn dump(db: &Database) -> Vec<(String, Vec<Vec<u8>>)> {
        db.tables()
            .map(|t| {
                let mut rows: Vec<Vec<u8>> = t.iter().map(<[u8]>::to_vec).collect();
                rows.sort();
                (t.name().to_owned(), rows)
            })
            .collect()
    }

    /// The durability path end to end with real reducers: log each tick's changesets, crash, recover, and the
    /// same module runs on; a module whose tables differ from the stored ones is refused by name.
    #[test]
    fn a_logged_world_recovers_and_runs_on_and_an_incompatible_module_is_refused() {
        use locus_log::storage::MemStorage;
        use locus_log::{EncodedRecord, EncodedSnapshot, Log, LogConfig};
        use locus_store::StoreConfig;
        use std::sync::Arc;

        let disk = MemStorage::new();
        let open = |disk: &MemStorage| {
            Log::open(
                Arc::new(disk.clone()),
                LogConfig::default(),
                StoreConfig::default(),
            )
            .unwrap()
        };
        let module = Runtime::new(HostConfig::default())
            .unwrap()
            .load(&WASM)
            .unwrap();
        let (mut log, recovered) = open(&disk);
        assert!(recovered.is_new());
        let mut inst = module.hosted(recovered.db).unwrap();
        log.snapshot(&EncodedSnapshot::new(Tick(0), inst.db()))
            .unwrap();
        for t in 1..=4u64 {
            let mut changes = vec![
                call(
                    &mut inst,
                    tm::spawn::call(format!("p{t}"), t as f32, 0.0, 1),
                )
                .unwrap(),
                inst.tick(0.05, &server()).unwrap(),
            ];
            if t > 1 {
                changes.push(call(&mut inst, tm::move_player::call(1, 9.0, t as f32)).unwrap());
            } else {
                changes.push(call(&mut inst, tm::follow::call(1, 64.0, 72.0)).unwrap());
            }
            log.append(&mut EncodedRecord::from_changesets(Tick(t), &changes))
                .unwrap();
            log.sync().unwrap();
        }
        let after_tick_4 = dump(inst.db());
        // Tick 5 is appended but never synced: a crash may take it.
        let unsynced = call(&mut inst, tm::spawn::call("lost".into(), 0.0, 0.0, 1)).unwrap();
        log.append(&mut EncodedRecord::from_changesets(Tick(5), [&unsynced]))
            .unwrap();
        drop((log, inst));

        let (_log, recovered) = open(&disk.crash());
        assert_eq!(recovered.tick, Tick(4));
        let mut inst = module.hosted(recovered.db).unwrap();
        let players: Vec<tm::Player> = rows(&inst, "player");
        assert_eq!(
            players.len(),
            4,
            "the unsynced tick is gone, the synced ones are all there"
        );
        assert_eq!(
            dump(inst.db()),
            after_tick_4,
            "recovered == the state after tick 4"
        );
        assert_eq!(
            inst.area(Identity([1; 32])),
            Some(following(1, 64.0, 72.0, &inst)),
            "the area set in tick 1 was logged and recovered"
        );
        // It runs on: the auto_inc sequence continues after the recovered rows.
        call(&mut inst, tm::spawn::call("next".into(), 0.0, 0.0, 1)).unwrap();
        let mut ids: Vec<u64> = rows::<tm::Player>(&inst, "player")
            .iter()
            .map(|p| p.id)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 3, 4, 5]);

        // A data directory whose `player` table is not the module's.
        let other = MemStorage::new();
        let (mut log, recovered) = open(&other);
        let mut db = recovered.db;
        db.create_table(
            locus_types::TableDef::builder("player")
                .column("id", locus_types::ColumnType::U64)
                .primary_key("id")
                .build()
                .unwrap(),
        )
        .unwrap();
        log.snapshot(&EncodedSnapshot::new(Tick(0), &db)).unwrap();
        drop(log);
        let (_log, recovered) = open(&other);
        let err = module.hosted(recovered.db).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the database's table `player` differs from the module's definition"
        );
    }

    /// `db` with its data marked as being at module version `version` (the row of `locus_module`), as a world
    /// made by another build of the module would be.
    fn at_version(mut db: Database, version: u32) -> Database {
        let table = db.table_id("locus_module").unwrap();
        let mut tx = db.begin();
        tx.update(table, &locus_types::abi::module_row(version))
            .unwrap();
        let _ = tx.commit();
        db
    }

    #[test]
    fn the_sdk_upgrade_reducer_gets_both_versions_and_its_failure_or_panic_refuses_the_upgrade() {
        let module = Runtime::new(HostConfig::default())
            .unwrap()
            .load(&WASM)
            .unwrap();
        let mut world = module.hosted(Database::default()).unwrap();
        assert_eq!(
            locus_host::data_version(world.db()),
            7,
            "a new world is at the module's version"
        );
        call(&mut world, tm::spawn::call("ada".into(), 0.0, 0.0, 1)).unwrap();

        // Data made by version 3: brought to 7 by `upgrade(3, 7)`, in the restart's instantiation.
        let mut db = at_version(world.into_db(), 3);
        let (instance, plan) = module.instantiate_upgrading(&mut db, &server()).unwrap();
        assert_eq!(
            plan.changes,
            [locus_types::migrate::Change::Version {
                from: 3,
                to: 7,
                hook: Some("upgrade".into())
            }]
        );
        let mut world = Hosted { instance, db };
        assert_eq!(locus_host::data_version(world.db()), 7);
        assert_eq!(events(&world).last().unwrap(), "upgrade 3 -> 7");
        assert_eq!(counter(&world, "upgrades"), Some(1));
        call(&mut world, tm::spawn::call("bob".into(), 1.0, 0.0, 1)).unwrap();

        // A downgrade the module refuses, and a panic: refused, nothing changed.
        for (from, expected) in [
            (9, "the upgrade from module version 9 to 7 failed: reducer `upgrade` failed: no downgrade from 9 to 7".to_owned()),
            (666, format!("the upgrade from module version 666 to 7 failed: reducer `upgrade` panicked at engine/host/test-module/src/lib.rs:{}: upgrade panic", upgrade_panic_site())),
        ] {
            let mut db = at_version(std::mem::take(&mut world.db), from);
            let before = locus_log::EncodedSnapshot::new(Tick(0), &db).bytes().to_vec();
            let err = module.instantiate_upgrading(&mut db, &server()).unwrap_err();
            assert_eq!(err.to_string(), expected);
            assert_eq!(
                locus_log::EncodedSnapshot::new(Tick(0), &db).bytes(),
                &before[..],
                "{from}: the data is as it was"
            );
            assert_eq!(locus_host::data_version(&db), from);
            world.db = at_version(db, 7);
        }
        assert_eq!(
            counter(&world, "upgrades"),
            Some(1),
            "the failed ones left no trace"
        );
    }

    /// `line:column` of the test module's `panic!("upgrade panic")`.
    fn upgrade_panic_site() -> String {
        let source = include_str!("../test-module/src/lib.rs");
        let (i, line) = source
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains("panic!(\"upgrade panic\")"))
            .expect("the test module's upgrade panics");
        format!("{}:{}", i + 1, line.find("panic!").unwrap() + 1)
    }

    #[test]
    fn move_mover_is_find_plus_update() {
        let mut inst = instance(HostConfig::default());
        call(&mut inst, tm::spawn_movers::call(3)).unwrap();
        let changes = call(&mut inst, tm::move_mover::call(2, 7.0, 8.0)).unwrap();
        assert_eq!(changes.tables.len(), 1);
        assert_eq!(changes.tables[0].updates.len(), 1);
        let mut movers: Vec<tm::Mover> = rows(&inst, "mover");
        movers.sort_by_key(|m| m.id);
        assert_eq!((movers[1].pos, movers[1].steps), (Vec2::new(7.0, 8.0), 1));
        let err = call(&mut inst, tm::move_mover::call(99, 0.0, 0.0)).unwrap_err();
        assert!(
            matches!(&err, CallError::Failed { message, .. } if message == "no mover 99"),
            "{err}"
        );
    }

    // ---- Calls between regions ----

    /// The test module over a world split into `west` and `east` (made as the server makes it).
    fn split_instance() -> Hosted {
        Runtime::new(HostConfig::default())
            .unwrap()
            .load(&WASM)
            .unwrap()
            .hosted(super::split_world())
            .unwrap()
    }

    fn note_from(sender: Identity, text: &str) -> RegionMessage {
        RegionMessage::Call {
            reducer: "region_note".into(),
            args: tm::region_note::call(text.into()).into_call().args,
            sender,
        }
    }

    #[test]
    fn the_sdk_sends_typed_calls_as_outbox_rows_only_when_the_reducer_commits() {
        let mut west = split_instance();
        let ada = Identity([1; 32]);
        call(&mut west, tm::send_note::call("east".into(), "hi".into())).unwrap();
        call(&mut west, tm::broadcast_note::call("all".into())).unwrap();
        call(
            &mut west,
            tm::send_log::call("west".into(), "to myself".into()),
        )
        .unwrap();
        let sent = vec![
            (1, Destination::Region(RegionId(1)), note_from(ada, "hi")),
            (2, Destination::All, note_from(ada, "all")),
            (
                3,
                Destination::Region(RegionId(0)),
                RegionMessage::Call {
                    reducer: "log_all".into(),
                    args: tm::log_all::call("to myself".into()).args,
                    sender: ada,
                },
            ),
        ];
        assert_eq!(super::outbox(west.db()), sent);
        assert_eq!(
            events(&west),
            [
                "send_note east hi",
                "broadcast_note all",
                "send_log west to myself"
            ]
        );

        // Failures send nothing: the reducer's own, and an unknown region.
        let err = call(
            &mut west,
            tm::send_then_fail::call("east".into(), "no".into()),
        )
        .unwrap_err();
        assert!(
            matches!(&err, CallError::Failed { message, .. } if message == "deliberate failure after sending"),
            "{err}"
        );
        let err = call(&mut west, tm::send_note::call("north".into(), "no".into())).unwrap_err();
        assert!(
            matches!(&err, CallError::Failed { message, .. } if message == "no region named `north`"),
            "{err}"
        );
        assert_eq!(super::outbox(west.db()), sent);
        assert_eq!(events(&west).len(), 3);
    }

    /// The errors `send_wrong` writes: each wrong call to `east`, then to every region.
    fn send_wrong_errors() -> String {
        let long = rmp_serde::to_vec(&("x".repeat(locus_module::MAX_REGION_CALL_ARGS),))
            .unwrap()
            .len();
        let pair = |reducer: &str, why: &str| {
            format!(
                "cannot send `{reducer}` to a region: {why} | cannot send `{reducer}` to the regions: {why}"
            )
        };
        [
            pair("nothing", "no client or region reducer has that name"),
            pair("ping", "no client or region reducer has that name"),
            pair("region_note", "the arguments do not match its parameters"),
            pair(
                "region_note",
                &format!("its arguments take {long} bytes, more than the 65536 allowed"),
            ),
        ]
        .join(" | ")
    }

    #[test]
    fn wrong_calls_fail_at_the_sender_whether_or_not_the_world_is_split() {
        for mut inst in [split_instance(), instance(HostConfig::default())] {
            call(&mut inst, tm::send_wrong::call()).unwrap();
            assert_eq!(
                events(&inst),
                [format!("send_wrong {}", send_wrong_errors())]
            );
            assert!(
                inst.db()
                    .table_id("locus_outbox")
                    .is_none_or(|_| super::outbox(inst.db()).is_empty())
            );
        }
    }

    #[test]
    fn a_module_knows_its_region_when_split_and_none_otherwise() {
        let mut whole = instance(HostConfig::default());
        call(&mut whole, tm::where_am_i::call()).unwrap();
        assert_eq!(events(&whole), ["where_am_i none / "]);

        let mut west = split_instance();
        call(&mut west, tm::where_am_i::call()).unwrap();
        assert_eq!(
            events(&west),
            ["where_am_i west#0 0,0..2048,4096 / west*,east"]
        );
        let mut east = Runtime::new(HostConfig::default())
            .unwrap()
            .load(&WASM)
            .unwrap()
            .hosted(super::split_world_as(1))
            .unwrap();
        call(&mut east, tm::where_am_i::call()).unwrap();
        assert_eq!(
            events(&east),
            ["where_am_i east#1 2048,0..4096,4096 / west,east*"]
        );
    }

    #[test]
    fn a_world_not_split_into_regions_says_so_to_the_module() {
        let mut inst = instance(HostConfig::default());
        for c in [
            tm::send_note::call("east".into(), "hi".into()),
            tm::broadcast_note::call("hi".into()),
        ] {
            let err = call(&mut inst, c).unwrap_err();
            assert!(
                matches!(&err, CallError::Failed { message, .. } if message == "this world is not split into regions"),
                "{err}"
            );
        }
        assert!(events(&inst).is_empty());
        assert!(inst.db().table_id("locus_outbox").is_none());
    }

    #[test]
    fn a_call_from_a_region_runs_as_its_sender_and_only_region_or_client_reducers_take_one() {
        let mut west = split_instance();
        let mut east = split_instance();
        let ada = Identity([1; 32]);
        call(&mut west, tm::send_note::call("east".into(), "hi".into())).unwrap();
        call(
            &mut west,
            tm::send_log::call("east".into(), "logged".into()),
        )
        .unwrap();
        // The receiving server decodes each outbox message and runs it.
        for (_, to, message) in super::outbox(west.db()) {
            assert_eq!(to, Destination::Region(RegionId(1)));
            let RegionMessage::Call {
                reducer,
                args,
                sender,
            } = message
            else {
                panic!("not a call: {message:?}");
            };
            let ctx = CallContext { sender, ..server() };
            east.call_from_region(&reducer, &args, &ctx).unwrap();
        }
        assert_eq!(
            events(&east),
            [
                format!("region_note hi from {ada}"),
                "log_all logged".into()
            ]
        );
        let logged: Vec<String> = east.drain_logs().into_iter().map(|l| l.message).collect();
        assert!(logged.contains(&"info logged".to_owned()), "{logged:?}");

        // A client cannot call a region reducer; a region cannot call a lifecycle or scheduled one, nor one the
        // module lacks, nor with the wrong arguments (numbers are not converted: a module sent them).
        let note = tm::region_note::call("x".into()).into_call();
        assert_eq!(
            call(&mut east, note.clone()).unwrap_err(),
            CallError::NotCallable {
                reducer: "region_note".into(),
                kind: ReducerKind::Region
            }
        );
        for (reducer, args, kind) in [
            ("init", vec![0x90], ReducerKind::Init),
            (
                "ping",
                tm::ping::call("x".into()).args.clone(),
                ReducerKind::Scheduled,
            ),
        ] {
            assert_eq!(
                east.call_from_region(reducer, &args, &server())
                    .unwrap_err(),
                CallError::NotCallable {
                    reducer: reducer.into(),
                    kind
                }
            );
        }
        assert_eq!(
            east.call_from_region("nothing", &[0x90], &server())
                .unwrap_err(),
            CallError::NoSuchReducer("nothing".into())
        );
        let err = east
            .call_from_region("region_note", &[0x91, 0x05], &server())
            .unwrap_err();
        assert!(matches!(err, CallError::BadArguments { .. }), "{err}");
        let err = east
            .call_from_region("move_player", &[0x93, 0x01, 0x01, 0x02], &server())
            .unwrap_err();
        assert!(
            matches!(err, CallError::BadArguments { .. }),
            "an int for an f32 is refused: {err}"
        );
        assert_eq!(events(&east).len(), 2);
    }
}
