//! One error enum per operation of the host.

use locus_store::CreateTableError;
use locus_types::{ReducerKind, SchemaError};
use thiserror::Error;

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
}

/// Why a reducer call did not commit. In every case its writes were rolled back and the instance stays usable.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CallError {
    /// No reducer has this name.
    #[error("no reducer named `{0}`")]
    NoSuchReducer(String),
    /// The reducer exists but may not be called this way (e.g. a client calling `init`).
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
    /// The reducer trapped (a panic, an unreachable, a bad host-call pointer, ...).
    #[error("reducer `{reducer}` trapped: {message}")]
    Trapped {
        /// The reducer.
        reducer: String,
        /// The trap, with the wasm backtrace when there is one.
        message: String,
    },
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
            | CallError::Trapped { reducer, .. } => reducer,
        }
    }
}
