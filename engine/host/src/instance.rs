//! [`Runtime`], [`Module`] and [`ModuleInstance`]: loading a module and running its reducers.

use std::sync::Arc;
use std::thread;

use hashbrown::HashMap;
use locus_store::{BuildTableError, Changeset, Database, Table, TxLog};
use locus_types::abi::{
    ABI_VERSION, EXPORT_ABI_VERSION, EXPORT_MEMORY, EXPORT_MODULE_VERSION,
    EXPORT_REDUCER_DEF_PREFIX, EXPORT_REDUCER_PREFIX, EXPORT_TABLE_PREFIX, IMPORT_MODULE,
    RESERVED_PREFIX, ReducerStatus, is_system_table,
};
use locus_types::{
    ColumnType, ModuleDef, ReducerDef, ReducerKind, TableDef, TableId, Timestamp, codec,
};
use wasmtime::{
    Engine, ExternType, FuncType, InstancePre, Linker, Store, Trap, TypedFunc, ValType,
    WasmBacktrace,
};

use crate::backtrace::Backtrace;
use crate::calls::{self, Fault, HostState};
use crate::config::{Budget, EPOCH_PERIOD, HostConfig};
use crate::env::{
    CallContext, Env, LogLine, NamedReducers, SystemTables, schedule_table_def, truncated,
};
use crate::error::{CallError, InstantiateError, LoadError, PanicLocation, RuntimeError};

/// A wasmtime engine configured for Locus modules, plus (for [`Budget::Time`]) the thread that advances its
/// epoch. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    config: Arc<HostConfig>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Create the engine (and, for [`Budget::Time`], the epoch thread, which ends when the last clone of the
    /// engine is dropped).
    ///
    /// # Errors
    ///
    /// A [`RuntimeError`] if wasmtime refuses the configuration or the thread cannot start.
    pub fn new(config: HostConfig) -> Result<Runtime, RuntimeError> {
        let mut wasm = wasmtime::Config::new();
        match config.budget {
            Budget::Time(_) => {
                wasm.epoch_interruption(true);
            }
            Budget::Fuel(_) => {
                wasm.consume_fuel(true);
            }
        }
        let engine = Engine::new(&wasm).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        if let Budget::Time(_) = config.budget {
            let weak = engine.weak();
            thread::Builder::new()
                .name("locus-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        thread::sleep(EPOCH_PERIOD);
                    }
                })?;
        }
        let mut linker = Linker::new(&engine);
        calls::add_to_linker(&mut linker).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            config: Arc::new(config),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Compile and validate a module, and read its description.
    ///
    /// Checks, in order: the bytes are valid wasm; every import is a host call of [`IMPORT_MODULE`] with the right
    /// type; `memory` and `__locus_abi_version` are exported and the version is [`ABI_VERSION`]; every
    /// `__locus_describe_*` export returns a valid description whose name matches the export; every reducer has
    /// an entry point of the right type (and vice versa); table definitions validate; names are not reserved;
    /// lifecycle reducers are unique and have the right parameters.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the first problem found.
    pub fn load(&self, wasm: &[u8]) -> Result<Module, LoadError> {
        let module = wasmtime::Module::new(&self.engine, wasm)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        check_imports(&module)?;
        check_export_types(&module)?;
        // Import names were checked above, so what the linker can still refuse is an import's type.
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::ImportType(format!("{e:#}")))?;
        let def = self.describe(&module, &pre)?;
        let reducers = def
            .reducers
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        Ok(Module {
            runtime: self.clone(),
            pre,
            def: Arc::new(def),
            reducers: Arc::new(reducers),
        })
    }

    fn new_store(&self, env: Env) -> Store<HostState> {
        let mut store = Store::new(
            &self.engine,
            HostState {
                env,
                memory: None,
                memory_limit: self.config.memory_limit,
            },
        );
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        if let Budget::Time(_) = self.config.budget {
            store.epoch_deadline_trap();
        }
        self.arm(&mut store);
        store
    }

    /// Give the store a fresh budget for one call.
    fn arm(&self, store: &mut Store<HostState>) {
        match self.config.budget {
            Budget::Time(limit) => {
                let ticks = limit.as_micros().div_ceil(EPOCH_PERIOD.as_micros()).max(1) as u64;
                // +1: the epoch may advance right after the deadline is set.
                store.set_epoch_deadline(ticks + 1);
            }
            Budget::Fuel(fuel) => {
                store
                    .set_fuel(fuel)
                    .expect("fuel is enabled for Budget::Fuel runtimes");
            }
        }
    }

    fn describe(
        &self,
        module: &wasmtime::Module,
        pre: &InstancePre<HostState>,
    ) -> Result<ModuleDef, LoadError> {
        let mut store = self.new_store(Env::new((*self.config).clone()));
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let memory = instance
            .get_memory(&mut store, EXPORT_MEMORY)
            .ok_or(LoadError::MissingExport(EXPORT_MEMORY))?;
        store.data_mut().memory = Some(memory);

        let version = instance
            .get_typed_func::<(), u32>(&mut store, EXPORT_ABI_VERSION)
            .map_err(|_| LoadError::MissingExport(EXPORT_ABI_VERSION))?;
        self.arm(&mut store);
        let version = version
            .call(&mut store, ())
            .map_err(|e| LoadError::Describe {
                export: EXPORT_ABI_VERSION.into(),
                reason: format!("{e:#}"),
            })?;
        if version != ABI_VERSION {
            return Err(LoadError::AbiVersion {
                found: version,
                expected: ABI_VERSION,
            });
        }

        let mut def = ModuleDef::default();
        // Optional; its type was checked with the other exports'.
        if let Ok(version) = instance.get_typed_func::<(), u32>(&mut store, EXPORT_MODULE_VERSION) {
            self.arm(&mut store);
            def.version = version
                .call(&mut store, ())
                .map_err(|e| LoadError::Describe {
                    export: EXPORT_MODULE_VERSION.into(),
                    reason: format!("{e:#}"),
                })?;
        }
        let mut entry_points = Vec::new();
        for export in module.exports() {
            let name = export.name();
            if let Some(table) = name.strip_prefix(EXPORT_TABLE_PREFIX) {
                let t: TableDef = read_description(self, &mut store, &instance, name)?;
                if t.name != table {
                    return Err(LoadError::NameMismatch {
                        export: name.into(),
                        name: t.name,
                    });
                }
                def.tables.push(t);
            } else if let Some(reducer) = name.strip_prefix(EXPORT_REDUCER_DEF_PREFIX) {
                let r: ReducerDef = read_description(self, &mut store, &instance, name)?;
                if r.name != reducer {
                    return Err(LoadError::NameMismatch {
                        export: name.into(),
                        name: r.name,
                    });
                }
                def.reducers.push(r);
            } else if let Some(reducer) = name.strip_prefix(EXPORT_REDUCER_PREFIX) {
                entry_points.push(reducer.to_owned());
            }
        }
        def.tables.sort_by(|a, b| a.name.cmp(&b.name));
        def.reducers.sort_by(|a, b| a.name.cmp(&b.name));
        validate(&def, &entry_points)?;
        Ok(def)
    }
}

fn read_description<T: serde::de::DeserializeOwned>(
    runtime: &Runtime,
    store: &mut Store<HostState>,
    instance: &wasmtime::Instance,
    export: &str,
) -> Result<T, LoadError> {
    let err = |reason: String| LoadError::Describe {
        export: export.into(),
        reason,
    };
    let f = instance
        .get_typed_func::<(), u64>(&mut *store, export)
        .map_err(|e| err(format!("{e:#}")))?;
    runtime.arm(store);
    let packed = f.call(&mut *store, ()).map_err(|e| err(format!("{e:#}")))?;
    let (ptr, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
    let memory = store.data().memory.expect("set before describing");
    let bytes = memory.data(&*store).get(ptr..ptr + len).ok_or_else(|| {
        err(format!(
            "({ptr:#x}, {len}) lies outside the module's memory"
        ))
    })?;
    rmp_serde::from_slice(bytes).map_err(|e| err(format!("bad MessagePack description: {e}")))
}

fn check_imports(module: &wasmtime::Module) -> Result<(), LoadError> {
    for import in module.imports() {
        if import.module() != IMPORT_MODULE {
            if import.module().starts_with("locus_v") {
                return Err(LoadError::AbiModule {
                    found: import.module().into(),
                    expected: IMPORT_MODULE,
                });
            }
            return Err(LoadError::UnknownImport {
                module: import.module().into(),
                name: import.name().into(),
            });
        }
        if !calls::HOST_CALLS.contains(&import.name()) {
            return Err(LoadError::UnknownImport {
                module: import.module().into(),
                name: import.name().into(),
            });
        }
    }
    Ok(())
}

fn func_is(ty: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let eq = |a: &ValType, b: &ValType| ValType::eq(a, b);
    ty.params().len() == params.len()
        && ty.results().len() == results.len()
        && ty.params().zip(params).all(|(a, b)| eq(&a, b))
        && ty.results().zip(results).all(|(a, b)| eq(&a, b))
}

fn check_export_types(module: &wasmtime::Module) -> Result<(), LoadError> {
    let mut memory = false;
    let mut version = false;
    for export in module.exports() {
        let name = export.name();
        let ty = export.ty();
        let (params, results, expected): (&[ValType], &[ValType], &'static str) =
            if name == EXPORT_MEMORY {
                if !matches!(ty, ExternType::Memory(ref m) if !m.is_64()) {
                    return Err(LoadError::ExportType {
                        name: name.into(),
                        expected: "a 32-bit linear memory",
                    });
                }
                memory = true;
                continue;
            } else if name == EXPORT_ABI_VERSION {
                version = true;
                (&[], &[ValType::I32], "a function () -> i32")
            } else if name == EXPORT_MODULE_VERSION {
                (&[], &[ValType::I32], "a function () -> i32")
            } else if name.starts_with(EXPORT_TABLE_PREFIX)
                || name.starts_with(EXPORT_REDUCER_DEF_PREFIX)
            {
                (&[], &[ValType::I64], "a function () -> i64")
            } else if name.starts_with(EXPORT_REDUCER_PREFIX) {
                (&[ValType::I32], &[ValType::I32], "a function (i32) -> i32")
            } else {
                continue;
            };
        match ty {
            ExternType::Func(f) if func_is(&f, params, results) => {}
            _ => {
                return Err(LoadError::ExportType {
                    name: name.into(),
                    expected,
                });
            }
        }
    }
    if !memory {
        return Err(LoadError::MissingExport(EXPORT_MEMORY));
    }
    if !version {
        return Err(LoadError::MissingExport(EXPORT_ABI_VERSION));
    }
    Ok(())
}

fn reducer_error(reducer: &ReducerDef, reason: impl Into<String>) -> LoadError {
    LoadError::Reducer {
        reducer: reducer.name.clone(),
        reason: reason.into(),
    }
}

fn validate(def: &ModuleDef, entry_points: &[String]) -> Result<(), LoadError> {
    for t in &def.tables {
        if t.name.starts_with(RESERVED_PREFIX) {
            return Err(LoadError::ReservedName(t.name.clone()));
        }
        t.validate().map_err(|source| LoadError::Schema {
            table: t.name.clone(),
            source,
        })?;
    }
    let mut lifecycle: Vec<(ReducerKind, &str)> = Vec::new();
    for r in &def.reducers {
        if r.name.starts_with(RESERVED_PREFIX) {
            return Err(LoadError::ReservedName(r.name.clone()));
        }
        if !entry_points.contains(&r.name) {
            return Err(reducer_error(
                r,
                format!(
                    "described but no `{EXPORT_REDUCER_PREFIX}{}` export",
                    r.name
                ),
            ));
        }
        match r.kind {
            ReducerKind::Init | ReducerKind::ClientConnected | ReducerKind::ClientDisconnected => {
                if !r.params.is_empty() {
                    return Err(reducer_error(r, "lifecycle reducers take no parameters"));
                }
            }
            ReducerKind::Tick => {
                if r.params.len() != 1 || r.params[0].ty != ColumnType::F32 {
                    return Err(reducer_error(
                        r,
                        "a tick reducer takes one f32 parameter, dt",
                    ));
                }
            }
            ReducerKind::Every { millis } => {
                if millis == 0 {
                    return Err(reducer_error(r, "a period of 0 ms"));
                }
                if !r.params.is_empty() {
                    return Err(reducer_error(r, "periodic reducers take no parameters"));
                }
            }
            ReducerKind::Upgrade => {
                if r.params.len() != 2 || r.params.iter().any(|p| p.ty != ColumnType::U32) {
                    return Err(reducer_error(
                        r,
                        "an upgrade reducer takes two u32 parameters, the data's version and the module's",
                    ));
                }
            }
            ReducerKind::Client | ReducerKind::Scheduled | ReducerKind::Region => {}
        }
        if matches!(
            r.kind,
            ReducerKind::Init
                | ReducerKind::ClientConnected
                | ReducerKind::ClientDisconnected
                | ReducerKind::Tick
                | ReducerKind::Upgrade
        ) {
            if let Some((_, first)) = lifecycle.iter().find(|(k, _)| *k == r.kind) {
                return Err(LoadError::DuplicateLifecycle {
                    kind: r.kind,
                    first: (*first).to_owned(),
                    second: r.name.clone(),
                });
            }
            lifecycle.push((r.kind, &r.name));
        }
    }
    for e in entry_points {
        if !def.reducers.iter().any(|r| &r.name == e) {
            return Err(LoadError::Reducer {
                reducer: e.clone(),
                reason: format!("exported but no `{EXPORT_REDUCER_DEF_PREFIX}{e}` description"),
            });
        }
    }
    Ok(())
}

/// A compiled, validated module and its description. Cheap to clone. Instantiate it over a [`Database`] to run
/// reducers.
#[derive(Clone)]
pub struct Module {
    runtime: Runtime,
    pre: InstancePre<HostState>,
    def: Arc<ModuleDef>,
    reducers: Arc<HashMap<String, usize>>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("def", &self.def)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// The module's tables and reducers, sorted by name.
    #[must_use]
    pub fn def(&self) -> &ModuleDef {
        &self.def
    }

    /// The module's version (`locus_types::abi::EXPORT_MODULE_VERSION`; 0 if it declares none).
    #[must_use]
    pub fn version(&self) -> u32 {
        self.def.version
    }

    /// The module's `Upgrade` reducer, if it has one.
    #[must_use]
    pub fn upgrade_reducer(&self) -> Option<&ReducerDef> {
        self.def
            .reducers
            .iter()
            .find(|r| r.kind == ReducerKind::Upgrade)
    }

    /// Instantiate the module for `db`: create its tables (and the system tables `locus_schedule`, `locus_area` and
    /// `locus_module`, in that order, after the module's) where `db` lacks them, and check those it has match.
    /// Tables already in `db` keep their rows (e.g. after recovery). Other system tables (names starting with
    /// `locus_`, which the server may create itself) are left as they are, and the module cannot see them. A new
    /// database (no tables at all, or only system tables the server made) is recorded as being at this module's
    /// version; one whose data is at another version ([`crate::data_version`]; 0 for a database without
    /// `locus_module`) is refused: bringing it over is an upgrade's ([`Module::instantiate_upgrading`]).
    ///
    /// The instance does not keep the database: its owner lends it to every reducer-running method
    /// ([`ModuleInstance::call`] and the others), and must always lend this database (or one with the same
    /// tables, e.g. a copy).
    ///
    /// # Errors
    ///
    /// An [`InstantiateError`]; `db` is then unchanged.
    pub fn instantiate(&self, db: &mut Database) -> Result<ModuleInstance, InstantiateError> {
        let layout = self.layout(db, |old, def| {
            if old.def() == def {
                Ok(None)
            } else {
                Err(InstantiateError::SchemaMismatch(def.name.clone()))
            }
        })?;
        let data = self.data_version_of(db);
        if data != self.version() {
            return Err(InstantiateError::VersionMismatch {
                data,
                module: self.version(),
            });
        }
        let (instance, staged) = self.instantiate_laid_out(layout)?;
        db.swap_tables(staged)
            .expect("the staged tables were laid out over this database");
        Ok(instance)
    }

    /// The module version `db`'s data is at, as this module sees it: [`crate::data_version`], except that a new
    /// database ([`is_new_database`]) is at this module's version.
    pub(crate) fn data_version_of(&self, db: &Database) -> u32 {
        if is_new_database(db) {
            self.version()
        } else {
            crate::data_version(db)
        }
    }

    /// Lay this module's tables, then the system tables, out over `db`, which is only read: a table `db` has keeps
    /// its id, and `existing(table, new definition)` says what becomes of it (`None`: kept as it is; `Some`: replaced
    /// by a table built aside); a table `db` lacks is built aside, empty, under the next id.
    pub(crate) fn layout<E: From<InstantiateError>>(
        &self,
        db: &Database,
        mut existing: impl FnMut(&Table, &TableDef) -> Result<Option<Table>, E>,
    ) -> Result<Layout, E> {
        let mut layout = Layout {
            tables: HashMap::new(),
            system: SystemTables {
                schedule: TableId(0),
                area: TableId(0),
                module: TableId(0),
            },
            table_count: db.tables().count(),
            staged: Vec::new(),
        };
        // A new database starts at this module's version; an old one without the table is at version 0.
        let fresh = is_new_database(db);
        let version_row = locus_types::abi::module_row(self.version());
        let mut place = |def: &TableDef,
                         rows: &[&[u8]],
                         layout: &mut Layout|
         -> Result<TableId, E> {
            if let Some(id) = db.table_id(&def.name) {
                let old = db.table(id).expect("named tables exist");
                if let Some(table) = existing(old, def)? {
                    layout.staged.push(table);
                }
                return Ok(id);
            }
            let id = TableId(layout.table_count as u32);
            let table = db
                .build_table(id, def.clone(), rows.iter().copied(), 0)
                .map_err(|e| match e {
                    BuildTableError::Schema(e) => InstantiateError::CreateTable(e.into()),
                    BuildTableError::Insert(_) => unreachable!("the rows given fit their tables"),
                })?;
            layout.staged.push(table);
            layout.table_count += 1;
            Ok(id)
        };
        for t in &self.def.tables {
            let id = place(t, &[], &mut layout)?;
            layout.tables.insert(t.name.clone(), id);
        }
        let version: &[&[u8]] = if fresh { &[&version_row] } else { &[] };
        layout.system = SystemTables {
            schedule: place(&schedule_table_def(), &[], &mut layout)?,
            area: place(&locus_types::abi::area_table_def(), &[], &mut layout)?,
            module: place(&locus_types::abi::module_table_def(), version, &mut layout)?,
        };
        Ok(layout)
    }

    /// Instantiate the wasm module for a database laid out as `layout` says (once its staged tables are swapped
    /// in, which the caller does); returns the instance and the staged tables.
    pub(crate) fn instantiate_laid_out(
        &self,
        layout: Layout,
    ) -> Result<(ModuleInstance, Vec<Table>), InstantiateError> {
        let named = |keep: fn(ReducerKind) -> bool| {
            self.def
                .reducers
                .iter()
                .filter(|r| keep(r.kind))
                .map(|r| (r.name.clone(), r.params.clone()))
                .collect()
        };
        let reducers = NamedReducers {
            scheduled: named(|k| k == ReducerKind::Scheduled),
            sendable: named(ReducerKind::accepts_region_calls),
        };
        let mut env = Env::new((*self.runtime.config).clone());
        env.bind(layout.tables, layout.system, reducers, layout.table_count);
        let mut every = Vec::new();
        for (i, r) in self.def.reducers.iter().enumerate() {
            if let ReducerKind::Every { millis } = r.kind {
                every.push(Periodic {
                    reducer: i,
                    period_micros: millis.saturating_mul(1000),
                    next: None,
                });
            }
        }
        let mut instance = ModuleInstance {
            module: self.clone(),
            store: self.runtime.new_store(Env::default()),
            entries: Vec::new(),
            names: self
                .def
                .reducers
                .iter()
                .map(|r| Arc::from(r.name.as_str()))
                .collect(),
            every,
            area_table: layout.system.area,
            tick_args: Vec::with_capacity(8),
            offsets: Vec::new(),
            unwound: false,
        };
        instance.store.data_mut().env = env;
        instance
            .start()
            .map_err(|e| InstantiateError::Wasm(format!("{e:#}")))?;
        Ok((instance, layout.staged))
    }
}

/// Whether `db` is a new world's database: no module has been instantiated over it, so it has no tables but system
/// tables the server made itself (none of the host's `locus_schedule`, `locus_area`, `locus_module`, and no module
/// table). Its data is at the version of the first module instantiated over it.
fn is_new_database(db: &Database) -> bool {
    db.tables().all(|t| {
        is_system_table(t.name())
            && ![
                locus_types::abi::SCHEDULE_TABLE,
                locus_types::abi::AREA_TABLE,
                locus_types::abi::MODULE_TABLE,
            ]
            .contains(&t.name())
    })
}

/// Where a module's tables are (or will be, once `staged` is swapped in) in the database an instance is lent.
pub(crate) struct Layout {
    /// The module's tables by name.
    tables: HashMap<String, TableId>,
    system: SystemTables,
    /// How many tables the database has once `staged` is swapped in.
    table_count: usize,
    /// Tables built aside, for [`Database::swap_tables`]: the new ones, and replacements of existing ones.
    pub(crate) staged: Vec<Table>,
}

#[derive(Debug)]
struct Periodic {
    reducer: usize,
    period_micros: u64,
    next: Option<Timestamp>,
}

/// A seed for the `position`-th run of a pass from the pass's seed (splitmix64 of both).
fn mix_seed(seed: u64, position: u64) -> u64 {
    let mut z = seed ^ position.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What running one due scheduled or periodic reducer did.
#[derive(Debug)]
pub struct ScheduledRun {
    /// The reducer.
    pub reducer: String,
    /// The committed changes: the reducer's writes and the consumed schedule row, or only the consumed schedule
    /// row if the reducer failed (a failed one-shot schedule is not retried).
    pub changeset: Changeset,
    /// Why the reducer failed, if it did.
    pub error: Option<CallError>,
}

/// A module instantiated for a database: runs reducers, each in its own transaction.
///
/// The instance does not own the database. Each reducer-running method ([`ModuleInstance::call`],
/// [`ModuleInstance::call_from_region`],
/// [`ModuleInstance::init`], [`ModuleInstance::client_connected`], [`ModuleInstance::client_disconnected`],
/// [`ModuleInstance::tick`], [`ModuleInstance::run_due`]) borrows it as `&mut Database` for the call — it must be the
/// database the instance was made for ([`Module::instantiate`]); one without the instance's `locus_area` table where
/// it was is refused with a panic — and gives it back when the method returns,
/// whatever happened: a call that fails, traps, is interrupted or panics has its writes rolled back first. Between
/// calls the database is its owner's alone (snapshots, queries and the interest stage read it with no instance).
///
/// One wasm instance is reused across calls. After a trap (a panic, an interruption, the memory limit, a bad
/// pointer) the instance's memory may be inconsistent, so it is discarded and a fresh one made from the same
/// compiled module; the database is untouched by this (the trapped call was rolled back). Module code must
/// therefore keep its state in tables, not in globals.
pub struct ModuleInstance {
    module: Module,
    store: Store<HostState>,
    /// Entry point per reducer, in `def.reducers` order.
    entries: Vec<TypedFunc<u32, u32>>,
    names: Vec<Arc<str>>,
    every: Vec<Periodic>,
    area_table: TableId,
    tick_args: Vec<u8>,
    offsets: Vec<u32>,
    /// A panic unwound out of a call: the wasm instance is replaced before the next one.
    unwound: bool,
}

impl std::fmt::Debug for ModuleInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleInstance")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

enum Outcome {
    Status(u32),
    Trap(wasmtime::Error),
}

impl ModuleInstance {
    /// Instantiate the wasm module in the current store and look up its exports.
    fn start(&mut self) -> wasmtime::Result<()> {
        let instance = self.module.pre.instantiate(&mut self.store)?;
        let memory = instance
            .get_memory(&mut self.store, EXPORT_MEMORY)
            .ok_or_else(|| wasmtime::Error::msg("no memory export"))?;
        self.store.data_mut().memory = Some(memory);
        self.entries = self
            .module
            .def
            .reducers
            .iter()
            .map(|r| {
                instance.get_typed_func::<u32, u32>(
                    &mut self.store,
                    &format!("{EXPORT_REDUCER_PREFIX}{}", r.name),
                )
            })
            .collect::<wasmtime::Result<_>>()?;
        Ok(())
    }

    /// Replace the store (and so the wasm instance and its memory) with a fresh one, keeping the database.
    fn restart(&mut self) {
        let env = std::mem::take(&mut self.store.data_mut().env);
        self.store = self.module.runtime.new_store(env);
        self.start()
            .expect("a module that instantiated once instantiates again");
    }

    /// The module this instance runs.
    #[must_use]
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The module's description.
    #[must_use]
    pub fn def(&self) -> &ModuleDef {
        &self.module.def
    }

    /// The id of the system table `locus_area` ([`locus_types::abi::AREA_TABLE`]): each client's area of
    /// interest as the module set it, one row per identity. Its rows, in changesets as in the database, decode with
    /// [`AreaRow::decode`](locus_types::abi::AreaRow::decode).
    #[must_use]
    pub fn area_table(&self) -> TableId {
        self.area_table
    }

    /// The module log lines written since the last drain, oldest first (each is also emitted as a `tracing`
    /// event with target `locus::module`).
    pub fn drain_logs(&mut self) -> Vec<LogLine> {
        self.store.data_mut().env.drain_logs()
    }

    /// Run `f` with `db` moved into the store's environment, where the host calls reach it, and move it back
    /// afterwards — also when `f` unwinds, after rolling back the call it left running (the wasm instance is then
    /// replaced before the next call, as after a trap).
    ///
    /// # Panics
    ///
    /// If `db` is not the database the instance was made for (its `locus_area` table is not where it was).
    fn lend<R>(&mut self, db: &mut Database, f: impl FnOnce(&mut ModuleInstance) -> R) -> R {
        /// Gives the database back when dropped, unwinding included.
        struct Lent<'a> {
            instance: &'a mut ModuleInstance,
            db: &'a mut Database,
        }
        impl Drop for Lent<'_> {
            fn drop(&mut self) {
                let env = &mut self.instance.store.data_mut().env;
                // A call still running here was left by a panic unwinding out of it.
                let unwound = env.in_call_now();
                if unwound {
                    let _rolled_back = env.end_call(false);
                }
                std::mem::swap(&mut env.db, self.db);
                self.instance.unwound |= unwound;
            }
        }
        assert!(
            db.table(self.area_table)
                .is_some_and(|t| t.name() == locus_types::abi::AREA_TABLE),
            "a module instance is lent the database it was made for"
        );
        if std::mem::take(&mut self.unwound) {
            self.restart();
        }
        std::mem::swap(&mut self.store.data_mut().env.db, db);
        let lent = Lent { instance: self, db };
        f(&mut *lent.instance)
    }

    /// Call a client-callable reducer by name with MessagePack arguments (an array, one element per parameter),
    /// over `db` (lent for the call). Only `Client` reducers can be called this way; a call another region sent is
    /// [`ModuleInstance::call_from_region`]'s.
    ///
    /// The arguments are read by [`codec::normalize_args`]: a float parameter also accepts an integer or the other
    /// float width when the number converts, and the reducer is given the canonical encoding.
    ///
    /// # Errors
    ///
    /// A [`CallError`]; the call's writes are then rolled back.
    pub fn call(
        &mut self,
        db: &mut Database,
        reducer: &str,
        args: &[u8],
        ctx: &CallContext,
    ) -> Result<Changeset, CallError> {
        self.lend(db, |this| this.call_lent(reducer, args, ctx))
    }

    fn call_lent(
        &mut self,
        reducer: &str,
        args: &[u8],
        ctx: &CallContext,
    ) -> Result<Changeset, CallError> {
        let &index = self
            .module
            .reducers
            .get(reducer)
            .ok_or_else(|| CallError::NoSuchReducer(reducer.to_owned()))?;
        let def = &self.module.def.reducers[index];
        if def.kind != ReducerKind::Client {
            return Err(CallError::NotCallable {
                reducer: reducer.to_owned(),
                kind: def.kind,
            });
        }
        // A client's numbers in another form than the parameter's float type are converted (when they convert
        // exactly enough), so the reducer always gets the one encoding. This is the arguments' one check: what
        // `normalize_args` returns is a valid row of the parameters.
        let args = codec::normalize_args(&def.params, args, &mut self.offsets).map_err(|e| {
            CallError::BadArguments {
                reducer: reducer.to_owned(),
                message: e.to_string(),
            }
        })?;
        self.invoke_checked(index, &args, ctx, None)
    }

    /// Run a reducer call another region of the world sent — a `RegionMessage::Call` of `locus_region`, which a
    /// reducer there (or here) wrote with `region_send` / `region_broadcast` — over `db` (lent for the call), with
    /// `ctx.sender` the message's sender: the identity the sending reducer ran as.
    ///
    /// Only a reducer whose kind accepts calls from regions runs ([`ReducerKind::accepts_region_calls`]: a `Region`
    /// reducer, which nothing else can call, or a `Client` one). The arguments come from a module, so they are
    /// checked exactly, as a row of the parameters (no float conversion, unlike [`ModuleInstance::call`]); the
    /// sending host checked them against the same reducer already, so a refusal means the receiving module is
    /// another build (a publish under way).
    ///
    /// The host does not record which messages ran: applying each exactly once is the caller's (the server records
    /// a message's number with its outcome).
    ///
    /// # Errors
    ///
    /// [`CallError::NoSuchReducer`]; [`CallError::NotCallable`] for a reducer of another kind;
    /// [`CallError::BadArguments`]; or the reducer's failure. The call's writes are then rolled back.
    pub fn call_from_region(
        &mut self,
        db: &mut Database,
        reducer: &str,
        args: &[u8],
        ctx: &CallContext,
    ) -> Result<Changeset, CallError> {
        self.lend(db, |this| {
            let &index = this
                .module
                .reducers
                .get(reducer)
                .ok_or_else(|| CallError::NoSuchReducer(reducer.to_owned()))?;
            let kind = this.module.def.reducers[index].kind;
            if !kind.accepts_region_calls() {
                return Err(CallError::NotCallable {
                    reducer: reducer.to_owned(),
                    kind,
                });
            }
            this.invoke(index, args, ctx, None)
        })
    }

    fn lifecycle(
        &mut self,
        kind: ReducerKind,
        args: &[u8],
        ctx: &CallContext,
    ) -> Result<Changeset, CallError> {
        match self.module.def.reducers.iter().position(|r| r.kind == kind) {
            Some(index) => self.invoke(index, args, ctx, None),
            None => Ok(Changeset::default()),
        }
    }

    /// Run the `init` reducer, if the module has one (once, when the world is created), over `db`.
    ///
    /// # Errors
    ///
    /// A [`CallError`] if it fails; its writes are rolled back.
    pub fn init(&mut self, db: &mut Database, ctx: &CallContext) -> Result<Changeset, CallError> {
        self.lend(db, |this| this.lifecycle(ReducerKind::Init, &[0x90], ctx))
    }

    /// Run the `client_connected` reducer, if any, with `ctx.sender` the client, over `db`.
    ///
    /// # Errors
    ///
    /// A [`CallError`] if it fails; its writes are rolled back.
    pub fn client_connected(
        &mut self,
        db: &mut Database,
        ctx: &CallContext,
    ) -> Result<Changeset, CallError> {
        self.lend(db, |this| {
            this.lifecycle(ReducerKind::ClientConnected, &[0x90], ctx)
        })
    }

    /// Run the `client_disconnected` reducer, if any, with `ctx.sender` the client, over `db`.
    ///
    /// # Errors
    ///
    /// A [`CallError`] if it fails; its writes are rolled back.
    pub fn client_disconnected(
        &mut self,
        db: &mut Database,
        ctx: &CallContext,
    ) -> Result<Changeset, CallError> {
        self.lend(db, |this| {
            this.lifecycle(ReducerKind::ClientDisconnected, &[0x90], ctx)
        })
    }

    /// Run the `tick` reducer, if any, with `dt` (seconds since the previous tick), over `db`.
    ///
    /// # Errors
    ///
    /// A [`CallError`] if it fails; its writes are rolled back.
    pub fn tick(
        &mut self,
        db: &mut Database,
        dt: f32,
        ctx: &CallContext,
    ) -> Result<Changeset, CallError> {
        let mut args = std::mem::take(&mut self.tick_args);
        args.clear();
        args.push(0x91);
        args.push(0xca);
        args.extend_from_slice(&dt.to_be_bytes());
        let r = self.lend(db, |this| this.lifecycle(ReducerKind::Tick, &args, ctx));
        self.tick_args = args;
        r
    }

    /// Run every periodic (`Every`) reducer whose time has come and every one-shot schedule with `at <= now`,
    /// each in its own transaction: periodic ones first (in name order), then schedules (earliest first).
    ///
    /// A periodic reducer first becomes due one period after the first `run_due`; it runs at most once per
    /// `run_due` even if several periods passed (missed periods are skipped, never queued).
    ///
    /// Each run's RNG seed is derived from `ctx.rng_seed` and the run's position in the pass, so runs due at the same
    /// time (e.g. many schedules made by one reducer) draw different numbers.
    ///
    /// `db` is lent for the whole pass.
    pub fn run_due(
        &mut self,
        db: &mut Database,
        now: Timestamp,
        ctx: &CallContext,
    ) -> Vec<ScheduledRun> {
        self.lend(db, |this| this.run_due_lent(now, ctx))
    }

    fn run_due_lent(&mut self, now: Timestamp, ctx: &CallContext) -> Vec<ScheduledRun> {
        let mut runs = Vec::new();
        let mut position = 0u64;
        let mut next_ctx = || {
            position += 1;
            CallContext {
                rng_seed: mix_seed(ctx.rng_seed, position),
                ..*ctx
            }
        };
        for i in 0..self.every.len() {
            let p = &mut self.every[i];
            let next = *p.next.get_or_insert(now.add_micros(p.period_micros));
            if next > now {
                continue;
            }
            let behind = (now.0 - next.0) / p.period_micros.max(1);
            p.next = Some(next.add_micros((behind + 1) * p.period_micros));
            let reducer = p.reducer;
            let result = self.invoke(reducer, &[0x90], &next_ctx(), None);
            let (changeset, error) = match result {
                Ok(c) => (c, None),
                Err(e) => (Changeset::default(), Some(e)),
            };
            runs.push(ScheduledRun {
                reducer: self.names[reducer].to_string(),
                changeset,
                error,
            });
        }
        let due = self.store.data().env.due_schedules(now);
        for row in due {
            if !self.store.data().env.schedule_exists(row.id) {
                continue; // cancelled by a reducer that ran earlier in this pass
            }
            let index = self.module.reducers.get(&row.reducer).copied();
            let kind = index.map(|i| self.module.def.reducers[i].kind);
            let Some(index) = index.filter(|_| kind == Some(ReducerKind::Scheduled)) else {
                // The module version that made this schedule had a `Scheduled` reducer of this name and this one
                // does not: drop the schedule rather than run something else.
                let error = match kind {
                    None => CallError::NoSuchReducer(row.reducer.clone()),
                    Some(kind) => CallError::NotCallable {
                        reducer: row.reducer.clone(),
                        kind,
                    },
                };
                let changeset = self.store.data_mut().env.consume_schedule(row.id);
                runs.push(ScheduledRun {
                    error: Some(error),
                    reducer: row.reducer,
                    changeset,
                });
                continue;
            };
            match self.invoke(index, &row.args, &next_ctx(), Some(row.id)) {
                Ok(changeset) => runs.push(ScheduledRun {
                    reducer: row.reducer,
                    changeset,
                    error: None,
                }),
                Err(e) => {
                    let changeset = self.store.data_mut().env.consume_schedule(row.id);
                    runs.push(ScheduledRun {
                        reducer: row.reducer,
                        changeset,
                        error: Some(e),
                    });
                }
            }
        }
        runs
    }

    /// Bring `db`'s data (lent for it) from module version `from` to this module's, `to`: in one transaction, record
    /// `to` in `locus_module` and run the module's `Upgrade` reducer, if it has one, with `[from, to]` and `ctx`. The
    /// transaction is left open — its writes are in `db` — and returned, for the caller to commit or roll back
    /// against `db` once it knows whether the upgrade goes ahead.
    ///
    /// # Errors
    ///
    /// The upgrade reducer's [`CallError`]; the transaction (the version's write included) is then rolled back.
    pub(crate) fn upgrade_data(
        &mut self,
        db: &mut Database,
        from: u32,
        to: u32,
        ctx: &CallContext,
    ) -> Result<TxLog, CallError> {
        let hook = self
            .module
            .def
            .reducers
            .iter()
            .position(|r| r.kind == ReducerKind::Upgrade);
        let args = rmp_serde::to_vec(&(from, to)).expect("two integers encode");
        self.lend(db, |this| {
            let name = hook.map_or_else(|| Arc::from(""), |i| this.names[i].clone());
            let env = &mut this.store.data_mut().env;
            env.begin_call(name, &args, *ctx);
            env.put_module_version(to)
                .expect("the instance's database has its `locus_module` table");
            if let Some(index) = hook {
                this.run_entry(index, args.len())?;
            }
            Ok(this.store.data_mut().env.detach_call())
        })
    }

    /// Run reducer `index` in a transaction, after checking `args` against its parameters. `schedule` is a schedule
    /// row to delete in the same transaction.
    fn invoke(
        &mut self,
        index: usize,
        args: &[u8],
        ctx: &CallContext,
        schedule: Option<u64>,
    ) -> Result<Changeset, CallError> {
        let def = &self.module.def.reducers[index];
        if let Err(e) = codec::validate_row(&def.params, args, &mut self.offsets) {
            return Err(CallError::BadArguments {
                reducer: self.names[index].to_string(),
                message: e.to_string(),
            });
        }
        self.invoke_checked(index, args, ctx, schedule)
    }

    /// [`Self::invoke`] with `args` already known to be a valid row of the reducer's parameters.
    fn invoke_checked(
        &mut self,
        index: usize,
        args: &[u8],
        ctx: &CallContext,
        schedule: Option<u64>,
    ) -> Result<Changeset, CallError> {
        let name = &self.names[index];
        let env = &mut self.store.data_mut().env;
        env.begin_call(name.clone(), args, *ctx);
        if let Some(id) = schedule {
            env.delete_schedule_in_call(id)
                .expect("a due schedule row exists");
        }
        self.run_entry(index, args.len())?;
        Ok(self.store.data_mut().env.end_call(true).0)
    }

    /// Call reducer `index`'s entry point, with `args_len` the length of the arguments of the call begun in the
    /// environment. On success the call is still open, for the caller to end; on any failure it has been ended and
    /// rolled back (and after a trap the instance replaced).
    fn run_entry(&mut self, index: usize, args_len: usize) -> Result<(), CallError> {
        self.module.runtime.arm(&mut self.store);
        let outcome = match self.entries[index].call(&mut self.store, args_len as u32) {
            Ok(status) => Outcome::Status(status),
            Err(e) => Outcome::Trap(e),
        };
        // The reducer's name as an owned string is only needed on the error paths.
        let reducer = || self.names[index].to_string();
        let env = &mut self.store.data_mut().env;
        match outcome {
            Outcome::Status(code) => match ReducerStatus::from_code(code) {
                Some(ReducerStatus::Ok) => Ok(()),
                Some(status) => {
                    let message = env.end_call(false).1.unwrap_or_default();
                    Err(if status == ReducerStatus::BadArguments {
                        CallError::BadArguments {
                            reducer: reducer(),
                            message,
                        }
                    } else {
                        CallError::Failed {
                            reducer: reducer(),
                            message,
                        }
                    })
                }
                None => {
                    env.end_call(false);
                    Err(CallError::Trapped {
                        reducer: reducer(),
                        message: format!("the entry point returned an unknown status {code}"),
                        backtrace: None,
                    })
                }
            },
            Outcome::Trap(e) => {
                env.end_call(false);
                let panic = env.take_panic();
                let error = classify(reducer(), &e, panic);
                self.restart();
                Err(error)
            }
        }
    }
}

/// What a trap means for the caller. A trap after the module reported a panic (`reducer_panic`) is that panic;
/// running out of the budget or the memory limit wins over a reported panic (the hook itself may have been what
/// ran too long).
fn classify(
    reducer: String,
    e: &wasmtime::Error,
    panic: Option<(String, Option<PanicLocation>)>,
) -> CallError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            return CallError::Interrupted {
                reducer,
                budget: "time",
            };
        }
        Some(Trap::OutOfFuel) => {
            return CallError::Interrupted {
                reducer,
                budget: "fuel",
            };
        }
        _ => {}
    }
    if let Some(Fault::MemoryLimit { limit, .. }) = e.downcast_ref::<Fault>() {
        return CallError::MemoryLimit {
            reducer,
            limit: *limit,
        };
    }
    let trace = e.downcast_ref::<WasmBacktrace>();
    match panic {
        Some((message, location)) => CallError::Panicked {
            reducer,
            message,
            location,
            backtrace: trace.map(|t| Backtrace::from_wasm(t, true)),
        },
        None => CallError::Trapped {
            reducer,
            message: trap_message(e),
            backtrace: trace.map(|t| Backtrace::from_wasm(t, false)),
        },
    }
}

/// A trap in one line, without the backtrace wasmtime attaches as context: the trap's own description, the host
/// call's complaint, or else the innermost error's text.
fn trap_message(e: &wasmtime::Error) -> String {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        // Wasmtime says "wasm trap: wasm `unreachable` instruction executed"; the caller's text already says trapped.
        let text = trap.to_string();
        return text.strip_prefix("wasm trap: ").unwrap_or(&text).to_owned();
    }
    if let Some(fault) = e.downcast_ref::<Fault>() {
        return fault.to_string();
    }
    truncated(&e.root_cause().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_types::{Identity, Tick, Vec2};

    /// The smallest module: one client reducer, `noop`, that does nothing.
    fn noop() -> Module {
        let wasm = wat::parse_str(
            r#"(module
              (memory (export "memory") 1)
              (data (i32.const 16) "\83\a4name\a4noop\a4kind\a6Client\a6params\90")
              (func (export "__locus_abi_version") (result i32) i32.const 1)
              (func (export "__locus_describe_reducer_noop") (result i64)
                i64.const 68719476767) ;; (16 << 32) | 31
              (func (export "__locus_reducer_noop") (param i32) (result i32) i32.const 0))"#,
        )
        .unwrap();
        Runtime::new(HostConfig::default())
            .unwrap()
            .load(&wasm)
            .unwrap()
    }

    #[test]
    fn a_panic_inside_a_call_gives_the_database_back_rolled_back_and_the_next_call_works() {
        let mut db = Database::default();
        let mut inst = noop().instantiate(&mut db).unwrap();
        let ctx = CallContext::server(Tick(1), Timestamp(0), 7);
        let who = Identity([1; 32]);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inst.lend(&mut db, |this| {
                let env = &mut this.store.data_mut().env;
                env.begin_call("noop".into(), &[0x90], ctx);
                env.area_fixed(who, Vec2::ZERO, 10.0, 12.0).unwrap();
                assert!(crate::area(&env.db, who).is_some(), "written in the call");
                panic!("a bug in a host call");
            })
        }));
        assert!(panicked.is_err());
        assert!(
            db.table_id(locus_types::abi::AREA_TABLE).is_some(),
            "the owner's database came back"
        );
        assert_eq!(crate::area(&db, who), None, "with the call rolled back");
        assert!(inst.unwound);
        inst.call(&mut db, "noop", &[0x90], &ctx).unwrap();
        assert!(
            !inst.unwound,
            "the wasm instance was replaced before the next call"
        );
    }

    #[test]
    #[should_panic(expected = "lent the database it was made for")]
    fn an_instance_refuses_another_database() {
        let mut db = Database::default();
        let mut inst = noop().instantiate(&mut db).unwrap();
        let ctx = CallContext::server(Tick(1), Timestamp(0), 7);
        let _ = inst.call(&mut Database::default(), "noop", &[0x90], &ctx);
    }
}
