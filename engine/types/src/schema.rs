//! The schema model: what a module declares about its tables.
//!
//! A [`TableDef`] lists columns (each with a [`ColumnType`]), names the primary-key column, and declares
//! single-column indexes ([`IndexKind`]). [`TableDef::validate`] checks the invariants every other crate relies on:
//!
//! - column names are non-empty and unique within the table; a table has at least one column and at most
//!   [`MAX_COLUMNS`];
//! - every table has exactly one primary-key column, of an indexable type; `auto_inc` needs an integer key;
//! - indexes name existing columns of an indexable type, at most one index per (column, kind), and at most one
//!   [`IndexKind::Spatial`] index per table, on a [`ColumnType::Vec2`] column;
//! - the `owner` column, if any, is an [`ColumnType::Identity`];
//! - a [`movable`](TableDef::movable) table has a spatial column.
//!
//! Build definitions with [`TableDef::builder`], which resolves column names and validates on `build`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ColumnId;

/// The most columns a table may have.
pub const MAX_COLUMNS: usize = 256;

/// The type of a column, which fixes its MessagePack encoding in a row (see [`crate::codec`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    /// `true` / `false`.
    Bool,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// UTF-8 text.
    String,
    /// Raw bytes.
    Bytes,
    /// A 2-D position or direction (`glam::Vec2`): two `f32`s.
    Vec2,
    /// A client identity (32 bytes).
    Identity,
    /// Microseconds since the Unix epoch.
    Timestamp,
    /// Any single MessagePack value, stored opaquely (a nested serde type). Not indexable.
    Opaque,
    /// Either MessagePack `nil` or a value of the inner type.
    Option(Box<ColumnType>),
}

impl ColumnType {
    /// Whether the type is one of the integer types.
    #[must_use]
    pub fn is_integer(&self) -> bool {
        matches!(
            self,
            ColumnType::I8
                | ColumnType::I16
                | ColumnType::I32
                | ColumnType::I64
                | ColumnType::U8
                | ColumnType::U16
                | ColumnType::U32
                | ColumnType::U64
        )
    }

    /// Whether `value` is a value of this type (its variant matches; integer ranges are not checked).
    ///
    /// Signed integer types admit [`Value::I64`], unsigned ones [`Value::U64`]; an option admits
    /// [`Value::Null`] or what its inner type admits.
    #[must_use]
    pub fn admits(&self, value: &crate::Value) -> bool {
        use crate::Value as V;
        match (self, value) {
            (ColumnType::Option(_), V::Null) => true,
            (ColumnType::Option(inner), v) => inner.admits(v),
            (ColumnType::Bool, V::Bool(_))
            | (ColumnType::I8 | ColumnType::I16 | ColumnType::I32 | ColumnType::I64, V::I64(_))
            | (ColumnType::U8 | ColumnType::U16 | ColumnType::U32 | ColumnType::U64, V::U64(_))
            | (ColumnType::F32, V::F32(_))
            | (ColumnType::F64, V::F64(_))
            | (ColumnType::String, V::String(_))
            | (ColumnType::Bytes, V::Bytes(_))
            | (ColumnType::Vec2, V::Vec2(_))
            | (ColumnType::Identity, V::Identity(_))
            | (ColumnType::Timestamp, V::Timestamp(_))
            | (ColumnType::Opaque, V::Opaque(_)) => true,
            _ => false,
        }
    }

    /// The values an integer type (or `Timestamp`) holds, as `i128`s; `None` for other types.
    #[must_use]
    pub fn int_range(&self) -> Option<std::ops::RangeInclusive<i128>> {
        Some(match self {
            ColumnType::I8 => i8::MIN.into()..=i8::MAX.into(),
            ColumnType::I16 => i16::MIN.into()..=i16::MAX.into(),
            ColumnType::I32 => i32::MIN.into()..=i32::MAX.into(),
            ColumnType::I64 => i64::MIN.into()..=i64::MAX.into(),
            ColumnType::U8 => 0..=u8::MAX.into(),
            ColumnType::U16 => 0..=u16::MAX.into(),
            ColumnType::U32 => 0..=u32::MAX.into(),
            ColumnType::U64 | ColumnType::Timestamp => 0..=u64::MAX.into(),
            _ => return None,
        })
    }

    /// Whether values of this type can be keys of a primary-key, unique or btree index.
    ///
    /// Everything but [`ColumnType::Opaque`] is (options of indexable types too; `nil` sorts first).
    #[must_use]
    pub fn is_indexable(&self) -> bool {
        match self {
            ColumnType::Opaque => false,
            ColumnType::Option(inner) => inner.is_indexable(),
            _ => true,
        }
    }
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ColumnDef {
    /// The column's name, unique within its table.
    pub name: String,
    /// The column's type.
    pub ty: ColumnType,
    /// The value rows stored before this column existed get when a module upgrade adds it: one value of `ty`,
    /// encoded as in a row (`#[default(expr)]` in a module). `None`: the type's zero value
    /// ([`crate::migrate::zero_value`]). Omitted from the encoding when `None`, so schemas without defaults
    /// encode as before.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub default: Option<Vec<u8>>,
}

impl ColumnDef {
    /// A column without a declared default.
    #[must_use]
    pub fn new(name: impl Into<String>, ty: ColumnType) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            ty,
            default: None,
        }
    }
}

/// The kind of a secondary index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IndexKind {
    /// An ordered index: equality and range lookups; many rows may share a key.
    BTree,
    /// An ordered index whose keys are unique: inserting a second row with the same key fails.
    Unique,
    /// An R-tree over a [`ColumnType::Vec2`] column: within radius, within envelope, nearest neighbours.
    Spatial,
}

/// A single-column index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexDef {
    /// The indexed column.
    pub column: ColumnId,
    /// What kind of index.
    pub kind: IndexKind,
}

/// Who may see a table's rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TableAccess {
    /// Rows may be sent to clients (subject to the owner column and areas of interest).
    Public,
    /// Rows never leave the server. The default.
    #[default]
    Private,
}

/// A table's definition: its columns, primary key, indexes and visibility.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableDef {
    /// The table's name, unique within a schema.
    pub name: String,
    /// The columns, in row order.
    pub columns: Vec<ColumnDef>,
    /// The primary-key column. Every table has one; rows are identified by it in changesets.
    pub primary_key: ColumnId,
    /// Whether inserting a row whose primary key is `0` assigns the next value of the table's sequence.
    pub auto_inc: bool,
    /// Secondary indexes.
    pub indexes: Vec<IndexDef>,
    /// Whether rows may be sent to clients.
    pub access: TableAccess,
    /// A column holding an [`crate::Identity`]: a row is visible only to that identity.
    pub owner: Option<ColumnId>,
    /// Whether a row may move between the regions of a world split into regions (separate server processes, each
    /// a rectangle of the world): when a row of a movable table — an avatar — crosses into another region, the
    /// engine moves it to that region's process. Invariant (checked by [`TableDef::validate`]): a movable table
    /// has a spatial column ([`TableDef::spatial_column`]), by which the engine decides which region a row is in.
    ///
    /// What moves with a movable row:
    ///
    /// - the row itself;
    /// - if the table has an [identity column](TableDef::identity_column) (its first `Identity` column that is
    ///   the owner column, has a unique index, or is the primary key), the value `id` in it: every row of every
    ///   table whose [owner column](TableDef::owner) equals `id`, and every row of every table whose primary key is
    ///   an `Identity` equal to `id` (private per-player state, such as the demo's `chat_quota`) —
    ///   [`TableDef::identity_bound_columns`] names those columns of each table.
    ///
    /// Everything else stays in the region it is in. Changing only this flag between module versions is a
    /// compatible change ([`crate::migrate::Change::Movable`]).
    ///
    /// Encoded only when `true` (`"movable": true`), and `false` when absent, so that every definition written
    /// before the field existed — module descriptions, snapshots — still decodes, and definitions of tables that
    /// are not movable encode exactly as before.
    #[serde(default, skip_serializing_if = "is_false")]
    pub movable: bool,
}

/// For `skip_serializing_if` (which passes a reference): a `false` flag is left out of the encoding.
fn is_false(flag: &bool) -> bool {
    !*flag
}

/// Why a table definition is invalid.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SchemaError {
    /// The table's name is empty.
    #[error("a table has an empty name")]
    EmptyTableName,
    /// The table has no columns.
    #[error("table `{table}` has no columns")]
    NoColumns {
        /// The table.
        table: String,
    },
    /// The table has more than [`MAX_COLUMNS`] columns.
    #[error("table `{table}` has {count} columns; at most {MAX_COLUMNS} are allowed")]
    TooManyColumns {
        /// The table.
        table: String,
        /// How many columns it has.
        count: usize,
    },
    /// A column's name is empty.
    #[error("table `{table}` has a column with an empty name")]
    EmptyColumnName {
        /// The table.
        table: String,
    },
    /// Two columns share a name.
    #[error("table `{table}` has two columns named `{column}`")]
    DuplicateColumn {
        /// The table.
        table: String,
        /// The repeated name.
        column: String,
    },
    /// A column id or name does not exist in the table.
    #[error("table `{table}` has no column {column}")]
    NoSuchColumn {
        /// The table.
        table: String,
        /// The missing column (a name, or `#n` for an id).
        column: String,
    },
    /// The builder was not told which column is the primary key.
    #[error("table `{table}` has no primary key")]
    MissingPrimaryKey {
        /// The table.
        table: String,
    },
    /// A column of a type that cannot be a key was used as one.
    #[error("column `{table}.{column}` of type {ty:?} cannot be the key of a {what}")]
    NotIndexable {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its type.
        ty: ColumnType,
        /// The kind of key ("primary key", "unique index", …).
        what: &'static str,
    },
    /// `auto_inc` on a primary key that is not an integer.
    #[error("table `{table}`: auto_inc needs an integer primary key, `{column}` is {ty:?}")]
    AutoIncNotInteger {
        /// The table.
        table: String,
        /// The primary-key column.
        column: String,
        /// Its type.
        ty: ColumnType,
    },
    /// A spatial index on a column that is not a `Vec2`.
    #[error("table `{table}`: spatial index on `{column}` needs a Vec2 column, it is {ty:?}")]
    SpatialNotVec2 {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its type.
        ty: ColumnType,
    },
    /// More than one spatial index in one table.
    #[error("table `{table}` has more than one spatial index")]
    MultipleSpatial {
        /// The table.
        table: String,
    },
    /// The same (column, kind) index declared twice.
    #[error("table `{table}` declares a {kind:?} index on `{column}` twice")]
    DuplicateIndex {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The kind.
        kind: IndexKind,
    },
    /// The owner column is not an `Identity`.
    #[error("table `{table}`: owner column `{column}` must be an Identity, it is {ty:?}")]
    OwnerNotIdentity {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its type.
        ty: ColumnType,
    },
    /// A movable table without a spatial column.
    #[error(
        "table `{table}` is movable but has no spatial column: the engine places each row of a movable table in a \
         region by its spatial (Vec2) column"
    )]
    MovableWithoutSpatial {
        /// The table.
        table: String,
    },
}

impl TableDef {
    /// Start building a table definition named `name`.
    #[must_use]
    pub fn builder(name: impl Into<String>) -> TableBuilder {
        TableBuilder {
            name: name.into(),
            columns: Vec::new(),
            primary_key: None,
            auto_inc: false,
            indexes: Vec::new(),
            access: TableAccess::Private,
            owner: None,
            movable: false,
        }
    }

    /// The column definition for `id`, if it exists.
    #[must_use]
    pub fn column(&self, id: ColumnId) -> Option<&ColumnDef> {
        self.columns.get(id.index())
    }

    /// The id of the column named `name`.
    #[must_use]
    pub fn column_id(&self, name: &str) -> Option<ColumnId> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .map(|i| ColumnId(i as u16))
    }

    /// The spatial index's column, if the table has one.
    #[must_use]
    pub fn spatial_column(&self) -> Option<ColumnId> {
        self.indexes
            .iter()
            .find(|i| i.kind == IndexKind::Spatial)
            .map(|i| i.column)
    }

    /// The table's identity column, if it has one: its first column (in column order) of type exactly
    /// [`ColumnType::Identity`] that is the [owner column](TableDef::owner), has a [`IndexKind::Unique`] index, or
    /// is the primary key — a column naming at most one row per identity, or the one identity a row belongs to.
    ///
    /// For a [movable](TableDef::movable) table it says whose rows move with a row: see [`TableDef::movable`].
    #[must_use]
    pub fn identity_column(&self) -> Option<ColumnId> {
        (0..self.columns.len())
            .map(|i| ColumnId(i as u16))
            .find(|&id| {
                self.columns[id.index()].ty == ColumnType::Identity
                    && (self.owner == Some(id)
                        || self.primary_key == id
                        || self
                            .indexes
                            .iter()
                            .any(|i| i.column == id && i.kind == IndexKind::Unique))
            })
    }

    /// The columns through which a row of this table belongs to an identity: the [owner column](TableDef::owner),
    /// then the primary key if it is of type exactly [`ColumnType::Identity`] (once, if it is both). When a row of a
    /// [movable](TableDef::movable) table moves, every row whose value in any of these columns equals the moving
    /// row's [identity column](TableDef::identity_column) moves with it.
    pub fn identity_bound_columns(&self) -> impl Iterator<Item = ColumnId> + '_ {
        let pk = Some(self.primary_key).filter(|&pk| {
            self.column(pk)
                .is_some_and(|c| c.ty == ColumnType::Identity)
                && self.owner != Some(pk)
        });
        self.owner.into_iter().chain(pk)
    }

    /// Check every invariant listed in the [module docs](self).
    ///
    /// # Errors
    ///
    /// The first violated invariant, as a [`SchemaError`].
    pub fn validate(&self) -> Result<(), SchemaError> {
        let table = || self.name.clone();
        if self.name.is_empty() {
            return Err(SchemaError::EmptyTableName);
        }
        if self.columns.is_empty() {
            return Err(SchemaError::NoColumns { table: table() });
        }
        if self.columns.len() > MAX_COLUMNS {
            return Err(SchemaError::TooManyColumns {
                table: table(),
                count: self.columns.len(),
            });
        }
        for (i, c) in self.columns.iter().enumerate() {
            if c.name.is_empty() {
                return Err(SchemaError::EmptyColumnName { table: table() });
            }
            if self.columns[..i].iter().any(|o| o.name == c.name) {
                return Err(SchemaError::DuplicateColumn {
                    table: table(),
                    column: c.name.clone(),
                });
            }
        }
        let col = |id: ColumnId| {
            self.column(id).ok_or_else(|| SchemaError::NoSuchColumn {
                table: table(),
                column: format!("#{}", id.0),
            })
        };
        let pk = col(self.primary_key)?;
        if !pk.ty.is_indexable() {
            return Err(SchemaError::NotIndexable {
                table: table(),
                column: pk.name.clone(),
                ty: pk.ty.clone(),
                what: "primary key",
            });
        }
        if self.auto_inc && !pk.ty.is_integer() {
            return Err(SchemaError::AutoIncNotInteger {
                table: table(),
                column: pk.name.clone(),
                ty: pk.ty.clone(),
            });
        }
        let mut spatial = 0;
        for (i, index) in self.indexes.iter().enumerate() {
            let c = col(index.column)?;
            if self.indexes[..i].contains(index) {
                return Err(SchemaError::DuplicateIndex {
                    table: table(),
                    column: c.name.clone(),
                    kind: index.kind,
                });
            }
            match index.kind {
                IndexKind::Spatial => {
                    spatial += 1;
                    if spatial > 1 {
                        return Err(SchemaError::MultipleSpatial { table: table() });
                    }
                    if c.ty != ColumnType::Vec2 {
                        return Err(SchemaError::SpatialNotVec2 {
                            table: table(),
                            column: c.name.clone(),
                            ty: c.ty.clone(),
                        });
                    }
                }
                IndexKind::BTree | IndexKind::Unique => {
                    if !c.ty.is_indexable() {
                        return Err(SchemaError::NotIndexable {
                            table: table(),
                            column: c.name.clone(),
                            ty: c.ty.clone(),
                            what: if index.kind == IndexKind::Unique {
                                "unique index"
                            } else {
                                "btree index"
                            },
                        });
                    }
                }
            }
        }
        if let Some(owner) = self.owner {
            let c = col(owner)?;
            if c.ty != ColumnType::Identity {
                return Err(SchemaError::OwnerNotIdentity {
                    table: table(),
                    column: c.name.clone(),
                    ty: c.ty.clone(),
                });
            }
        }
        if self.movable && self.spatial_column().is_none() {
            return Err(SchemaError::MovableWithoutSpatial { table: table() });
        }
        Ok(())
    }
}

/// Builds a [`TableDef`] by column name; see [`TableDef::builder`].
///
/// ```
/// use locus_types::{ColumnType, IndexKind, TableAccess, TableDef};
///
/// let def = TableDef::builder("player")
///     .column("id", ColumnType::U64)
///     .column("owner", ColumnType::Identity)
///     .column("pos", ColumnType::Vec2)
///     .column("name", ColumnType::String)
///     .primary_key("id")
///     .auto_inc()
///     .index("pos", IndexKind::Spatial)
///     .index("name", IndexKind::Unique)
///     .owner("owner")
///     .access(TableAccess::Public)
///     .movable(true)
///     .build()
///     .unwrap();
/// assert_eq!(def.spatial_column(), def.column_id("pos"));
/// assert_eq!(def.identity_column(), def.column_id("owner"));
/// ```
#[derive(Clone, Debug)]
pub struct TableBuilder {
    name: String,
    columns: Vec<ColumnDef>,
    primary_key: Option<String>,
    auto_inc: bool,
    indexes: Vec<(String, IndexKind)>,
    access: TableAccess,
    owner: Option<String>,
    movable: bool,
}

impl TableBuilder {
    /// Append a column.
    #[must_use]
    pub fn column(mut self, name: impl Into<String>, ty: ColumnType) -> Self {
        self.columns.push(ColumnDef::new(name, ty));
        self
    }

    /// Append a column with a declared default (its encoding; see [`ColumnDef::default`]).
    #[must_use]
    pub fn column_with_default(
        mut self,
        name: impl Into<String>,
        ty: ColumnType,
        default: Vec<u8>,
    ) -> Self {
        self.columns.push(ColumnDef {
            name: name.into(),
            ty,
            default: Some(default),
        });
        self
    }

    /// Make the named column the primary key.
    #[must_use]
    pub fn primary_key(mut self, column: &str) -> Self {
        self.primary_key = Some(column.to_owned());
        self
    }

    /// Assign primary keys from a sequence when a row is inserted with key `0`.
    #[must_use]
    pub fn auto_inc(mut self) -> Self {
        self.auto_inc = true;
        self
    }

    /// Add an index of `kind` on the named column.
    #[must_use]
    pub fn index(mut self, column: &str, kind: IndexKind) -> Self {
        self.indexes.push((column.to_owned(), kind));
        self
    }

    /// Set the table's access (default [`TableAccess::Private`]).
    #[must_use]
    pub fn access(mut self, access: TableAccess) -> Self {
        self.access = access;
        self
    }

    /// Make the named `Identity` column the owner column.
    #[must_use]
    pub fn owner(mut self, column: &str) -> Self {
        self.owner = Some(column.to_owned());
        self
    }

    /// Make the table movable between regions, or not (the default); see [`TableDef::movable`]. A movable table
    /// needs a spatial index.
    #[must_use]
    pub fn movable(mut self, movable: bool) -> Self {
        self.movable = movable;
        self
    }

    /// Resolve names and validate.
    ///
    /// # Errors
    ///
    /// [`SchemaError::NoSuchColumn`] for an unknown name, [`SchemaError::MissingPrimaryKey`] if
    /// [`primary_key`](Self::primary_key) was never called, or whatever [`TableDef::validate`] reports.
    pub fn build(self) -> Result<TableDef, SchemaError> {
        let resolve = |name: &str| {
            self.columns
                .iter()
                .position(|c| c.name == name)
                .map(|i| ColumnId(i as u16))
                .ok_or_else(|| SchemaError::NoSuchColumn {
                    table: self.name.clone(),
                    column: name.to_owned(),
                })
        };
        let primary_key = match &self.primary_key {
            Some(name) => resolve(name)?,
            None => {
                return Err(SchemaError::MissingPrimaryKey {
                    table: self.name.clone(),
                });
            }
        };
        let indexes = self
            .indexes
            .iter()
            .map(|(name, kind)| {
                Ok(IndexDef {
                    column: resolve(name)?,
                    kind: *kind,
                })
            })
            .collect::<Result<Vec<_>, SchemaError>>()?;
        let owner = self.owner.as_deref().map(resolve).transpose()?;
        let def = TableDef {
            name: self.name,
            columns: self.columns,
            primary_key,
            auto_inc: self.auto_inc,
            indexes,
            access: self.access,
            owner,
            movable: self.movable,
        };
        def.validate()?;
        Ok(def)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TableBuilder {
        TableDef::builder("t")
            .column("id", ColumnType::U64)
            .column("pos", ColumnType::Vec2)
    }

    #[test]
    fn missing_primary_key_is_an_error() {
        assert_eq!(
            base().build(),
            Err(SchemaError::MissingPrimaryKey { table: "t".into() })
        );
    }

    #[test]
    fn unknown_column_is_named() {
        let err = base()
            .primary_key("id")
            .index("nope", IndexKind::BTree)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            SchemaError::NoSuchColumn {
                table: "t".into(),
                column: "nope".into()
            }
        );
    }

    #[test]
    fn spatial_needs_vec2_and_only_one() {
        let err = base()
            .primary_key("id")
            .index("id", IndexKind::Spatial)
            .build()
            .unwrap_err();
        assert!(matches!(err, SchemaError::SpatialNotVec2 { .. }));
        let err = base()
            .column("pos2", ColumnType::Vec2)
            .primary_key("id")
            .index("pos", IndexKind::Spatial)
            .index("pos2", IndexKind::Spatial)
            .build()
            .unwrap_err();
        assert!(matches!(err, SchemaError::MultipleSpatial { .. }));
    }

    #[test]
    fn auto_inc_needs_integer_key() {
        let err = TableDef::builder("t")
            .column("name", ColumnType::String)
            .primary_key("name")
            .auto_inc()
            .build()
            .unwrap_err();
        assert!(matches!(err, SchemaError::AutoIncNotInteger { .. }));
    }

    #[test]
    fn opaque_is_not_indexable_and_owner_is_identity() {
        let err = base()
            .column("blob", ColumnType::Opaque)
            .primary_key("id")
            .index("blob", IndexKind::BTree)
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            SchemaError::NotIndexable {
                what: "btree index",
                ..
            }
        ));
        let err = base().primary_key("id").owner("pos").build().unwrap_err();
        assert!(matches!(err, SchemaError::OwnerNotIdentity { .. }));
    }

    #[test]
    fn duplicate_columns_and_indexes_are_rejected() {
        let err = base()
            .column("id", ColumnType::U8)
            .primary_key("id")
            .build()
            .unwrap_err();
        assert!(matches!(err, SchemaError::DuplicateColumn { .. }));
        let err = base()
            .primary_key("id")
            .index("id", IndexKind::BTree)
            .index("id", IndexKind::BTree)
            .build()
            .unwrap_err();
        assert!(matches!(err, SchemaError::DuplicateIndex { .. }));
    }

    #[test]
    fn a_movable_table_needs_a_spatial_column() {
        let err = TableDef::builder("t")
            .column("id", ColumnType::U64)
            .column("pos", ColumnType::Vec2)
            .primary_key("id")
            .movable(true)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            SchemaError::MovableWithoutSpatial { table: "t".into() }
        );
        assert_eq!(
            err.to_string(),
            "table `t` is movable but has no spatial column: the engine places each row of a movable table in a \
             region by its spatial (Vec2) column"
        );
        let def = base()
            .primary_key("id")
            .index("pos", IndexKind::Spatial)
            .movable(true)
            .build()
            .unwrap();
        assert!(def.movable);
        let mut unset = def.clone();
        unset.indexes.clear();
        assert!(matches!(
            unset.validate(),
            Err(SchemaError::MovableWithoutSpatial { .. })
        ));
        unset.movable = false;
        assert_eq!(unset.validate(), Ok(()));
        assert!(
            !base().primary_key("id").build().unwrap().movable,
            "the default"
        );
    }

    #[test]
    fn the_identity_column_is_the_first_owner_unique_or_key_identity() {
        let with = |b: TableBuilder| b.primary_key("id").build().unwrap();
        let ids = || {
            base()
                .column("a", ColumnType::Identity)
                .column("b", ColumnType::Identity)
                .column("c", ColumnType::Option(Box::new(ColumnType::Identity)))
        };
        // A plain or btree-indexed Identity is not one; neither is an optional one.
        assert_eq!(with(ids()).identity_column(), None);
        assert_eq!(
            with(
                ids()
                    .index("a", IndexKind::BTree)
                    .index("c", IndexKind::Unique)
            )
            .identity_column(),
            None
        );
        assert_eq!(
            with(ids().index("b", IndexKind::Unique)).identity_column(),
            Some(ColumnId(3))
        );
        assert_eq!(with(ids().owner("b")).identity_column(), Some(ColumnId(3)));
        // The first in column order wins, whichever attribute makes it one.
        assert_eq!(
            with(ids().owner("b").index("a", IndexKind::Unique)).identity_column(),
            Some(ColumnId(2))
        );
        let keyed = TableDef::builder("quota")
            .column("who", ColumnType::Identity)
            .column("n", ColumnType::U32)
            .primary_key("who")
            .build()
            .unwrap();
        assert_eq!(keyed.identity_column(), Some(ColumnId(0)));
    }

    #[test]
    fn identity_bound_columns_are_the_owner_and_an_identity_key() {
        let bound = |def: &TableDef| def.identity_bound_columns().collect::<Vec<_>>();
        let plain = base().primary_key("id").build().unwrap();
        assert_eq!(bound(&plain), []);
        let owned = base()
            .column("owner", ColumnType::Identity)
            .primary_key("id")
            .owner("owner")
            .build()
            .unwrap();
        assert_eq!(bound(&owned), [ColumnId(2)]);
        let keyed = TableDef::builder("quota")
            .column("who", ColumnType::Identity)
            .column("by", ColumnType::Identity)
            .primary_key("who")
            .build()
            .unwrap();
        assert_eq!(bound(&keyed), [ColumnId(0)]);
        let mut both = keyed.clone();
        both.owner = Some(ColumnId(1));
        assert_eq!(bound(&both), [ColumnId(1), ColumnId(0)]);
        both.owner = Some(ColumnId(0));
        assert_eq!(bound(&both), [ColumnId(0)], "once");
    }

    /// The 105-byte `item` definition of module-abi.md §3.5, as every module and snapshot wrote it before
    /// `movable` existed.
    const OLD_ITEM: &str = "87 a4 6e 61 6d 65 a4 69 74 65 6d a7 63 6f 6c 75 6d 6e 73 92 82 a4 6e 61 6d 65 a2 69 64 \
        a2 74 79 a3 55 36 34 82 a4 6e 61 6d 65 a1 6e a2 74 79 a3 49 33 32 ab 70 72 69 6d 61 72 79 5f 6b 65 79 00 \
        a8 61 75 74 6f 5f 69 6e 63 c2 a7 69 6e 64 65 78 65 73 90 a6 61 63 63 65 73 73 a7 50 72 69 76 61 74 65 a5 6f \
        77 6e 65 72 c0";

    fn unhex(hex: &str) -> Vec<u8> {
        hex.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn item() -> TableDef {
        TableDef::builder("item")
            .column("id", ColumnType::U64)
            .column("n", ColumnType::I32)
            .primary_key("id")
            .build()
            .unwrap()
    }

    #[test]
    fn a_definition_encoded_before_movable_existed_decodes_as_not_movable() {
        let old = unhex(OLD_ITEM);
        assert_eq!(old.len(), 105);
        let def: TableDef = rmp_serde::from_slice(&old).unwrap();
        assert_eq!(def, item());
        assert!(!def.movable);
        // A definition that is not movable encodes exactly as before, named (descriptions, snapshots) or compact
        // (the protocol's `Welcome`).
        assert_eq!(rmp_serde::to_vec_named(&item()).unwrap(), old);
        let compact = rmp_serde::to_vec(&item()).unwrap();
        assert_eq!(compact[0], 0x97, "an array of the 7 old fields");
        assert_eq!(rmp_serde::from_slice::<TableDef>(&compact).unwrap(), item());
    }

    #[test]
    fn a_movable_definition_round_trips_named_and_compact() {
        let def = TableDef::builder("avatar")
            .column("id", ColumnType::U64)
            .column("pos", ColumnType::Vec2)
            .primary_key("id")
            .index("pos", IndexKind::Spatial)
            .movable(true)
            .build()
            .unwrap();
        let named = rmp_serde::to_vec_named(&def).unwrap();
        assert_eq!(named[0], 0x88, "a map of 8 fields");
        assert!(
            named.ends_with(b"\xa7movable\xc3"),
            "`\"movable\": true` last"
        );
        assert_eq!(rmp_serde::from_slice::<TableDef>(&named).unwrap(), def);
        let compact = rmp_serde::to_vec(&def).unwrap();
        assert_eq!((compact[0], compact[compact.len() - 1]), (0x98, 0xc3));
        assert_eq!(rmp_serde::from_slice::<TableDef>(&compact).unwrap(), def);
    }
}
