//! One error enum per operation. Every variant names the table (and column or key) it is about.

use locus_types::codec::RowError;
use locus_types::{ColumnType, SchemaError, TableId, Value, Vec2};
use thiserror::Error;

/// Why [`Database::create_table`](crate::Database::create_table) failed.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum CreateTableError {
    /// The definition breaks a schema invariant.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A table with this name already exists.
    #[error("a table named `{name}` already exists")]
    DuplicateName {
        /// The name.
        name: String,
    },
}

/// Why an insert failed. The table is unchanged.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum InsertError {
    /// No table has this id.
    #[error("no table {0:?}")]
    NoSuchTable(TableId),
    /// The bytes are not a valid row of the table.
    #[error("table `{table}`: {source}")]
    Row {
        /// The table.
        table: String,
        /// What is wrong with the row.
        source: RowError,
    },
    /// A row with this primary key exists.
    #[error("table `{table}` already has a row with primary key {key:?}")]
    DuplicateKey {
        /// The table.
        table: String,
        /// The key.
        key: Value,
    },
    /// Another row holds this value of a unique column.
    #[error("table `{table}`: another row already has {column} = {key:?}")]
    UniqueViolation {
        /// The table.
        table: String,
        /// The unique column.
        column: String,
        /// The value.
        key: Value,
    },
    /// The spatial column holds a position that is not finite or beyond ±[`MAX_COORD`](crate::MAX_COORD).
    #[error("table `{table}`: position {pos} in `{column}` is not finite or out of range")]
    InvalidPosition {
        /// The table.
        table: String,
        /// The spatial column.
        column: String,
        /// The position.
        pos: Vec2,
    },
    /// The auto_inc sequence passed the largest value of the key's type.
    #[error("table `{table}`: the auto_inc sequence is exhausted")]
    SequenceExhausted {
        /// The table.
        table: String,
    },
}

/// Why an update failed. The table is unchanged.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum UpdateError {
    /// No table has this id.
    #[error("no table {0:?}")]
    NoSuchTable(TableId),
    /// The bytes are not a valid row of the table.
    #[error("table `{table}`: {source}")]
    Row {
        /// The table.
        table: String,
        /// What is wrong with the row.
        source: RowError,
    },
    /// No row has the new row's primary key (an update cannot change a primary key: delete and insert).
    #[error("table `{table}` has no row with primary key {key:?}")]
    NotFound {
        /// The table.
        table: String,
        /// The key.
        key: Value,
    },
    /// Another row holds this value of a unique column.
    #[error("table `{table}`: another row already has {column} = {key:?}")]
    UniqueViolation {
        /// The table.
        table: String,
        /// The unique column.
        column: String,
        /// The value.
        key: Value,
    },
    /// The spatial column holds a position that is not finite or out of range.
    #[error("table `{table}`: position {pos} in `{column}` is not finite or out of range")]
    InvalidPosition {
        /// The table.
        table: String,
        /// The spatial column.
        column: String,
        /// The position.
        pos: Vec2,
    },
}

/// Why a delete failed. The table is unchanged.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum DeleteError {
    /// No table has this id.
    #[error("no table {0:?}")]
    NoSuchTable(TableId),
    /// The key is not a value of the primary key's type.
    #[error("table `{table}`: primary key `{column}` is {expected:?}, got {found:?}")]
    KeyType {
        /// The table.
        table: String,
        /// The primary-key column.
        column: String,
        /// Its type.
        expected: ColumnType,
        /// The key given.
        found: Value,
    },
    /// No row has this primary key.
    #[error("table `{table}` has no row with primary key {key:?}")]
    NotFound {
        /// The table.
        table: String,
        /// The key.
        key: Value,
    },
}

/// Why a lookup or query could not run.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum QueryError {
    /// No table has this id.
    #[error("no table {0:?}")]
    NoSuchTable(TableId),
    /// The column does not exist.
    #[error("table `{table}` has no column #{column}")]
    NoSuchColumn {
        /// The table.
        table: String,
        /// The column id.
        column: u16,
    },
    /// The column has no index that answers this query.
    #[error("table `{table}`: column `{column}` has no index for {query}")]
    NoIndex {
        /// The table.
        table: String,
        /// The column (empty for a table with no spatial index).
        column: String,
        /// The query ("equality", "range", "spatial").
        query: &'static str,
    },
    /// The key is not a value of the column's type.
    #[error("table `{table}`: column `{column}` is {expected:?}, got {found:?}")]
    KeyType {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its type.
        expected: ColumnType,
        /// The key given.
        found: Value,
    },
}

/// Why [`Database::apply`](crate::Database::apply) refused a changeset. The database is unchanged.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum ApplyError {
    /// No table has this id.
    #[error("no table {0:?}")]
    NoSuchTable(TableId),
    /// A row in the changeset is not a valid row of its table.
    #[error("table `{table}`: {source}")]
    Row {
        /// The table.
        table: String,
        /// What is wrong with the row.
        source: RowError,
    },
    /// A deleted or updated row's old value is not the row stored under its key.
    #[error(
        "table `{table}`: the changeset's old row for key {key:?} does not match the stored row"
    )]
    Mismatch {
        /// The table.
        table: String,
        /// The key.
        key: Value,
    },
    /// Inserting a row of the changeset failed.
    #[error(transparent)]
    Insert(#[from] InsertError),
    /// Updating a row failed ([`Redo::update`](crate::Redo::update)).
    #[error(transparent)]
    Update(#[from] UpdateError),
}

/// Why [`Database::build_table`](crate::Database::build_table) could not build a table. The database is unchanged
/// (it is only read).
#[derive(Clone, Debug, PartialEq, Error)]
pub enum BuildTableError {
    /// The definition breaks a schema invariant.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A row does not fit the table (invalid, a duplicate key, a unique value held twice, a bad position).
    #[error(transparent)]
    Insert(#[from] InsertError),
}

/// Why [`Database::swap_tables`](crate::Database::swap_tables) refused the tables. The database is unchanged.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum SwapTablesError {
    /// The table's id is neither an existing table's nor the next new one's.
    #[error("table `{name}` has id {id:?}, but the database has {tables} tables")]
    BadId {
        /// The table given.
        name: String,
        /// Its id.
        id: TableId,
        /// How many tables the database had (counting those appended before it).
        tables: usize,
    },
    /// The table would replace one of another name.
    #[error("table `{name}` would replace table `{replaced}` ({id:?})")]
    Renamed {
        /// The table given.
        name: String,
        /// The name of the table its id holds.
        replaced: String,
        /// The id.
        id: TableId,
    },
    /// A new table's name is taken, or two of the tables given have the same name.
    #[error("a table named `{name}` already exists or is given twice")]
    DuplicateName {
        /// The name.
        name: String,
    },
}
