//! One error enum per operation of the host.

use locus_store::CreateTableError;
use locus_types::{ReducerKind, SchemaError};
use thiserror::Error;

use crate::backtrace::Backtrace;

/// Why a [`Runtime`](crate::Runtime) could not be created.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// Wasmtime refused the engine configuration.
    #[error("cannot create the wasmtime engine: {0}")]
    Engine(String),
    /// The epoch thread could not be started.
    #[error("cannot start the epoch thread: {0}")]
    EpochThread(#[from] std::io::Error),
}

/// Why a module could not be loaded. Each variant names what is wrong.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The bytes are not a valid WebAssembly module (or use a feature the host does not enable).
    #[error("not a valid WebAssembly module: {0}")]
    Compile(String),
    /// The module imports from an ABI version this host does not speak.
    #[error("the module imports from `{found}`; this host provides `{expected}`")]
    AbiModule {
        /// The import module the module uses.
        found: String,
        /// The one this host provides.
        expected: &'static str,
    },
    /// The module imports something the host does not provide.
    #[error("the module imports `{module}::{name}`, which this host does not provide")]
    UnknownImport {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
    },
    /// An import has the right name but the wrong type; wasmtime's explanation names it.
    #[error("an import has the wrong type: {0}")]
    ImportType(String),
    /// A required export is missing.
    #[error("the module does not export `{0}`")]
    MissingExport(&'static str),
    /// An export has the wrong kind or signature.
    #[error("export `{name}` must be {expected}")]
    ExportType {
        /// The export.
        name: String,
        /// What it must be.
        expected: &'static str,
    },
    /// `__locus_abi_version` returned a version this host does not speak.
    #[error("the module was built for ABI version {found}; this host speaks version {expected}")]
    AbiVersion {
        /// What the module returned.
        found: u32,
        /// What this host speaks.
        expected: u32,
    },
    /// Instantiating the module to read its description failed (e.g. its start function trapped, or its initial
    /// memory exceeds the limit).
    #[error("cannot instantiate the module: {0}")]
    Instantiate(String),
    /// A describe export trapped or returned bytes that are not a valid description.
    #[error("export `{export}` gave no valid description: {reason}")]
    Describe {
        /// The export.
        export: String,
        /// What went wrong.
        reason: String,
    },
    /// A table definition is invalid.
    #[error("table `{table}`: {source}")]
    Schema {
        /// The table.
        table: String,
        /// What is wrong with it.
        source: SchemaError,
    },
    /// A description's name differs from its export's name.
    #[error("export `{export}` describes `{name}`; the name after the prefix must match")]
    NameMismatch {
        /// The export.
        export: String,
        /// The name in the description.
        name: String,
    },
    /// A table or reducer uses a name reserved for the engine.
    #[error("`{0}` uses the reserved prefix `locus_`")]
    ReservedName(String),
    /// A reducer's description is inconsistent.
    #[error("reducer `{reducer}`: {reason}")]
    Reducer {
        /// The reducer.
        reducer: String,
        /// What is wrong.
        reason: String,
    },
    /// Two reducers claim a lifecycle role that only one may have.
    #[error("reducers `{first}` and `{second}` are both {kind:?}; a module has at most one")]
    DuplicateLifecycle {
        /// The role.
        kind: ReducerKind,
        /// The first claimant.
        first: String,
        /// The second claimant.
        second: String,
    },
}

/// Why a module could not be instantiated over a database.
#[derive(Debug, Error)]
pub enum InstantiateError {
    /// A table could not be created.
    #[error(transparent)]
    CreateTable(#[from] CreateTableError),
    /// The database already has a table of this name with another definition (schema migration is not done here).
    #[error("the database's table `{0}` differs from the module's definition")]
    SchemaMismatch(String),
    /// Wasmtime failed to instantiate the module.
    #[error("cannot instantiate the module: {0}")]
    Wasm(String),
    /// The database's data is at another module version than the module's (bringing it over is an upgrade's:
    /// `Module::upgrade`, `Module::instantiate_upgrading`).
    #[error("the data is at module version {data}; this module is version {module}")]
    VersionMismatch {
        /// The version the data is at (`locus_types::abi::MODULE_TABLE`).
        data: u32,
        /// The module's.
        module: u32,
    },
}

/// Why a reducer call did not commit. In every case its writes were rolled back and the instance stays usable.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CallError {
    /// No reducer has this name.
    #[error("no reducer named `{0}`")]
    NoSuchReducer(String),
    /// The reducer exists but may not be called this way (e.g. a client calling `init` or a `Region` reducer, or
    /// another region's call naming a `Scheduled` one).
    #[error("reducer `{reducer}` is {kind:?} and cannot be called by a client")]
    NotCallable {
        /// The reducer.
        reducer: String,
        /// Its kind.
        kind: ReducerKind,
    },
    /// The arguments do not match the reducer's parameters.
    #[error("bad arguments for `{reducer}`: {message}")]
    BadArguments {
        /// The reducer.
        reducer: String,
        /// What is wrong.
        message: String,
    },
    /// The reducer returned an error.
    #[error("reducer `{reducer}` failed: {message}")]
    Failed {
        /// The reducer.
        reducer: String,
        /// Its message (empty if it gave none).
        message: String,
    },
    /// The reducer ran past its time or fuel budget and was stopped.
    #[error("reducer `{reducer}` was stopped: it exceeded its {budget} budget")]
    Interrupted {
        /// The reducer.
        reducer: String,
        /// "time" or "fuel".
        budget: &'static str,
    },
    /// The reducer tried to grow its memory past the limit.
    #[error("reducer `{reducer}` was stopped: memory limit of {limit} bytes exceeded")]
    MemoryLimit {
        /// The reducer.
        reducer: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The reducer panicked: the module reported the panic (`reducer_panic`, which the Rust SDK's panic hook calls)
    /// and then trapped. The message is the panic's; [`Display`](std::fmt::Display) leaves the location out (it
    /// is what a client is told), [`CallError::detailed`] puts it in (for the world's operator).
    #[error("reducer `{reducer}` panicked: {message}")]
    Panicked {
        /// The reducer.
        reducer: String,
        /// The panic's message (`panic!("…")`'s text; `Box<dyn Any>` for a payload that is not a string).
        message: String,
        /// Where it panicked, if the module said.
        location: Option<PanicLocation>,
        /// The wasm backtrace of the trap, demangled, without the panic runtime's own frames: for the server's
        /// log, never for a client.
        backtrace: Option<Backtrace>,
    },
    /// The reducer trapped without reporting a panic (an `unreachable` in hand-written wasm, an out-of-bounds
    /// access, a bad host-call pointer, …), or returned an unknown status.
    #[error("reducer `{reducer}` trapped: {message}")]
    Trapped {
        /// The reducer.
        reducer: String,
        /// The trap, in one line: wasmtime's trap description (``wasm `unreachable` instruction executed``), the
        /// host call's complaint (``host call `get`: buffer 0xfff0+100 lies outside the module's memory``), or
        /// ``the entry point returned an unknown status 7``. Never the backtrace.
        message: String,
        /// The wasm backtrace of the trap, demangled: for the server's log, never for a client.
        backtrace: Option<Backtrace>,
    },
}

/// Where a reducer panicked: the source location its panic hook reported (Rust's `std::panic::Location`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanicLocation {
    /// The source file, as the module's compiler named it (e.g. `game-module/src/items.rs`).
    pub file: String,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

impl std::fmt::Display for PanicLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl CallError {
    /// The reducer the error is about.
    #[must_use]
    pub fn reducer(&self) -> &str {
        match self {
            CallError::NoSuchReducer(reducer)
            | CallError::NotCallable { reducer, .. }
            | CallError::BadArguments { reducer, .. }
            | CallError::Failed { reducer, .. }
            | CallError::Interrupted { reducer, .. }
            | CallError::MemoryLimit { reducer, .. }
            | CallError::Panicked { reducer, .. }
            | CallError::Trapped { reducer, .. } => reducer,
        }
    }

    /// The error as the world's operator is told it: the [`Display`](std::fmt::Display) text, except that a panic
    /// names where it happened — ``reducer `craft` panicked at game-module/src/items.rs:42:9: no such item`` —
    /// when the module said.
    #[must_use]
    pub fn detailed(&self) -> String {
        match self {
            CallError::Panicked {
                reducer,
                message,
                location: Some(location),
                ..
            } => format!("reducer `{reducer}` panicked at {location}: {message}"),
            other => other.to_string(),
        }
    }

    /// The trap's wasm backtrace, demangled, if the error is a trap that had one ([`CallError::Panicked`],
    /// [`CallError::Trapped`]): for the server's log.
    #[must_use]
    pub fn backtrace(&self) -> Option<&Backtrace> {
        match self {
            CallError::Panicked { backtrace, .. } | CallError::Trapped { backtrace, .. } => {
                backtrace.as_ref()
            }
            _ => None,
        }
    }
}
