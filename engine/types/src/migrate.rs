//! Schema upgrades: what changed between the schema a database holds and a new module version's, and whether
//! every stored row keeps its meaning under the new one.
//!
//! [`plan`] compares the two and returns either a [`Plan`] (the compatible [`Change`]s and the resulting table
//! definitions) or every [`Incompatible`] change it found, each naming its table, column or reducer.
//!
//! Compatible (a live world can take them without losing or reinterpreting a byte):
//! - a new table;
//! - a new column **at the end** of a table, filled in existing rows with its declared default
//!   ([`ColumnDef::default`]) or else the zero value of its type ([`zero_value`]);
//! - a new secondary index (a new unique index can still fail on the stored rows: the migration reports it);
//! - a dropped secondary index;
//! - a table made [movable](TableDef::movable) between regions, or no longer movable;
//! - a new reducer.
//!
//! Everything else that changes the meaning of stored rows or of calls is refused: a table or column removed,
//! renamed, moved or retyped; a new primary key, `auto_inc`, owner column or access; a reducer removed, or its
//! parameters or kind changed (clients and stored schedules call it by name and argument layout) — except an
//! `Upgrade` reducer, which only the host calls, once, when its module takes over.
//!
//! Invariant: for a `Plan`, every table of the old schema appears in [`Plan::tables`] in its old position, and
//! [`migrate_row`] turns any valid row of the old definition into a valid row of the new one whose leading
//! columns are byte-for-byte the old row's.

use std::fmt;

use crate::abi::{ReducerDef, ReducerKind};
use crate::schema::{ColumnDef, ColumnType, IndexDef, TableDef};
use crate::{Identity, Timestamp, Value, Vec2, codec};

/// One compatible change.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A new table.
    AddTable(String),
    /// A new column at the end of `table`, filled with `default` in existing rows.
    AddColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// What existing rows get.
        default: Value,
    },
    /// A new secondary index.
    AddIndex {
        /// The table.
        table: String,
        /// The index.
        index: IndexDef,
    },
    /// A secondary index dropped.
    DropIndex {
        /// The table.
        table: String,
        /// The index.
        index: IndexDef,
    },
    /// A table became [movable](TableDef::movable) between regions (`movable`), or stopped being movable. Its rows
    /// are kept as they are; the new definition carries the flag.
    Movable {
        /// The table.
        table: String,
        /// Whether it is movable now.
        movable: bool,
    },
    /// A new reducer.
    AddReducer(String),
    /// The module's version differs from the one the data is at (`locus_types::abi::EXPORT_MODULE_VERSION`): the
    /// data is brought from version `from` to `to` in the upgrade's transaction, by the new module's upgrade
    /// reducer (`hook`) if it has one. Not found by [`plan`], which compares schemas: the host adds it.
    Version {
        /// The version the data is at.
        from: u32,
        /// The new module's version.
        to: u32,
        /// The new module's `Upgrade` reducer, which runs with `(from, to)`.
        hook: Option<String>,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddTable(t) => write!(f, "new table `{t}`"),
            Change::AddColumn {
                table,
                column,
                default,
            } => write!(
                f,
                "new column `{table}.{column}` (existing rows get {default:?})"
            ),
            Change::AddIndex { table, index } => {
                write!(
                    f,
                    "new {:?} index on `{table}` column #{}",
                    index.kind, index.column.0
                )
            }
            Change::DropIndex { table, index } => write!(
                f,
                "dropped {:?} index on `{table}` column #{}",
                index.kind, index.column.0
            ),
            Change::Movable {
                table,
                movable: true,
            } => write!(f, "table `{table}` is now movable between regions"),
            Change::Movable {
                table,
                movable: false,
            } => write!(f, "table `{table}` is no longer movable between regions"),
            Change::AddReducer(r) => write!(f, "new reducer `{r}`"),
            Change::Version {
                from,
                to,
                hook: Some(hook),
            } => write!(
                f,
                "module version {from} → {to} (upgrade reducer `{hook}` ran)"
            ),
            Change::Version {
                from,
                to,
                hook: None,
            } => write!(f, "module version {from} → {to} (no upgrade reducer)"),
        }
    }
}

/// One change that would lose or reinterpret stored data, or break callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incompatible {
    /// A table the database holds is not in the new module.
    TableRemoved(String),
    /// A column was removed (or the new table has fewer columns).
    ColumnRemoved {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// The column at this position has another name or type.
    ColumnChanged {
        /// The table.
        table: String,
        /// The old column.
        old: String,
        /// What stands at its position now.
        new: String,
    },
    /// A new column's declared default is not a value of its type.
    BadDefault {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Why.
        why: String,
    },
    /// The primary key, `auto_inc`, owner column or access of a table changed.
    TableChanged {
        /// The table.
        table: String,
        /// What changed.
        what: &'static str,
    },
    /// A reducer was removed.
    ReducerRemoved(String),
    /// A reducer's parameters or kind changed.
    ReducerChanged(String),
}

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incompatible::TableRemoved(t) => write!(f, "table `{t}` removed"),
            Incompatible::ColumnRemoved { table, column } => {
                write!(f, "column `{table}.{column}` removed")
            }
            Incompatible::ColumnChanged { table, old, new } => write!(
                f,
                "column `{table}.{old}` changed to {new} (columns may only be added at the end)"
            ),
            Incompatible::BadDefault { table, column, why } => {
                write!(
                    f,
                    "the default of new column `{table}.{column}` is invalid: {why}"
                )
            }
            Incompatible::TableChanged { table, what } => {
                write!(f, "table `{table}`: its {what} changed")
            }
            Incompatible::ReducerRemoved(r) => write!(f, "reducer `{r}` removed"),
            Incompatible::ReducerChanged(r) => {
                write!(f, "reducer `{r}` changed its parameters or kind")
            }
        }
    }
}

/// What an upgrade does: see [`plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The compatible changes, table by table then reducers.
    pub changes: Vec<Change>,
    /// The new definitions of the old tables, in their old order, then the new tables in the new module's order.
    pub tables: Vec<TableDef>,
}

impl Plan {
    /// Whether nothing changes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The zero value of a type: what a new column without a declared default holds in existing rows (`0`, `0.0`,
/// `false`, `""`, empty bytes, `(0, 0)`, the all-zero identity, the epoch, `nil` for options and opaque values).
#[must_use]
pub fn zero_value(ty: &ColumnType) -> Value {
    match ty {
        ColumnType::Bool => Value::Bool(false),
        ColumnType::I8 | ColumnType::I16 | ColumnType::I32 | ColumnType::I64 => Value::I64(0),
        ColumnType::U8 | ColumnType::U16 | ColumnType::U32 | ColumnType::U64 => Value::U64(0),
        ColumnType::F32 => Value::F32(0.0),
        ColumnType::F64 => Value::F64(0.0),
        ColumnType::String => Value::String("".into()),
        ColumnType::Bytes => Value::Bytes(Box::default()),
        ColumnType::Vec2 => Value::Vec2(Vec2::ZERO),
        ColumnType::Identity => Value::Identity(Identity([0; 32])),
        ColumnType::Timestamp => Value::Timestamp(Timestamp(0)),
        ColumnType::Opaque => Value::Opaque(Box::new([0xc0])),
        ColumnType::Option(_) => Value::Null,
    }
}

/// The value existing rows get for new column `column`: its declared default, decoded, or [`zero_value`].
///
/// # Errors
///
/// A message if the declared default is not exactly one value of the column's type.
pub fn default_value(column: &ColumnDef) -> Result<Value, String> {
    match &column.default {
        Some(bytes) => codec::decode_value(column, bytes).map_err(|e| e.to_string()),
        None => Ok(zero_value(&column.ty)),
    }
}

fn same_column(a: &ColumnDef, b: &ColumnDef) -> bool {
    a.name == b.name && a.ty == b.ty
}

/// Compare a database's schema (its module tables and the reducers of the module that wrote it) with a new
/// module's. See the [module docs](self).
///
/// # Errors
///
/// Every incompatible change found.
pub fn plan(
    old_tables: &[TableDef],
    old_reducers: &[ReducerDef],
    new_tables: &[TableDef],
    new_reducers: &[ReducerDef],
) -> Result<Plan, Vec<Incompatible>> {
    let mut changes = Vec::new();
    let mut wrong = Vec::new();
    let mut tables = Vec::new();
    for old in old_tables {
        let Some(new) = new_tables.iter().find(|t| t.name == old.name) else {
            wrong.push(Incompatible::TableRemoved(old.name.clone()));
            continue;
        };
        let table = &old.name;
        for (i, o) in old.columns.iter().enumerate() {
            match new.columns.get(i) {
                Some(n) if same_column(o, n) => {}
                Some(n) => wrong.push(Incompatible::ColumnChanged {
                    table: table.clone(),
                    old: format!("{} {:?}", o.name, o.ty),
                    new: format!("`{}` {:?}", n.name, n.ty),
                }),
                None => wrong.push(Incompatible::ColumnRemoved {
                    table: table.clone(),
                    column: o.name.clone(),
                }),
            }
        }
        for n in new.columns.iter().skip(old.columns.len()) {
            match default_value(n) {
                Ok(default) => changes.push(Change::AddColumn {
                    table: table.clone(),
                    column: n.name.clone(),
                    default,
                }),
                Err(why) => wrong.push(Incompatible::BadDefault {
                    table: table.clone(),
                    column: n.name.clone(),
                    why,
                }),
            }
        }
        for (what, changed) in [
            ("primary key", old.primary_key != new.primary_key),
            ("auto_inc", old.auto_inc != new.auto_inc),
            ("owner column", old.owner != new.owner),
            ("access (public/private)", old.access != new.access),
        ] {
            if changed {
                wrong.push(Incompatible::TableChanged {
                    table: table.clone(),
                    what,
                });
            }
        }
        for index in &new.indexes {
            if !old.indexes.contains(index) {
                changes.push(Change::AddIndex {
                    table: table.clone(),
                    index: *index,
                });
            }
        }
        for index in &old.indexes {
            if !new.indexes.contains(index) {
                changes.push(Change::DropIndex {
                    table: table.clone(),
                    index: *index,
                });
            }
        }
        if old.movable != new.movable {
            changes.push(Change::Movable {
                table: table.clone(),
                movable: new.movable,
            });
        }
        tables.push(new.clone());
    }
    for new in new_tables {
        if !old_tables.iter().any(|t| t.name == new.name) {
            changes.push(Change::AddTable(new.name.clone()));
            tables.push(new.clone());
        }
    }
    // An upgrade reducer is called by the host alone, and only when its module takes over: nothing calls the old
    // one again, so it may go or change.
    for old in old_reducers
        .iter()
        .filter(|r| r.kind != ReducerKind::Upgrade)
    {
        match new_reducers.iter().find(|r| r.name == old.name) {
            None => wrong.push(Incompatible::ReducerRemoved(old.name.clone())),
            Some(new) => {
                let params_same = old.params.len() == new.params.len()
                    && old
                        .params
                        .iter()
                        .zip(&new.params)
                        .all(|(a, b)| a.ty == b.ty);
                if !params_same || old.kind != new.kind {
                    wrong.push(Incompatible::ReducerChanged(old.name.clone()));
                }
            }
        }
    }
    for new in new_reducers {
        if !old_reducers.iter().any(|r| r.name == new.name) {
            changes.push(Change::AddReducer(new.name.clone()));
        }
    }
    if wrong.is_empty() {
        Ok(Plan { changes, tables })
    } else {
        Err(wrong)
    }
}

/// A row of `old` as a row of `new`, where `new` is `old` with columns appended (as a [`Plan`] guarantees): the
/// array header is rewritten and each new column's default appended.
///
/// # Errors
///
/// A message if `new` does not extend `old`, a default does not encode, or `row` is not an array.
pub fn migrate_row(old: &TableDef, new: &TableDef, row: &[u8]) -> Result<Vec<u8>, String> {
    if new.columns.len() < old.columns.len()
        || !old
            .columns
            .iter()
            .zip(&new.columns)
            .all(|(a, b)| same_column(a, b))
    {
        return Err(format!(
            "table `{}`: the new definition does not extend the old",
            old.name
        ));
    }
    let mut cur = row;
    let len = rmp::decode::read_array_len(&mut cur).map_err(|e| format!("not a row: {e}"))?;
    if len as usize != old.columns.len() {
        return Err(format!(
            "a row of {len} columns; the table has {}",
            old.columns.len()
        ));
    }
    let mut out = Vec::with_capacity(row.len() + 8 * (new.columns.len() - old.columns.len()));
    rmp::encode::write_array_len(&mut out, new.columns.len() as u32).expect("Vec write");
    out.extend_from_slice(cur);
    for column in &new.columns[old.columns.len()..] {
        let value = default_value(column)?;
        codec::encode_value(column, &value, &mut out).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IndexKind, TableAccess};

    fn player(extra: &[(&str, ColumnType, Option<Vec<u8>>)]) -> TableDef {
        let mut b = TableDef::builder("player")
            .column("id", ColumnType::U64)
            .column("pos", ColumnType::Vec2)
            .column("name", ColumnType::String)
            .primary_key("id")
            .auto_inc()
            .index("pos", IndexKind::Spatial)
            .access(TableAccess::Public);
        for (name, ty, default) in extra {
            b = match default {
                Some(d) => b.column_with_default(*name, ty.clone(), d.clone()),
                None => b.column(*name, ty.clone()),
            };
        }
        b.build().unwrap()
    }

    fn reducer(name: &str, params: &[ColumnType]) -> ReducerDef {
        ReducerDef {
            name: name.into(),
            kind: ReducerKind::Client,
            params: params
                .iter()
                .enumerate()
                .map(|(i, ty)| ColumnDef::new(format!("p{i}"), ty.clone()))
                .collect(),
        }
    }

    #[test]
    fn compatible_changes_are_listed_and_rows_get_defaults() {
        let old = player(&[]);
        let new = player(&[
            ("title", ColumnType::String, None),
            ("gold", ColumnType::U32, Some(vec![0x64])),
        ]);
        let extra = TableDef::builder("guild")
            .column("id", ColumnType::U64)
            .primary_key("id")
            .build()
            .unwrap();
        let plan = plan(
            std::slice::from_ref(&old),
            &[reducer("move_to", &[ColumnType::F32, ColumnType::F32])],
            &[extra, new.clone()],
            &[
                reducer("move_to", &[ColumnType::F32, ColumnType::F32]),
                reducer("join_guild", &[ColumnType::U64]),
            ],
        )
        .unwrap();
        assert_eq!(
            plan.changes,
            vec![
                Change::AddColumn {
                    table: "player".into(),
                    column: "title".into(),
                    default: Value::String("".into()),
                },
                Change::AddColumn {
                    table: "player".into(),
                    column: "gold".into(),
                    default: Value::U64(100),
                },
                Change::AddTable("guild".into()),
                Change::AddReducer("join_guild".into()),
            ]
        );
        assert_eq!(plan.tables[0], new);
        assert_eq!(plan.tables[1].name, "guild");
        let row = codec::encode_row(
            &old.columns,
            &[
                Value::U64(7),
                Value::Vec2(Vec2::new(1.0, 2.0)),
                Value::String("ann".into()),
            ],
        )
        .unwrap();
        let migrated = migrate_row(&old, &new, &row).unwrap();
        assert_eq!(
            codec::decode_row(&new.columns, &migrated).unwrap(),
            vec![
                Value::U64(7),
                Value::Vec2(Vec2::new(1.0, 2.0)),
                Value::String("ann".into()),
                Value::String("".into()),
                Value::U64(100),
            ]
        );
        // The old columns' bytes are untouched.
        assert_eq!(&migrated[1..row.len()], &row[1..]);
    }

    #[test]
    fn a_row_crossing_sixteen_columns_gets_a_longer_header() {
        let mut b = TableDef::builder("wide").column("id", ColumnType::U64);
        for i in 1..15 {
            b = b.column(format!("c{i}"), ColumnType::U8);
        }
        let old = b.clone().primary_key("id").build().unwrap();
        let new = b
            .column("c15", ColumnType::U8)
            .column("c16", ColumnType::Bool)
            .primary_key("id")
            .build()
            .unwrap();
        let values: Vec<Value> = (0..15).map(Value::U64).collect();
        let row = codec::encode_row(&old.columns, &values).unwrap();
        let migrated = migrate_row(&old, &new, &row).unwrap();
        let decoded = codec::decode_row(&new.columns, &migrated).unwrap();
        assert_eq!(decoded.len(), 17);
        assert_eq!(decoded[16], Value::Bool(false));
    }

    #[test]
    fn incompatible_changes_are_each_named() {
        let old = player(&[("title", ColumnType::String, None)]);
        let mut retyped = player(&[("title", ColumnType::U32, None)]);
        retyped.access = TableAccess::Private;
        let wrong = plan(
            std::slice::from_ref(&old),
            &[
                reducer("move_to", &[ColumnType::F32, ColumnType::F32]),
                reducer("say", &[ColumnType::String]),
            ],
            &[retyped],
            &[reducer("move_to", &[ColumnType::F32])],
        )
        .unwrap_err();
        let text: Vec<String> = wrong.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "column `player.title String` changed to `title` U32 (columns may only be added at the end)",
                "table `player`: its access (public/private) changed",
                "reducer `move_to` changed its parameters or kind",
                "reducer `say` removed",
            ]
        );
        let removed = plan(std::slice::from_ref(&old), &[], &[player(&[])], &[]).unwrap_err();
        assert_eq!(
            removed,
            vec![Incompatible::ColumnRemoved {
                table: "player".into(),
                column: "title".into()
            }]
        );
        assert_eq!(
            plan(&[old], &[], &[], &[]).unwrap_err(),
            vec![Incompatible::TableRemoved("player".into())]
        );
        // A default of the wrong type.
        let bad = plan(
            &[player(&[])],
            &[],
            &[player(&[("gold", ColumnType::U32, Some(vec![0xa1, 0x78]))])],
            &[],
        )
        .unwrap_err();
        assert!(matches!(&bad[0], Incompatible::BadDefault { column, .. } if column == "gold"));
    }

    #[test]
    fn an_upgrade_reducer_may_go_or_change_and_a_new_one_is_listed() {
        let hook = |name: &str, kind: ReducerKind| ReducerDef {
            name: name.into(),
            kind,
            params: vec![
                ColumnDef::new("from", ColumnType::U32),
                ColumnDef::new("to", ColumnType::U32),
            ],
        };
        let t = [player(&[])];
        let old = [hook("upgrade", ReducerKind::Upgrade)];
        assert!(plan(&t, &old, &t, &[]).unwrap().is_empty(), "removed");
        assert!(
            plan(&t, &old, &t, &[hook("upgrade", ReducerKind::Client)])
                .unwrap()
                .changes
                .is_empty(),
            "changed kind"
        );
        assert_eq!(
            plan(&t, &[], &t, &old).unwrap().changes,
            [Change::AddReducer("upgrade".into())]
        );
        // Any other reducer still may not go.
        assert_eq!(
            plan(&t, &[hook("upgrade", ReducerKind::Client)], &t, &[]).unwrap_err(),
            [Incompatible::ReducerRemoved("upgrade".into())]
        );
    }

    #[test]
    fn the_same_schema_is_an_empty_plan() {
        let t = player(&[]);
        let r = [reducer("say", &[ColumnType::String])];
        let plan = plan(std::slice::from_ref(&t), &r, std::slice::from_ref(&t), &r).unwrap();
        assert!(plan.is_empty());
        assert_eq!(plan.tables, vec![t]);
    }

    #[test]
    fn making_a_table_movable_or_not_is_a_compatible_change_carried_into_the_plan() {
        let old = player(&[]);
        let mut movable = old.clone();
        movable.movable = true;
        movable.validate().unwrap();
        let plan = plan(
            std::slice::from_ref(&old),
            &[],
            std::slice::from_ref(&movable),
            &[],
        )
        .unwrap();
        assert_eq!(
            plan.changes,
            [Change::Movable {
                table: "player".into(),
                movable: true
            }]
        );
        assert_eq!(
            plan.changes[0].to_string(),
            "table `player` is now movable between regions"
        );
        assert_eq!(
            plan.tables,
            std::slice::from_ref(&movable),
            "the new definition, flag and all"
        );
        let back = super::plan(
            std::slice::from_ref(&movable),
            &[],
            std::slice::from_ref(&old),
            &[],
        )
        .unwrap();
        assert_eq!(
            back.changes[0].to_string(),
            "table `player` is no longer movable between regions"
        );
        assert_eq!(back.tables, [old]);
    }
}
