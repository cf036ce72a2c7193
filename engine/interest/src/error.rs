//! Errors, one enum per operation.

use locus_types::{ColumnId, TableId, Value, Vec2};
use thiserror::Error;

use crate::ClientId;

/// Why [`Interest::handle_area`](crate::Interest::handle_area) refused an area (or the stage refused an area the
/// module set in its area table).
#[derive(Clone, Debug, PartialEq, Error)]
pub enum AreaError {
    /// No client has this id.
    #[error("no client {0:?}")]
    NoSuchClient(ClientId),
    /// The followed table has no spatial column (or does not exist).
    #[error("table {0:?} is not a spatial table: an area can only follow a row with a position")]
    NotSpatial(TableId),
    /// The radii are not `0 ≤ enter ≤ leave ≤ max`.
    #[error("area radii must satisfy 0 <= enter ({enter}) <= leave ({leave}) <= {max}")]
    Radius {
        /// The enter radius given.
        enter: f32,
        /// The leave radius given.
        leave: f32,
        /// The configured maximum.
        max: f32,
    },
    /// A fixed center that is not a finite point.
    #[error("the area's center {0} is not a finite point")]
    Center(Vec2),
    /// A module-set area follows a key that is not a value of the followed table's primary key column.
    #[error("the area follows a key that is not a primary key of table {0:?}")]
    Key(TableId),
}

/// Why [`Interest::handle_subscribe`](crate::Interest::handle_subscribe) refused a subscription.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum SubscribeError {
    /// No client has this id.
    #[error("no client {0:?}")]
    NoSuchClient(ClientId),
    /// No table has this id.
    #[error("no table {0:?}")]
    NoSuchTable(TableId),
    /// The table is private: its rows never leave the server.
    #[error("table {0:?} is private: its rows are never sent to clients")]
    Private(TableId),
    /// The filter names a column the table does not have.
    #[error("the filter names column {0:?}, which the table does not have")]
    NoSuchColumn(ColumnId),
    /// The filter's value does not fit the column's type.
    #[error("the filter value {value:?} does not fit column `{column}`")]
    ValueType {
        /// The column.
        column: String,
        /// The value given.
        value: Value,
    },
    /// [`Filter::Owner`](crate::Filter::Owner) on a table without an owner column.
    #[error("table {0:?} has no owner column, so an owner filter cannot apply")]
    NoOwner(TableId),
}
