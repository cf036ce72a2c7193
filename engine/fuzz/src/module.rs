//! Targets `module_bytes` and `module_smith`: loading a module ([`Runtime::load`]), and running the reducers of one
//! that loads.
//!
//! - `module_bytes`: the input is the module. Almost all inputs are refused; the seeds are real modules, which the
//!   fuzzer mutates.
//! - `module_smith`: `wasm-smith` turns the input into a valid wasm module that imports only Locus host calls (with
//!   any arguments) and exports what a Locus module exports, with bodies of its own: a table `t`, a client reducer
//!   `r(u32)`, `init` and a tick reducer. [`locus_exports`] then points the ABI version and description exports
//!   at functions of its own that return the real descriptions, so most such modules load and their generated
//!   reducers run.
//!
//! Checked, besides "no panic, no hang": a module that loads instantiates or is refused with an error; every
//! reducer call returns (the fuel budget stops a runaway), and one that fails leaves the world as it was
//! (rolled back); every row in the world is a valid row of its table.

use std::sync::OnceLock;

use arbitrary::Unstructured;
use locus_host::{Budget, CallContext, HostConfig, Module, Runtime};
use locus_store::Database;
use locus_types::abi::{
    ABI_VERSION, EXPORT_ABI_VERSION, EXPORT_MEMORY, EXPORT_REDUCER_DEF_PREFIX,
    EXPORT_REDUCER_PREFIX, EXPORT_TABLE_PREFIX, IMPORT_MODULE,
};
use locus_types::codec::validate_row;
use locus_types::{
    ColumnDef, ColumnType, ReducerDef, ReducerKind, TableAccess, TableDef, Tick, Timestamp,
};
use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection,
    Instruction, MemArg, MemoryType, TypeSection, ValType,
};

/// Fuel per call (about one unit per wasm instruction): far more than a healthy reducer of this size needs, small
/// enough that a runaway one costs the fuzzer little.
pub const FUEL: u64 = 200_000;

/// The runtime every input is loaded by: a fuel budget (deterministic) and a 16 MiB memory limit.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(HostConfig {
            budget: Budget::Fuel(FUEL),
            memory_limit: 16 << 20,
            ..HostConfig::default()
        })
        .expect("a runtime")
    })
}

/// The table and reducers every `module_smith` module describes.
#[must_use]
pub fn described() -> (Vec<TableDef>, Vec<ReducerDef>) {
    let table = TableDef::builder("t")
        .column("id", ColumnType::U32)
        .column("pos", ColumnType::Vec2)
        .column("hp", ColumnType::I64)
        .column("name", ColumnType::String)
        .primary_key("id")
        .auto_inc()
        .access(TableAccess::Public)
        .build()
        .expect("a valid table");
    let reducer = |name: &str, kind, params: Vec<ColumnDef>| ReducerDef {
        name: name.into(),
        kind,
        params,
    };
    let reducers = vec![
        reducer(
            "r",
            ReducerKind::Client,
            vec![ColumnDef::new("n", ColumnType::U32)],
        ),
        reducer("init", ReducerKind::Init, vec![]),
        reducer(
            "step",
            ReducerKind::Tick,
            vec![ColumnDef::new("dt", ColumnType::F32)],
        ),
    ];
    (vec![table], reducers)
}

/// A wasm module importing every host call of the ABI, with its type: what generated modules may import.
#[must_use]
pub fn host_imports() -> Vec<u8> {
    let mut types = TypeSection::new();
    let mut imports = ImportSection::new();
    macro_rules! import {
        ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ident),* $(,)?) -> u32; )*) => {
            $(
                types.ty().function([$(import!(@ty $ty)),*], [ValType::I32]);
                imports.import(IMPORT_MODULE, stringify!($name), EntityType::Function(types.len() - 1));
            )*
        };
        (@ty u32) => { ValType::I32 };
        (@ty u64) => { ValType::I64 };
        (@ty f32) => { ValType::F32 };
    }
    locus_types::for_each_host_call!(import);
    let mut module = wasm_encoder::Module::new();
    module.section(&types).section(&imports);
    module.finish()
}

/// A wasm module with the exports of a module describing [`described`]: what generated modules must export.
#[must_use]
pub fn module_exports() -> Vec<u8> {
    let (tables, reducers) = described();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]); // 0: the ABI version
    types.ty().function([], [ValType::I64]); // 1: a description
    types.ty().function([ValType::I32], [ValType::I32]); // 2: a reducer
    let mut functions = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();
    let mut func =
        |ty: u32, name: &str, functions: &mut FunctionSection, exports: &mut ExportSection| {
            exports.export(name, ExportKind::Func, functions.len());
            functions.function(ty);
            let mut f = Function::new([]);
            f.instruction(&Instruction::Unreachable)
                .instruction(&Instruction::End);
            code.function(&f);
        };
    func(0, EXPORT_ABI_VERSION, &mut functions, &mut exports);
    for t in &tables {
        func(
            1,
            &format!("{EXPORT_TABLE_PREFIX}{}", t.name),
            &mut functions,
            &mut exports,
        );
    }
    for r in &reducers {
        func(
            1,
            &format!("{EXPORT_REDUCER_DEF_PREFIX}{}", r.name),
            &mut functions,
            &mut exports,
        );
        func(
            2,
            &format!("{EXPORT_REDUCER_PREFIX}{}", r.name),
            &mut functions,
            &mut exports,
        );
    }
    let mut memories = wasm_encoder::MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    exports.export(EXPORT_MEMORY, ExportKind::Memory, 0);
    let mut module = wasm_encoder::Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&memories)
        .section(&exports)
        .section(&code);
    module.finish()
}

/// The body of a description export: make sure memory has a page, write `bytes` at address 0, return
/// `(0 << 32) | len`. Of the ABI version export (`bytes` `None`): return [`ABI_VERSION`].
fn describe_body(bytes: Option<&[u8]>) -> Function {
    let mut f = Function::new([]);
    let Some(bytes) = bytes else {
        f.instruction(&Instruction::I32Const(ABI_VERSION as i32))
            .instruction(&Instruction::End);
        return f;
    };
    f.instruction(&Instruction::MemorySize(0))
        .instruction(&Instruction::I32Eqz)
        .instruction(&Instruction::If(wasm_encoder::BlockType::Empty))
        .instruction(&Instruction::I32Const(1))
        .instruction(&Instruction::MemoryGrow(0))
        .instruction(&Instruction::Drop)
        .instruction(&Instruction::End);
    for (i, b) in bytes.iter().enumerate() {
        f.instruction(&Instruction::I32Const(i as i32))
            .instruction(&Instruction::I32Const(i32::from(*b)))
            .instruction(&Instruction::I32Store8(MemArg {
                offset: 0,
                align: 0,
                target: wasm_encoder::MemArgTarget::Memory(0),
                ordering: None,
            }));
    }
    f.instruction(&Instruction::I64Const(bytes.len() as i64))
        .instruction(&Instruction::End);
    f
}

/// Re-encodes a module, adding a function per description export (and the two function types they need) after
/// the module's own, and pointing those exports at them.
struct AddDescriptions {
    /// Export name → the body of its new function; in export-name order, so the result is deterministic.
    bodies: Vec<(String, Function, bool)>,
    imported_functions: u32,
    /// Index of the first added type: `() -> i32`, then `() -> i64`.
    first_type: u32,
    /// Index of the first added function.
    first_function: u32,
    /// Whether the module had each of the sections the new functions go in.
    seen: [bool; 3],
}

impl Reencode for AddDescriptions {
    type Error = std::convert::Infallible;

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        for import in section.clone().into_imports() {
            if matches!(import?.ty, wasmparser::TypeRef::Func(_)) {
                self.imported_functions += 1;
            }
        }
        reencode::utils::parse_import_section(self, imports, section)
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        for group in section.clone() {
            self.first_type += u32::try_from(group?.types().len()).unwrap_or(u32::MAX);
        }
        reencode::utils::parse_type_section(self, types, section)?;
        types.ty().function([], [ValType::I32]);
        types.ty().function([], [ValType::I64]);
        self.seen[0] = true;
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        self.first_function = self.imported_functions + section.count();
        reencode::utils::parse_function_section(self, functions, section)?;
        for (_, _, version) in &self.bodies {
            functions.function(self.first_type + u32::from(!version));
        }
        self.seen[1] = true;
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_code_section(self, code, section)?;
        for (_, body, _) in &self.bodies {
            code.function(body);
        }
        self.seen[2] = true;
        Ok(())
    }

    fn parse_export(
        &mut self,
        exports: &mut ExportSection,
        export: wasmparser::Export<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        match self
            .bodies
            .iter()
            .position(|(name, _, _)| name == export.name)
        {
            Some(i) => {
                exports.export(
                    export.name,
                    ExportKind::Func,
                    self.first_function + i as u32,
                );
                Ok(())
            }
            None => reencode::utils::parse_export(self, exports, export),
        }
    }
}

/// Point a module's ABI version and description exports at new functions that return [`ABI_VERSION`] and the
/// descriptions of [`described`]. `None` if the module cannot be read, or has no functions of its own.
#[must_use]
pub fn locus_exports(wasm: &[u8]) -> Option<Vec<u8>> {
    let (tables, reducers) = described();
    let mut bodies = vec![(EXPORT_ABI_VERSION.to_owned(), describe_body(None), true)];
    for t in &tables {
        let bytes = rmp_serde::to_vec(t).ok()?;
        bodies.push((
            format!("{EXPORT_TABLE_PREFIX}{}", t.name),
            describe_body(Some(&bytes)),
            false,
        ));
    }
    for r in &reducers {
        let bytes = rmp_serde::to_vec(r).ok()?;
        bodies.push((
            format!("{EXPORT_REDUCER_DEF_PREFIX}{}", r.name),
            describe_body(Some(&bytes)),
            false,
        ));
    }
    let mut add = AddDescriptions {
        bodies,
        imported_functions: 0,
        first_type: 0,
        first_function: 0,
        seen: [false; 3],
    };
    let mut module = wasm_encoder::Module::new();
    add.parse_core_module(&mut module, wasmparser::Parser::new(0), wasm)
        .ok()?;
    add.seen.iter().all(|s| *s).then(|| module.finish())
}

/// The `wasm-smith` configuration of `module_smith`: the Locus imports and exports, one memory of at most
/// 1 MiB, and the wasm features wasmtime's default configuration runs.
#[must_use]
pub fn smith_config() -> wasm_smith::Config {
    static IMPORTS: OnceLock<Vec<u8>> = OnceLock::new();
    static EXPORTS: OnceLock<Vec<u8>> = OnceLock::new();
    wasm_smith::Config {
        available_imports: Some(IMPORTS.get_or_init(host_imports).clone()),
        exports: Some(EXPORTS.get_or_init(module_exports).clone()),
        max_memories: 1,
        max_memory32_bytes: 1 << 20,
        max_tables: 2,
        max_funcs: 32,
        max_instructions: 500,
        memory64_enabled: false,
        threads_enabled: false,
        gc_enabled: false,
        exceptions_enabled: false,
        // wasmtime is built without its `gc` feature: no `externref`, no typed references.
        reference_types_enabled: false,
        compact_imports_enabled: false,
        tail_call_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        ..wasm_smith::Config::default()
    }
}

/// A module's world: each table's rows, sorted.
fn contents(db: &Database) -> Vec<Vec<Vec<u8>>> {
    db.tables()
        .map(|t| {
            let mut rows: Vec<Vec<u8>> = t.iter().map(<[u8]>::to_vec).collect();
            rows.sort_unstable();
            rows
        })
        .collect()
}

fn check_rows(db: &Database) {
    let mut offsets = Vec::new();
    for table in db.tables() {
        for row in table.iter() {
            validate_row(&table.def().columns, row, &mut offsets)
                .expect("every row in the world is valid");
        }
    }
}

/// Instantiate a loaded module and run its reducers: `init`, then `rounds` rounds of each client reducer (with
/// `args`) and the tick reducer, checking after each call.
pub fn exercise(module: &Module, args: &[u8], rounds: u32) {
    let mut db = Database::default();
    let Ok(mut instance) = module.instantiate(&mut db) else {
        return;
    };
    let ctx = |tick: u64| CallContext::server(Tick(tick), Timestamp(tick * 50_000), tick);
    let checked = |db: &mut Database, call: &mut dyn FnMut(&mut Database) -> bool| {
        let before = contents(db);
        if !call(db) {
            assert_eq!(contents(db), before, "a failed call changed the world");
        }
        check_rows(db);
    };
    checked(&mut db, &mut |db| instance.init(db, &ctx(1)).is_ok());
    let clients: Vec<String> = module
        .def()
        .reducers
        .iter()
        .filter(|r| r.kind == ReducerKind::Client)
        .map(|r| r.name.clone())
        .collect();
    for round in 0..u64::from(rounds) {
        let tick = 2 + round;
        for name in &clients {
            checked(&mut db, &mut |db| {
                instance.call(db, name, args, &ctx(tick)).is_ok()
            });
        }
        checked(&mut db, &mut |db| {
            instance.tick(db, 0.05, &ctx(tick)).is_ok()
        });
    }
    let _ = instance.drain_logs();
}

/// Target `module_bytes`.
pub fn module_bytes(data: &[u8]) {
    if let Ok(module) = runtime().load(data) {
        exercise(&module, &[0x91, 0x07], 2);
    }
}

/// Target `module_smith`.
pub fn module_smith(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(module) = wasm_smith::Module::new(smith_config(), &mut u) else {
        return;
    };
    let Some(wasm) = locus_exports(&module.to_bytes()) else {
        return;
    };
    let Ok(module) = runtime().load(&wasm) else {
        return;
    };
    let n: u32 = u.arbitrary().unwrap_or(0);
    exercise(
        &module,
        &[
            0x91,
            0xce,
            (n >> 24) as u8,
            (n >> 16) as u8,
            (n >> 8) as u8,
            n as u8,
        ],
        3,
    );
}
