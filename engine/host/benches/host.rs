//! Benchmarks of `locus-host`, each beside the same logic as a plain native Rust function against the store, so the
//! ratio (the cost of the sandbox) is visible in one run.
//!
//! - `host/empty_call`: call a reducer that does nothing, through wasmtime, in its own transaction. `sdk` is the
//!   test module's `noop` reducer written with `locus-module` (it fetches its arguments and context, decodes an empty
//!   argument list, and returns `Ok`); `raw` is a hand-written WAT entry point that returns 0 at once (the floor of
//!   the ABI); `native` opens a transaction, calls an `#[inline(never)]` empty function, and commits.
//! - `host/move_reducer`: the test module's `move_mover(id, x, y)` reducer: find a row by primary key, set its
//!   spatial position, update it — one transaction per call, over 10,000 rows of a spatially indexed table, each
//!   move one tick's walk (0.25 m), so the R-tree's fat envelopes are left about every eighth move. `native` does the same with rmp-serde and a
//!   store `Transaction`; `fuel` is the wasm reducer under a fuel budget instead of epoch interruption.
//!
//! Run with `cargo bench -p locus-host [-- FILTER]`. Each group first prints a summary line starting with `host/`
//! (median of several timed rounds, in ns per call and calls per second, with the ratio to native), then lets
//! criterion measure each variant. Under `cargo test --benches` everything runs once at a small scale.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark's report is printed on stdout"
)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use locus_host::{Budget, CallContext, HostConfig, Hosted, Runtime};
use locus_store::{Database, Transaction};
use locus_types::TableId;
use locus_types::{Tick, Timestamp, Value, Vec2};
use serde::{Deserialize, Serialize};

const MOVERS: u64 = 10_000;

/// The native twin of the test module's `Mover` row.
#[derive(Serialize, Deserialize)]
struct Mover {
    id: u64,
    pos: Vec2,
    steps: u32,
}

fn ctx() -> CallContext {
    CallContext::server(Tick(1), Timestamp(1_000_000), 7)
}

fn module_bytes() -> Vec<u8> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = locus_host::build::module_target_dir(&workspace, "wasm-modules");
    locus_host::build::build_module(&workspace, "locus-test-module", &target)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn instance(wasm: &[u8], budget: Budget) -> Hosted {
    let rt = Runtime::new(HostConfig {
        budget,
        ..HostConfig::default()
    })
    .unwrap();
    let mut inst = rt.load(wasm).unwrap().hosted(Database::default()).unwrap();
    // In chunks, so that an unoptimized build (`cargo test --benches`) stays within the call budget.
    let args = rmp_serde::to_vec(&(500u64,)).unwrap();
    for _ in 0..MOVERS / 500 {
        inst.call("spawn_movers", &args, &ctx()).unwrap();
    }
    inst
}

const RAW_NOOP: &str = r#"
  (module
    (memory (export "memory") 1)
    (data (i32.const 16) "\83\a4name\a4noop\a4kind\a6Client\a6params\90")
    (func (export "__locus_abi_version") (result i32) i32.const 1)
    (func (export "__locus_describe_reducer_noop") (result i64) i64.const 68719476767)
    (func (export "__locus_reducer_noop") (param i32) (result i32) i32.const 0))
"#;

/// Median ns per call over `rounds` rounds of `n` calls.
fn time(rounds: usize, n: u64, mut f: impl FnMut(u64)) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for i in 0..n {
                f(i);
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[inline(never)]
fn native_noop(ctx: &CallContext) -> Result<(), String> {
    black_box(ctx);
    Ok(())
}

fn native_empty_call(db: &mut Database, ctx: &CallContext, args: &[u8]) {
    let tx = db.begin();
    let params: Vec<serde::de::IgnoredAny> = rmp_serde::from_slice(args).unwrap();
    assert!(params.is_empty());
    native_noop(ctx).unwrap();
    black_box(tx.commit());
}

/// The move reducer's logic, natively: decode the arguments, find the row, move it, update it, commit.
fn native_move(db: &mut Database, table: TableId, args: &[u8]) {
    let mut tx: Transaction<'_> = db.begin();
    let (id, x, y): (u64, f32, f32) = rmp_serde::from_slice(args).unwrap();
    let row = tx.table(table).unwrap().get(&Value::U64(id)).unwrap();
    let mut m: Mover = rmp_serde::from_slice(row.unwrap()).unwrap();
    m.pos = Vec2::new(x, y);
    m.steps += 1;
    tx.update(table, &rmp_serde::to_vec(&m).unwrap()).unwrap();
    black_box(tx.commit());
}

/// Arguments for call `i`: mover `i % MOVERS + 1`, one tick's walk (0.25 m: 5 m/s at 20 Hz) further along a circle
/// of radius 4 m around its spawn point each time its turn comes, so its fat envelope (margin 2 m) is left about
/// every eighth move, as in the store's `store/move` benchmark.
fn move_args(i: u64) -> Vec<u8> {
    let id = i % MOVERS + 1;
    let angle = (i / MOVERS) as f32 * 0.0625;
    let x = (id % 100) as f32 * 10.0 + angle.cos() * 4.0;
    let y = (id / 100) as f32 * 10.0 + angle.sin() * 4.0;
    rmp_serde::to_vec(&(id, x, y)).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let measuring = has("--bench") && !has("--test") && !has("--list");
    let (rounds, n) = if measuring { (7, 200_000) } else { (1, 100) };
    let mut c = Criterion::default().configure_from_args();
    let wasm = module_bytes();
    let ctx = ctx();

    // ---- host/empty_call ----
    let mut sdk = instance(&wasm, Budget::Time(Duration::from_millis(100)));
    let rt = Runtime::new(HostConfig::default()).unwrap();
    let mut raw = rt
        .load(&wat::parse_str(RAW_NOOP).unwrap())
        .unwrap()
        .hosted(Database::default())
        .unwrap();
    let mut native_db = Database::default();
    let empty = [0x90u8];
    let t_sdk = time(rounds, n, |_| {
        black_box(sdk.call("noop", &empty, &ctx).unwrap());
    });
    let t_raw = time(rounds, n, |_| {
        black_box(raw.call("noop", &empty, &ctx).unwrap());
    });
    let t_native = time(rounds, n, |_| {
        native_empty_call(&mut native_db, &ctx, &empty)
    });
    println!(
        "host/empty_call: sdk {t_sdk:.0} ns/call | raw WAT {t_raw:.0} ns/call | native baseline {t_native:.1} ns/call \
         | sdk/native {:.1}x",
        t_sdk / t_native
    );
    let mut g = c.benchmark_group("host/empty_call");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sdk", |b| {
        b.iter(|| sdk.call("noop", &empty, &ctx).unwrap())
    });
    g.bench_function("raw", |b| {
        b.iter(|| raw.call("noop", &empty, &ctx).unwrap())
    });
    g.bench_function("native", |b| {
        b.iter(|| native_empty_call(&mut native_db, &ctx, &empty));
    });
    g.finish();

    // ---- host/move_reducer ----
    let mut fuel = instance(&wasm, Budget::Fuel(10_000_000));
    // The native baseline runs over a copy of the module's `mover` table.
    let mut native_db = Database::default();
    let mover = {
        let source = sdk.db();
        let table = source
            .table(
                source
                    .table_id("mover")
                    .expect("the test module has a `mover` table"),
            )
            .unwrap();
        let id = native_db.create_table(table.def().clone()).unwrap();
        let mut tx = native_db.begin();
        for row in table.iter() {
            tx.insert(id, row).unwrap();
        }
        let _ = tx.commit();
        id
    };
    let all_args: Vec<Vec<u8>> = (0..100 * MOVERS).map(move_args).collect();
    let pick = |i: u64| &all_args[(i % all_args.len() as u64) as usize];
    let t_native = time(rounds, n, |i| native_move(&mut native_db, mover, pick(i)));
    let t_wasm = time(rounds, n, |i| {
        black_box(sdk.call("move_mover", pick(i), &ctx).unwrap());
    });
    let t_fuel = time(rounds, n, |i| {
        black_box(fuel.call("move_mover", pick(i), &ctx).unwrap());
    });
    println!(
        "host/move_reducer: wasm {t_wasm:.0} ns/call = {:.2} M calls/s | fuel {t_fuel:.0} ns/call | native baseline \
         {t_native:.0} ns/call = {:.2} M calls/s | wasm/native {:.1}x",
        1e3 / t_wasm,
        1e3 / t_native,
        t_wasm / t_native
    );
    let mut g = c.benchmark_group("host/move_reducer");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("wasm", |b| {
        b.iter(|| {
            i += 1;
            sdk.call("move_mover", pick(i), &ctx).unwrap()
        });
    });
    g.bench_function("fuel", |b| {
        b.iter(|| {
            i += 1;
            fuel.call("move_mover", pick(i), &ctx).unwrap()
        });
    });
    g.bench_function("native", |b| {
        b.iter(|| {
            i += 1;
            native_move(&mut native_db, mover, pick(i));
        });
    });
    g.finish();
    c.final_summary();
}
