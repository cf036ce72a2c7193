//! `locus query`: a read-only SQL `SELECT` subset over a [`Database`], for operators.
//!
//! [`query`] parses one statement with `sqlparser` (generic dialect), checks it against the table's schema, then
//! scans the table and returns the selected rows as JSON values ([`value_to_json`]); [`format_table`] renders them
//! for a terminal. It is pure: no I/O, clock or threads. Every table can be queried, private ones included.
//!
//! # Grammar
//!
//! ```text
//! query   := SELECT items FROM table [[AS] alias] [WHERE cond]
//!            [ORDER BY key {, key}] [LIMIT n | LIMIT ALL] [OFFSET n]      -- or LIMIT offset, n
//! items   := COUNT(*) [[AS] name]  |  item {, item}
//! item    := *  |  column [[AS] name]
//! cond    := cond OR cond | cond AND cond | NOT cond | ( cond )
//!          | column cmp literal | literal cmp column
//!          | column IS [NOT] NULL
//!          | column [NOT] IN ( literal {, literal} )
//!          | column [NOT] BETWEEN literal AND literal
//!          | column                                   -- a Bool column
//!          | TRUE | FALSE | NULL
//! cmp     := = | != | <> | < | <= | > | >=
//! key     := (name | column) [ASC | DESC] [NULLS FIRST | NULLS LAST]    -- name: from the select list
//! literal := [+|-] number | 'string' | X'hex' | TRUE | FALSE | NULL
//! column  := name | table.name | alias.name
//! ```
//!
//! Keywords are case-insensitive; table and column names are case-sensitive, as declared. Everything else
//! (joins, subqueries, `GROUP BY`, `DISTINCT`, functions other than `COUNT(*)`, arithmetic, `LIKE`, comparisons
//! between two columns, other statements, …) is a [`QueryError::Unsupported`] naming the construct.
//!
//! # Comparisons
//!
//! A comparison is between a column and a literal of the column's type; a literal of another type is a
//! [`QueryError::TypeMismatch`], never a silent `false`. (For an `Option(T)` column, the type is `T`.)
//!
//! | column type | literal | compared |
//! |---|---|---|
//! | integers, `Timestamp` (µs), `F64` | any number | exactly, as numbers (`hp > 49.5`, `born = 1e6`) |
//! | `F32` | any number | with the literal rounded to `f32`, so `speed = 0.1` finds the `0.1` a row shows |
//! | `String` | `'string'` | by bytes (`str` order) |
//! | `Bool` | `TRUE` / `FALSE` | `FALSE < TRUE` |
//! | `Bytes` | `X'hex'` | by bytes |
//! | `Identity` | `'64 hex digits'` or `X'…'` of 32 bytes | by bytes |
//! | `Vec2`, `Opaque` | — | not comparable ([`QueryError::NotComparable`]); `IS NULL` works |
//!
//! `NULL` follows SQL's three-valued logic: comparing a `NULL` column value or the `NULL` literal yields
//! *unknown*, `NOT unknown` is unknown, and only rows whose condition is *true* are selected. So `gold = NULL`
//! selects nothing and `NOT (gold > 5)` does not select rows whose `gold` is `NULL`. A float `NaN` in a row
//! compares as unknown too.
//!
//! # Order
//!
//! Rows are sorted by the `ORDER BY` keys, then by primary key: the result is a function of the table's contents
//! and the query alone, whatever the store's row order. A key compares values by [`Value`]'s total order (floats
//! by `total_cmp`); `NULL`s come last in ascending order and first in descending order (as in PostgreSQL) unless
//! `NULLS FIRST` / `NULLS LAST` says otherwise. `OFFSET` then `LIMIT` apply to the sorted rows; `COUNT(*)` yields
//! one row, to which they apply too.
//!
//! # Invariants
//!
//! - Every error is found while planning, before any row is read: a query fails the same way on an empty table
//!   as on a full one.
//! - At most [`MAX_ROWS`] rows are returned; [`QueryResult::truncated`] says whether more were selected.
//! - `WHERE pk = literal` is answered by a primary-key lookup instead of a scan, with the same result.
//! - The AST is destructured field by field, so an `sqlparser` upgrade that adds syntax fails to compile here
//!   instead of being silently accepted.

use std::cmp::Ordering;
use std::fmt::Write as _;

use locus_store::{Database, Table};
use locus_types::codec::{MAX_DEPTH, RowError};
use locus_types::{ColumnType, Identity, Value};
use serde_json::Value as Json;
use sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    InTarget, LimitClause, ObjectNamePart, OrderByKind, SelectItem, SetExpr, Statement,
    TableFactor, UnaryOperator, Value as SqlValue,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

/// The most rows a query returns; [`QueryResult::truncated`] is set when more were selected.
pub const MAX_ROWS: usize = 10_000;

/// The longest query text accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 64 * 1024;

/// How deeply a `WHERE` condition may nest (`AND`, `OR`, `NOT`, parentheses).
pub const MAX_CONDITION_DEPTH: usize = 128;

/// The rows a query selected, as JSON values.
///
/// Serializes (serde) as `{"columns": [..], "rows": [[..], ..], "truncated": bool}`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueryResult {
    /// The result's column names: the selected columns' names or aliases, or `count` for `COUNT(*)`.
    pub columns: Vec<String>,
    /// The selected rows, one JSON value per column (see [`value_to_json`]), in order.
    pub rows: Vec<Vec<Json>>,
    /// Whether more than [`MAX_ROWS`] rows were selected and only the first [`MAX_ROWS`] are in `rows`.
    pub truncated: bool,
}

/// Why a query could not be run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The text is not SQL, or holds no statement.
    #[error("cannot parse the query: {0}")]
    Parse(String),
    /// Valid SQL outside the supported subset (see the [module docs](self)); names the construct.
    #[error("not supported by `locus query`: {0}")]
    Unsupported(String),
    /// No table has this name.
    #[error("no table named `{0}`")]
    NoSuchTable(String),
    /// The table has no column of this name (names are case-sensitive).
    #[error("table `{table}` has no column `{column}`")]
    NoSuchColumn {
        /// The table.
        table: String,
        /// The name that matched no column, as written.
        column: String,
    },
    /// A column was compared with a literal of another type.
    #[error("column `{column}` is {ty:?}; it cannot be compared with {literal}")]
    TypeMismatch {
        /// The column.
        column: String,
        /// Its type.
        ty: ColumnType,
        /// The literal, as written.
        literal: String,
    },
    /// A column whose values have no meaningful order or equality in SQL (`Vec2`, `Opaque`) was compared.
    #[error("column `{column}` is {ty:?}, which cannot be compared (only IS [NOT] NULL)")]
    NotComparable {
        /// The column.
        column: String,
        /// Its type.
        ty: ColumnType,
    },
    /// A literal that is malformed or out of range where it is used.
    #[error("invalid literal {literal}: {reason}")]
    BadLiteral {
        /// The literal, as written.
        literal: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The query text is longer than [`MAX_QUERY_LEN`] or its condition deeper than [`MAX_CONDITION_DEPTH`].
    #[error("the query is too large: {0}")]
    TooLarge(String),
    /// A stored row could not be decoded (the store guarantees this never happens).
    #[error("table `{table}` holds an invalid row: {source}")]
    Row {
        /// The table.
        table: String,
        /// Why the row is invalid.
        #[source]
        source: RowError,
    },
}

fn unsupported(what: impl Into<String>) -> QueryError {
    QueryError::Unsupported(what.into())
}

/// Run the `SELECT` in `sql` against `db`. See the [module docs](self) for what is supported.
///
/// # Errors
///
/// A [`QueryError`]: [`Parse`](QueryError::Parse) for invalid SQL, [`Unsupported`](QueryError::Unsupported) for
/// SQL outside the subset, [`NoSuchTable`](QueryError::NoSuchTable) / [`NoSuchColumn`](QueryError::NoSuchColumn)
/// for unknown names, [`TypeMismatch`](QueryError::TypeMismatch) /
/// [`NotComparable`](QueryError::NotComparable) / [`BadLiteral`](QueryError::BadLiteral) for ill-typed
/// conditions, [`TooLarge`](QueryError::TooLarge) for oversized queries.
pub fn query(db: &Database, sql: &str) -> Result<QueryResult, QueryError> {
    plan(db, sql)?.run()
}

// ---- planning ----

/// A checked query, ready to run.
#[derive(Debug)]
struct Plan<'db> {
    table: &'db Table,
    output: Output,
    filter: Option<Pred>,
    order: Vec<SortKey>,
    offset: usize,
    limit: Option<usize>,
}

#[derive(Debug)]
enum Output {
    /// `(result column name, table column index)` per result column.
    Columns(Vec<(String, usize)>),
    /// `COUNT(*)`, under this name.
    Count(String),
}

#[derive(Debug)]
struct SortKey {
    column: usize,
    desc: bool,
    nulls_first: bool,
}

/// A `WHERE` condition, with columns resolved and literals checked against their types.
#[derive(Debug)]
enum Pred {
    /// `TRUE`, `FALSE` or `NULL` (unknown).
    Const(Option<bool>),
    Cmp {
        column: usize,
        op: CmpOp,
        rhs: Operand,
    },
    IsNull(usize),
    Not(Box<Pred>),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn from_sql(op: &BinaryOperator) -> Option<CmpOp> {
        Some(match op {
            BinaryOperator::Eq => CmpOp::Eq,
            BinaryOperator::NotEq => CmpOp::Ne,
            BinaryOperator::Lt => CmpOp::Lt,
            BinaryOperator::LtEq => CmpOp::Le,
            BinaryOperator::Gt => CmpOp::Gt,
            BinaryOperator::GtEq => CmpOp::Ge,
            _ => return None,
        })
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    fn flip(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            op => op,
        }
    }

    fn holds(self, o: Ordering) -> bool {
        match self {
            CmpOp::Eq => o.is_eq(),
            CmpOp::Ne => o.is_ne(),
            CmpOp::Lt => o.is_lt(),
            CmpOp::Le => o.is_le(),
            CmpOp::Gt => o.is_gt(),
            CmpOp::Ge => o.is_ge(),
        }
    }
}

/// A literal as written in SQL, before it meets a column.
#[derive(Clone, Debug)]
enum Lit {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Hex(Vec<u8>),
}

/// A literal checked against, and converted for, the column it is compared with.
#[derive(Clone, Debug)]
enum Operand {
    Null,
    Bool(bool),
    /// For integer, timestamp and float columns.
    Int(i128),
    /// For integer, timestamp and float columns; always finite.
    Float(f64),
    Str(Box<str>),
    Bytes(Box<[u8]>),
    Identity(Identity),
}

fn plan<'db>(db: &'db Database, sql: &str) -> Result<Plan<'db>, QueryError> {
    if sql.len() > MAX_QUERY_LEN {
        return Err(QueryError::TooLarge(format!(
            "{} bytes of text, at most {MAX_QUERY_LEN}",
            sql.len()
        )));
    }
    let mut statements =
        Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| QueryError::Parse(e.to_string()))?;
    let statement = match statements.len() {
        0 => return Err(QueryError::Parse("no statement".into())),
        1 => statements.pop().expect("one statement"),
        n => return Err(unsupported(format!("{n} statements (give exactly one)"))),
    };
    let Statement::Query(query) = statement else {
        let text = statement.to_string();
        let kind = text.split_whitespace().next().unwrap_or("?").to_uppercase();
        return Err(unsupported(format!("{kind} statements (only SELECT)")));
    };
    let ast::Query {
        with,
        body,
        order_by,
        limit_clause,
        fetch,
        locks,
        for_clause,
        settings,
        format_clause,
        pipe_operators,
    } = *query;
    for (present, what) in [
        (with.is_some(), "WITH"),
        (fetch.is_some(), "FETCH"),
        (!locks.is_empty(), "FOR UPDATE / FOR SHARE"),
        (for_clause.is_some(), "FOR XML / FOR JSON"),
        (settings.is_some(), "SETTINGS"),
        (format_clause.is_some(), "FORMAT"),
        (!pipe_operators.is_empty(), "pipe operators"),
    ] {
        if present {
            return Err(unsupported(what));
        }
    }
    let select = match *body {
        SetExpr::Select(select) => select,
        SetExpr::Query(_) => return Err(unsupported("a parenthesized query")),
        SetExpr::SetOperation { op, .. } => return Err(unsupported(op.to_string())),
        SetExpr::Values(_) => return Err(unsupported("VALUES")),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            return Err(unsupported("statements other than SELECT"));
        }
        SetExpr::Table(_) => return Err(unsupported("TABLE")),
    };
    let ast::Select {
        select_token: _,
        optimizer_hints,
        distinct,
        select_modifiers,
        top,
        top_before_distinct: _,
        projection,
        exclude,
        into,
        from,
        lateral_views,
        prewhere,
        selection,
        connect_by,
        group_by,
        cluster_by,
        distribute_by,
        sort_by,
        having,
        named_window,
        qualify,
        window_before_qualify: _,
        value_table_mode,
        flavor,
    } = *select;
    let grouped = match &group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(exprs, modifiers) => !exprs.is_empty() || !modifiers.is_empty(),
    };
    for (present, what) in [
        (!optimizer_hints.is_empty(), "optimizer hints"),
        (
            matches!(
                distinct,
                Some(ast::Distinct::Distinct | ast::Distinct::On(_))
            ),
            "DISTINCT",
        ),
        (select_modifiers.is_some(), "SELECT modifiers"),
        (top.is_some(), "TOP"),
        (exclude.is_some(), "EXCLUDE"),
        (into.is_some(), "SELECT INTO"),
        (!lateral_views.is_empty(), "LATERAL VIEW"),
        (prewhere.is_some(), "PREWHERE"),
        (!connect_by.is_empty(), "CONNECT BY"),
        (grouped, "GROUP BY"),
        (!cluster_by.is_empty(), "CLUSTER BY"),
        (!distribute_by.is_empty(), "DISTRIBUTE BY"),
        (!sort_by.is_empty(), "SORT BY"),
        (having.is_some(), "HAVING"),
        (!named_window.is_empty(), "WINDOW"),
        (qualify.is_some(), "QUALIFY"),
        (value_table_mode.is_some(), "SELECT AS VALUE / STRUCT"),
        (flavor != ast::SelectFlavor::Standard, "FROM-first SELECT"),
    ] {
        if present {
            return Err(unsupported(what));
        }
    }

    let (table, alias) = from_table(db, from)?;
    let planner = Planner { table, alias };
    let output = planner.output(&projection)?;
    let filter = selection
        .as_ref()
        .map(|e| planner.condition(e, 0))
        .transpose()?;
    let order = match order_by {
        None => Vec::new(),
        Some(order_by) => planner.order(order_by, &output)?,
    };
    let (offset, limit) = limits(limit_clause)?;
    Ok(Plan {
        table,
        output,
        filter,
        order,
        offset,
        limit,
    })
}

/// The one table of the `FROM` clause, and its alias.
fn from_table(
    db: &Database,
    from: Vec<ast::TableWithJoins>,
) -> Result<(&Table, Option<String>), QueryError> {
    let mut from = from.into_iter();
    let (Some(first), None) = (from.next(), from.next()) else {
        return Err(unsupported(
            "a FROM clause without exactly one table (no joins; SELECT needs FROM)",
        ));
    };
    let ast::TableWithJoins { relation, joins } = first;
    if !joins.is_empty() {
        return Err(unsupported("JOIN"));
    }
    let TableFactor::Table {
        name,
        alias,
        args,
        with_hints,
        version,
        with_ordinality,
        partitions,
        json_path,
        sample,
        index_directives,
        inheritance,
    } = relation
    else {
        return Err(unsupported(format!(
            "`{relation}` in FROM (only a table name)"
        )));
    };
    for (present, what) in [
        (args.is_some(), "table functions"),
        (!with_hints.is_empty(), "table hints"),
        (version.is_some(), "time travel"),
        (with_ordinality, "WITH ORDINALITY"),
        (!partitions.is_empty(), "PARTITION"),
        (json_path.is_some(), "JSON paths in FROM"),
        (sample.is_some(), "TABLESAMPLE"),
        (!index_directives.is_empty(), "index hints"),
        (inheritance.is_some(), "ONLY / table inheritance"),
    ] {
        if present {
            return Err(unsupported(what));
        }
    }
    let table_name = match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => ident.value.clone(),
        _ => return Err(unsupported(format!("qualified table name `{name}`"))),
    };
    let alias = match alias {
        None => None,
        Some(ast::TableAlias {
            name, columns, at, ..
        }) => {
            if !columns.is_empty() || at.is_some() {
                return Err(unsupported("column aliases on the table"));
            }
            Some(name.value)
        }
    };
    let table = db
        .table_id(&table_name)
        .and_then(|id| db.table(id))
        .ok_or(QueryError::NoSuchTable(table_name))?;
    Ok((table, alias))
}

/// `(offset, limit)` from the `LIMIT` / `OFFSET` clause.
fn limits(clause: Option<LimitClause>) -> Result<(usize, Option<usize>), QueryError> {
    match clause {
        None => Ok((0, None)),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err(unsupported("LIMIT BY"));
            }
            let offset = offset.map(|o| count(&o.value)).transpose()?.flatten();
            let limit = limit.map(|l| count(&l)).transpose()?.flatten();
            Ok((offset.unwrap_or(0), limit))
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            Ok((count(&offset)?.unwrap_or(0), count(&limit)?))
        }
    }
}

/// A `LIMIT` or `OFFSET` value: a non-negative integer, or `NULL` for none.
fn count(e: &Expr) -> Result<Option<usize>, QueryError> {
    let bad = || QueryError::BadLiteral {
        literal: e.to_string(),
        reason: "LIMIT and OFFSET take a non-negative integer",
    };
    match e {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, _) => n.parse().map(Some).map_err(|_| bad()),
            SqlValue::Null => Ok(None),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

struct Planner<'db> {
    table: &'db Table,
    alias: Option<String>,
}

impl Planner<'_> {
    fn table_name(&self) -> &str {
        self.table.name()
    }

    fn no_such_column(&self, column: String) -> QueryError {
        QueryError::NoSuchColumn {
            table: self.table_name().to_owned(),
            column,
        }
    }

    /// The column `e` names: `Ok(None)` if `e` is not a (possibly parenthesized, possibly qualified) name.
    fn column(&self, e: &Expr) -> Result<Option<usize>, QueryError> {
        let name = match e {
            Expr::Nested(inner) => return self.column(inner),
            Expr::Identifier(ident) => &ident.value,
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [qualifier, column]
                    if qualifier.value == self.table_name()
                        || self.alias.as_deref() == Some(qualifier.value.as_str()) =>
                {
                    &column.value
                }
                [_, _] => return Err(self.no_such_column(e.to_string())),
                _ => return Err(unsupported(format!("qualified name `{e}`"))),
            },
            _ => return Ok(None),
        };
        match self.table.def().column_id(name) {
            Some(id) => Ok(Some(id.index())),
            None => Err(self.no_such_column(name.clone())),
        }
    }

    fn column_def(&self, column: usize) -> &locus_types::ColumnDef {
        &self.table.def().columns[column]
    }

    fn output(&self, projection: &[SelectItem]) -> Result<Output, QueryError> {
        let count = |item: &SelectItem| -> Result<Option<String>, QueryError> {
            let (expr, name) = match item {
                SelectItem::UnnamedExpr(e) => (e, "count".to_owned()),
                SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value.clone()),
                _ => return Ok(None),
            };
            Ok(is_count_star(expr)?.then_some(name))
        };
        if let [item] = projection
            && let Some(name) = count(item)?
        {
            return Ok(Output::Count(name));
        }
        let mut columns = Vec::new();
        for item in projection {
            if count(item)?.is_some() {
                return Err(unsupported(
                    "COUNT(*) beside other columns (there is no GROUP BY)",
                ));
            }
            match item {
                SelectItem::Wildcard(options) => {
                    let ast::WildcardAdditionalOptions {
                        wildcard_token: _,
                        opt_ilike,
                        opt_exclude,
                        opt_except,
                        opt_replace,
                        opt_rename,
                        opt_alias,
                    } = options;
                    if opt_ilike.is_some()
                        || opt_exclude.is_some()
                        || opt_except.is_some()
                        || opt_replace.is_some()
                        || opt_rename.is_some()
                        || opt_alias.is_some()
                    {
                        return Err(unsupported(format!("`{item}` (only a plain *)")));
                    }
                    columns.extend(
                        self.table
                            .def()
                            .columns
                            .iter()
                            .enumerate()
                            .map(|(i, c)| (c.name.clone(), i)),
                    );
                }
                SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                    let Some(column) = self.column(expr)? else {
                        return Err(unsupported(format!(
                            "`{expr}` in the select list (only columns and COUNT(*))"
                        )));
                    };
                    let name = match item {
                        SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                        _ => self.column_def(column).name.clone(),
                    };
                    columns.push((name, column));
                }
                SelectItem::ExprWithAliases { .. } | SelectItem::QualifiedWildcard(..) => {
                    return Err(unsupported(format!("`{item}` in the select list")));
                }
            }
        }
        if columns.is_empty() {
            return Err(unsupported("an empty select list"));
        }
        Ok(Output::Columns(columns))
    }

    fn order(&self, order_by: ast::OrderBy, output: &Output) -> Result<Vec<SortKey>, QueryError> {
        let ast::OrderBy { kind, interpolate } = order_by;
        if interpolate.is_some() {
            return Err(unsupported("INTERPOLATE"));
        }
        let exprs = match kind {
            OrderByKind::All(_) => return Err(unsupported("ORDER BY ALL")),
            OrderByKind::Expressions(exprs) => exprs,
        };
        if matches!(output, Output::Count(_)) {
            return Err(unsupported("ORDER BY with COUNT(*)"));
        }
        exprs
            .into_iter()
            .map(|o| {
                let ast::OrderByExpr {
                    expr,
                    options,
                    with_fill,
                } = o;
                if with_fill.is_some() {
                    return Err(unsupported("WITH FILL"));
                }
                let desc = match options.sort {
                    None | Some(ast::OrderBySort::Asc) => false,
                    Some(ast::OrderBySort::Desc) => true,
                    Some(ast::OrderBySort::Using(op)) => {
                        return Err(unsupported(format!("ORDER BY … USING {op}")));
                    }
                };
                let column = self.sort_column(&expr, output)?;
                Ok(SortKey {
                    column,
                    desc,
                    nulls_first: options.nulls_first.unwrap_or(desc),
                })
            })
            .collect()
    }

    /// An `ORDER BY` key's column: a name from the select list (an alias or a selected column), else a column.
    fn sort_column(&self, expr: &Expr, output: &Output) -> Result<usize, QueryError> {
        if let (Expr::Identifier(ident), Output::Columns(columns)) = (expr, output)
            && let Some((_, column)) = columns.iter().find(|(name, _)| *name == ident.value)
        {
            return Ok(*column);
        }
        self.column(expr)?
            .ok_or_else(|| unsupported(format!("ORDER BY `{expr}` (only columns and aliases)")))
    }

    fn condition(&self, e: &Expr, depth: usize) -> Result<Pred, QueryError> {
        if depth > MAX_CONDITION_DEPTH {
            return Err(QueryError::TooLarge(format!(
                "the WHERE condition nests deeper than {MAX_CONDITION_DEPTH}"
            )));
        }
        let sub = |e: &Expr| self.condition(e, depth + 1).map(Box::new);
        match e {
            Expr::Nested(inner) => self.condition(inner, depth + 1),
            Expr::BinaryOp { left, op, right } => match op {
                BinaryOperator::And => Ok(Pred::And(sub(left)?, sub(right)?)),
                BinaryOperator::Or => Ok(Pred::Or(sub(left)?, sub(right)?)),
                op => match CmpOp::from_sql(op) {
                    Some(op) => self.comparison(e, left, op, right),
                    None => Err(unsupported(format!("operator `{op}` in `{e}`"))),
                },
            },
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => Ok(Pred::Not(sub(expr)?)),
            Expr::IsNull(inner) => Ok(Pred::IsNull(self.operand_column(inner, e)?)),
            Expr::IsNotNull(inner) => Ok(Pred::Not(Box::new(Pred::IsNull(
                self.operand_column(inner, e)?,
            )))),
            Expr::In {
                expr,
                target,
                negated,
                global,
            } => {
                if *global {
                    return Err(unsupported("GLOBAL IN"));
                }
                let InTarget::List(list) = target else {
                    return Err(unsupported(format!(
                        "`{e}` (only IN with a list of literals)"
                    )));
                };
                let column = self.operand_column(expr, e)?;
                let mut any: Pred = Pred::Const(Some(false));
                for item in list {
                    let eq = Pred::Cmp {
                        column,
                        op: CmpOp::Eq,
                        rhs: self.operand_of(column, item)?,
                    };
                    any = match any {
                        Pred::Const(Some(false)) => eq,
                        any => Pred::Or(Box::new(any), Box::new(eq)),
                    };
                }
                Ok(if *negated {
                    Pred::Not(Box::new(any))
                } else {
                    any
                })
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let column = self.operand_column(expr, e)?;
                let between = Pred::And(
                    Box::new(Pred::Cmp {
                        column,
                        op: CmpOp::Ge,
                        rhs: self.operand_of(column, low)?,
                    }),
                    Box::new(Pred::Cmp {
                        column,
                        op: CmpOp::Le,
                        rhs: self.operand_of(column, high)?,
                    }),
                );
                Ok(if *negated {
                    Pred::Not(Box::new(between))
                } else {
                    between
                })
            }
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                let column = self.column(e)?.expect("a name");
                let def = self.column_def(column);
                if *base_type(&def.ty) != ColumnType::Bool {
                    return Err(unsupported(format!(
                        "`{e}` as a condition: column `{}` is {:?}, not Bool",
                        def.name, def.ty
                    )));
                }
                Ok(Pred::Cmp {
                    column,
                    op: CmpOp::Eq,
                    rhs: Operand::Bool(true),
                })
            }
            _ => match literal(e)? {
                Some(Lit::Bool(b)) => Ok(Pred::Const(Some(b))),
                Some(Lit::Null) => Ok(Pred::Const(None)),
                Some(_) => Err(unsupported(format!("`{e}` as a condition"))),
                None => Err(unsupported(format!("`{e}` in WHERE"))),
            },
        }
    }

    /// The column operand of `IS NULL`, `IN` or `BETWEEN` in `whole`.
    fn operand_column(&self, e: &Expr, whole: &Expr) -> Result<usize, QueryError> {
        self.column(e)?
            .ok_or_else(|| unsupported(format!("`{whole}` (the left side must be a column)")))
    }

    fn comparison(
        &self,
        whole: &Expr,
        left: &Expr,
        op: CmpOp,
        right: &Expr,
    ) -> Result<Pred, QueryError> {
        let (column, op, lit) = match (self.column(left)?, self.column(right)?) {
            (Some(_), Some(_)) => {
                return Err(unsupported(format!(
                    "`{whole}`: comparing two columns (compare a column with a literal)"
                )));
            }
            (Some(column), None) => (column, op, right),
            (None, Some(column)) => (column, op.flip(), left),
            (None, None) => {
                let other = if literal(left)?.is_none() {
                    left
                } else {
                    right
                };
                return Err(if literal(other)?.is_none() {
                    unsupported(format!(
                        "`{other}` in `{whole}` (only a column compared with a literal)"
                    ))
                } else {
                    unsupported(format!(
                        "`{whole}`: a comparison needs a column on one side"
                    ))
                });
            }
        };
        Ok(Pred::Cmp {
            column,
            op,
            rhs: self.operand_of(column, lit)?,
        })
    }

    /// The literal `e`, checked against and converted for `column`.
    fn operand_of(&self, column: usize, e: &Expr) -> Result<Operand, QueryError> {
        let Some(lit) = literal(e)? else {
            return Err(unsupported(format!(
                "`{e}` (only literals are compared with columns)"
            )));
        };
        let def = self.column_def(column);
        let mismatch = || QueryError::TypeMismatch {
            column: def.name.clone(),
            ty: def.ty.clone(),
            literal: e.to_string(),
        };
        let ty = base_type(&def.ty);
        match (ty, lit) {
            (_, Lit::Null) => Ok(Operand::Null),
            (ColumnType::Vec2 | ColumnType::Opaque, _) => Err(QueryError::NotComparable {
                column: def.name.clone(),
                ty: def.ty.clone(),
            }),
            (ColumnType::Bool, Lit::Bool(b)) => Ok(Operand::Bool(b)),
            // An `F32` column holds the `f32` nearest the literal where the literal is within `f32` range.
            (ColumnType::F32, Lit::Int(n)) => Ok(Operand::Float(round_to_f32(n as f64))),
            (ColumnType::F32, Lit::Float(f)) => Ok(Operand::Float(round_to_f32(f))),
            (ty, Lit::Int(n)) if is_numeric(ty) => Ok(Operand::Int(n)),
            (ty, Lit::Float(f)) if is_numeric(ty) => Ok(Operand::Float(f)),
            (ColumnType::String, Lit::Str(s)) => Ok(Operand::Str(s.into())),
            (ColumnType::Bytes, Lit::Hex(b)) => Ok(Operand::Bytes(b.into())),
            (ColumnType::Identity, Lit::Str(s)) => parse_hex(&s)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(|b| Operand::Identity(Identity(b)))
                .ok_or_else(|| QueryError::BadLiteral {
                    literal: e.to_string(),
                    reason: "an identity is written as 64 hex digits",
                }),
            (ColumnType::Identity, Lit::Hex(b)) => <[u8; 32]>::try_from(b)
                .map(|b| Operand::Identity(Identity(b)))
                .map_err(|_| QueryError::BadLiteral {
                    literal: e.to_string(),
                    reason: "an identity is 32 bytes",
                }),
            _ => Err(mismatch()),
        }
    }
}

/// Whether `e` is `COUNT(*)`; an error for other function calls.
fn is_count_star(e: &Expr) -> Result<bool, QueryError> {
    let Expr::Function(f) = e else {
        return Ok(false);
    };
    let is_count = matches!(f.name.0.as_slice(), [ObjectNamePart::Identifier(i)] if i.value.eq_ignore_ascii_case("count"));
    let star = match &f.args {
        FunctionArguments::List(list) => {
            list.duplicate_treatment.is_none()
                && list.clauses.is_empty()
                && matches!(
                    list.args.as_slice(),
                    [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]
                )
        }
        _ => false,
    };
    let plain = matches!(f.parameters, FunctionArguments::None)
        && !f.uses_odbc_syntax
        && f.within_group.is_empty()
        && f.filter.is_none()
        && f.null_treatment.is_none()
        && f.over.is_none();
    if is_count && star && plain {
        Ok(true)
    } else {
        Err(unsupported(format!("function call `{e}` (only COUNT(*))")))
    }
}

/// The literal `e` is, if it is one (`Ok(None)` otherwise).
fn literal(e: &Expr) -> Result<Option<Lit>, QueryError> {
    match e {
        Expr::Nested(inner) => literal(inner),
        Expr::UnaryOp {
            op: op @ (UnaryOperator::Minus | UnaryOperator::Plus),
            expr,
        } => {
            let negate = *op == UnaryOperator::Minus;
            match literal(expr)? {
                Some(Lit::Int(n)) => Ok(Some(Lit::Int(if negate { -n } else { n }))),
                Some(Lit::Float(f)) => Ok(Some(Lit::Float(if negate { -f } else { f }))),
                Some(_) => Err(unsupported(format!("`{e}`: a sign on a non-number"))),
                None => Ok(None),
            }
        }
        Expr::Value(v) => {
            let bad = |reason| QueryError::BadLiteral {
                literal: e.to_string(),
                reason,
            };
            Ok(Some(match &v.value {
                SqlValue::Number(text, _) => {
                    number(text).ok_or_else(|| bad("not a finite number"))?
                }
                SqlValue::SingleQuotedString(s) => Lit::Str(s.clone()),
                SqlValue::HexStringLiteral(h) => {
                    Lit::Hex(parse_hex(h).ok_or_else(|| bad("not hex bytes"))?)
                }
                SqlValue::Boolean(b) => Lit::Bool(*b),
                SqlValue::Null => Lit::Null,
                _ => return Err(unsupported(format!("literal `{e}`"))),
            }))
        }
        _ => Ok(None),
    }
}

/// A numeric literal: an integer if it is one (within `i128`, with room to negate), else a finite float.
fn number(text: &str) -> Option<Lit> {
    if let Ok(n) = text.parse::<i128>()
        && n != i128::MIN
    {
        return Some(Lit::Int(n));
    }
    let f: f64 = text.parse().ok()?;
    f.is_finite().then_some(Lit::Float(f))
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// `f` rounded to the nearest `f32`, unless that overflows.
fn round_to_f32(f: f64) -> f64 {
    let rounded = f as f32;
    if rounded.is_finite() {
        f64::from(rounded)
    } else {
        f
    }
}

/// The type of an `Option(T)` column's values: `T`.
fn base_type(ty: &ColumnType) -> &ColumnType {
    match ty {
        ColumnType::Option(inner) => base_type(inner),
        ty => ty,
    }
}

fn is_numeric(ty: &ColumnType) -> bool {
    ty.is_integer()
        || matches!(
            ty,
            ColumnType::Timestamp | ColumnType::F32 | ColumnType::F64
        )
}

fn is_signed(ty: &ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::I8 | ColumnType::I16 | ColumnType::I32 | ColumnType::I64
    )
}

// ---- evaluation ----

/// `n` compared with `f`, exactly (no rounding of `n`); `None` if `f` is NaN.
fn cmp_int_float(n: i128, f: f64) -> Option<Ordering> {
    // 2^127: every i128 is below it, and every float at or above it is above every i128.
    const TWO_127: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if f.is_nan() {
        return None;
    }
    if f >= TWO_127 {
        return Some(Ordering::Less);
    }
    if f < -TWO_127 {
        return Some(Ordering::Greater);
    }
    let floor = f.floor();
    // In range, and integral: the conversion is exact.
    let whole = floor as i128;
    Some(match n.cmp(&whole) {
        Ordering::Equal if f > floor => Ordering::Less,
        o => o,
    })
}

fn cmp_float_operand(v: f64, rhs: &Operand) -> Option<Ordering> {
    match rhs {
        Operand::Int(n) => cmp_int_float(*n, v).map(Ordering::reverse),
        Operand::Float(f) => v.partial_cmp(f),
        _ => None,
    }
}

fn cmp_int_operand(v: i128, rhs: &Operand) -> Option<Ordering> {
    match rhs {
        Operand::Int(n) => Some(v.cmp(n)),
        Operand::Float(f) => cmp_int_float(v, *f),
        _ => None,
    }
}

/// A row's value compared with an operand; `None` is SQL's unknown (a `NULL` on either side, or a NaN).
fn compare(v: &Value, rhs: &Operand) -> Option<Ordering> {
    match (v, rhs) {
        (Value::Null, _) | (_, Operand::Null) => None,
        (Value::Bool(a), Operand::Bool(b)) => Some(a.cmp(b)),
        (Value::I64(a), rhs) => cmp_int_operand(i128::from(*a), rhs),
        (Value::U64(a), rhs) => cmp_int_operand(i128::from(*a), rhs),
        (Value::Timestamp(t), rhs) => cmp_int_operand(i128::from(t.0), rhs),
        (Value::F32(a), rhs) => cmp_float_operand(f64::from(*a), rhs),
        (Value::F64(a), rhs) => cmp_float_operand(*a, rhs),
        (Value::String(a), Operand::Str(b)) => Some(a.cmp(b)),
        (Value::Bytes(a), Operand::Bytes(b)) => Some(a.cmp(b)),
        (Value::Identity(a), Operand::Identity(b)) => Some(a.cmp(b)),
        // Planning only pairs a column with operands of its type.
        _ => None,
    }
}

impl Pred {
    /// The condition on `row`, in three-valued logic: `None` is unknown.
    fn eval(&self, row: &[Value]) -> Option<bool> {
        match self {
            Pred::Const(b) => *b,
            Pred::Cmp { column, op, rhs } => compare(&row[*column], rhs).map(|o| op.holds(o)),
            Pred::IsNull(column) => Some(matches!(row[*column], Value::Null)),
            Pred::Not(p) => p.eval(row).map(|b| !b),
            Pred::And(a, b) => match a.eval(row) {
                Some(false) => Some(false),
                a => match (a, b.eval(row)) {
                    (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                },
            },
            Pred::Or(a, b) => match a.eval(row) {
                Some(true) => Some(true),
                a => match (a, b.eval(row)) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                },
            },
        }
    }
}

/// The primary-key value equal to `rhs`, for a lookup; `None` where a scan must decide.
fn key_of(rhs: &Operand, ty: &ColumnType) -> Option<Value> {
    match (rhs, ty) {
        (Operand::Int(n), ty) if ty.is_integer() => {
            if !ty.int_range()?.contains(n) {
                return None;
            }
            Some(if is_signed(ty) {
                Value::I64(i64::try_from(*n).ok()?)
            } else {
                Value::U64(u64::try_from(*n).ok()?)
            })
        }
        (Operand::Int(n), ColumnType::Timestamp) => Some(Value::Timestamp(locus_types::Timestamp(
            u64::try_from(*n).ok()?,
        ))),
        (Operand::Bool(b), ColumnType::Bool) => Some(Value::Bool(*b)),
        (Operand::Str(s), ColumnType::String) => Some(Value::String(s.clone())),
        (Operand::Bytes(b), ColumnType::Bytes) => Some(Value::Bytes(b.clone())),
        (Operand::Identity(i), ColumnType::Identity) => Some(Value::Identity(*i)),
        _ => None,
    }
}

impl Plan<'_> {
    /// The key to look up when the condition is exactly `pk = literal`.
    fn pk_lookup(&self) -> Option<Value> {
        let Some(Pred::Cmp {
            column,
            op: CmpOp::Eq,
            rhs,
        }) = &self.filter
        else {
            return None;
        };
        let def = self.table.def();
        if *column != def.primary_key.index() {
            return None;
        }
        key_of(rhs, &def.columns[*column].ty)
    }

    /// Call `f` with every selected row, decoded, in unspecified order.
    fn for_each_match(&self, mut f: impl FnMut(Vec<Value>)) -> Result<(), QueryError> {
        let visit = |row: &[u8]| -> Result<(), QueryError> {
            let values = self.table.decode(row).map_err(|source| QueryError::Row {
                table: self.table.name().to_owned(),
                source,
            })?;
            if self
                .filter
                .as_ref()
                .is_none_or(|p| p.eval(&values) == Some(true))
            {
                f(values);
            }
            Ok(())
        };
        if let Some(key) = self.pk_lookup()
            && let Ok(found) = self.table.get(&key)
        {
            return found.map_or(Ok(()), visit);
        }
        self.table.iter().try_for_each(visit)
    }

    fn cmp_rows(&self, a: &[Value], b: &[Value]) -> Ordering {
        for key in &self.order {
            let (x, y) = (&a[key.column], &b[key.column]);
            let o = match (matches!(x, Value::Null), matches!(y, Value::Null)) {
                (true, true) => Ordering::Equal,
                (true, false) if key.nulls_first => Ordering::Less,
                (true, false) => Ordering::Greater,
                (false, true) if key.nulls_first => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) if key.desc => y.cmp(x),
                (false, false) => x.cmp(y),
            };
            if o.is_ne() {
                return o;
            }
        }
        let pk = self.table.def().primary_key.index();
        a[pk].cmp(&b[pk])
    }

    fn run(&self) -> Result<QueryResult, QueryError> {
        let (columns, mut rows): (Vec<String>, Vec<Vec<Json>>) = match &self.output {
            Output::Count(name) => {
                let n = if self.filter.is_none() {
                    self.table.len()
                } else {
                    let mut n = 0usize;
                    self.for_each_match(|_| n += 1)?;
                    n
                };
                // One row, paged like any other.
                let shown = self.offset == 0 && self.limit.is_none_or(|l| l > 0);
                let rows = if shown {
                    vec![vec![Json::from(n)]]
                } else {
                    Vec::new()
                };
                (vec![name.clone()], rows)
            }
            Output::Columns(columns) => {
                let mut matched = Vec::new();
                self.for_each_match(|row| matched.push(row))?;
                // Only the first `end` rows in order can be returned (one past MAX_ROWS tells truncation).
                let take = self.limit.unwrap_or(usize::MAX).min(MAX_ROWS + 1);
                let end = self.offset.saturating_add(take);
                let cmp = |a: &Vec<Value>, b: &Vec<Value>| self.cmp_rows(a, b);
                if matched.len() > end {
                    matched.select_nth_unstable_by(end, cmp);
                    matched.truncate(end);
                }
                matched.sort_unstable_by(cmp);
                let rows = matched
                    .iter()
                    .skip(self.offset)
                    .map(|row| {
                        columns
                            .iter()
                            .map(|(_, c)| value_to_json(&row[*c]))
                            .collect()
                    })
                    .collect();
                (columns.iter().map(|(name, _)| name.clone()).collect(), rows)
            }
        };
        let truncated = rows.len() > MAX_ROWS;
        rows.truncate(MAX_ROWS);
        Ok(QueryResult {
            columns,
            rows,
            truncated,
        })
    }
}

// ---- output ----

/// A [`Value`] as JSON.
///
/// Integers and timestamps (µs since the Unix epoch) are numbers; finite floats are numbers (an `F32` with its
/// shortest decimal form, `0.1` not `0.10000000149011612`), non-finite ones the strings `"NaN"`, `"inf"`,
/// `"-inf"`; a `Vec2` is `[x, y]`; an `Identity` and `Bytes` are lowercase hex strings; an `Opaque` value is its
/// MessagePack decoded to JSON (`bin` as hex strings, extension values as `{"ext": type, "data": hex}`, map keys
/// that are not strings as their JSON text), or its hex if it is not well-formed; `Null` is `null`.
#[must_use]
pub fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::I64(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n),
        Value::F32(f) => f32_to_json(*f),
        Value::F64(f) => f64_to_json(*f),
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => Json::String(hex(b)),
        Value::Vec2(p) => Json::Array(vec![f32_to_json(p.x), f32_to_json(p.y)]),
        Value::Identity(i) => Json::String(i.to_string()),
        Value::Timestamp(t) => Json::from(t.0),
        Value::Opaque(bytes) => msgpack_to_json(bytes).unwrap_or_else(|| Json::String(hex(bytes))),
    }
}

fn f32_to_json(f: f32) -> Json {
    if f.is_finite() {
        // `f32`'s `Display` is its shortest round-tripping decimal; read as `f64` it prints the same.
        let shortest: f64 = f.to_string().parse().expect("a float's Display parses");
        f64_to_json(shortest)
    } else {
        Json::String(f.to_string())
    }
}

fn f64_to_json(f: f64) -> Json {
    serde_json::Number::from_f64(f).map_or_else(|| Json::String(f.to_string()), Json::Number)
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").expect("writing to a String");
    }
    s
}

/// One MessagePack value, exactly filling `bytes`, as JSON; `None` if malformed or nested deeper than
/// [`MAX_DEPTH`]. Decoded by `rmpv`.
fn msgpack_to_json(bytes: &[u8]) -> Option<Json> {
    let mut rest = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut rest, MAX_DEPTH).ok()?;
    if !rest.is_empty() {
        return None;
    }
    rmpv_to_json(value)
}

/// `bin` as hex, extension values as `{"ext": type, "data": hex}`, map keys that are not strings as their JSON
/// text; `None` for a string that is not UTF-8.
fn rmpv_to_json(value: rmpv::Value) -> Option<Json> {
    use rmpv::Value as V;
    Some(match value {
        V::Nil => Json::Null,
        V::Boolean(b) => Json::Bool(b),
        V::Integer(n) => n
            .as_u64()
            .map(Json::from)
            .or_else(|| n.as_i64().map(Json::from))?,
        V::F32(f) => f32_to_json(f),
        V::F64(f) => f64_to_json(f),
        V::String(s) => Json::String(s.into_str()?),
        V::Binary(b) => Json::String(hex(&b)),
        V::Array(items) => Json::Array(
            items
                .into_iter()
                .map(rmpv_to_json)
                .collect::<Option<Vec<_>>>()?,
        ),
        V::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (k, v) in entries {
                let key = match rmpv_to_json(k)? {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(key, rmpv_to_json(v)?);
            }
            Json::Object(map)
        }
        V::Ext(ty, data) => serde_json::json!({ "ext": ty, "data": hex(&data) }),
    })
}

/// A [`QueryResult`] as an aligned text table, in the style of `psql`:
///
/// ```text
///  id | name  | hp
/// ----+-------+----
///   1 | alice | 10
/// (1 row)
/// ```
///
/// Columns of numbers (and `NULL`s) are right-aligned, others left-aligned; strings are shown without quotes
/// (control characters escaped), `null` as `NULL`, arrays and objects as compact JSON. A truncated result says so
/// in its last line.
#[must_use]
pub fn format_table(r: &QueryResult) -> String {
    let cells: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    let mut widths: Vec<usize> = r.columns.iter().map(|c| c.chars().count()).collect();
    for row in &cells {
        for (w, text) in widths.iter_mut().zip(row) {
            *w = (*w).max(text.chars().count());
        }
    }
    let right: Vec<bool> = (0..r.columns.len())
        .map(|i| {
            let column = || r.rows.iter().filter_map(|row| row.get(i));
            column().any(Json::is_number) && column().all(|v| v.is_number() || v.is_null())
        })
        .collect();
    let line = |texts: &mut dyn Iterator<Item = &str>| -> String {
        let padded: Vec<String> = texts
            .zip(widths.iter().zip(&right))
            .map(|(text, (w, right))| {
                if *right {
                    format!(" {text:>w$} ")
                } else {
                    format!(" {text:<w$} ")
                }
            })
            .collect();
        let mut line = padded.join("|").trim_end().to_owned();
        line.push('\n');
        line
    };
    let mut out = line(&mut r.columns.iter().map(String::as_str));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    out.push_str(&rule.join("+"));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    let n = r.rows.len();
    out.push_str(&format!("({n} row{})", if n == 1 { "" } else { "s" }));
    if r.truncated {
        out.push_str(&format!(
            " (truncated: more than {MAX_ROWS} rows matched; narrow the query or page with LIMIT/OFFSET)"
        ));
    }
    out.push('\n');
    out
}

/// A JSON value's text in a table cell.
fn cell(v: &Json) -> String {
    match v {
        Json::Null => "NULL".to_owned(),
        Json::String(s) => {
            let mut text = String::with_capacity(s.len());
            for c in s.chars() {
                if c.is_control() {
                    text.extend(c.escape_default());
                } else {
                    text.push(c);
                }
            }
            text
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_store::StoreConfig;
    use locus_types::{TableDef, TableId, Timestamp, Vec2, codec};
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    use serde_json::json;

    fn insert_rows(db: &mut Database, id: TableId, rows: &[Vec<Value>]) {
        let columns = db.table(id).unwrap().def().columns.clone();
        let mut tx = db.begin();
        for values in rows {
            let row = codec::encode_row(&columns, values).unwrap();
            tx.insert(id, &row).unwrap();
        }
        let _changes = tx.commit();
    }

    fn opt(ty: ColumnType) -> ColumnType {
        ColumnType::Option(Box::new(ty))
    }

    /// `player` (private, the default) with one column of every type, and an empty `empty`.
    fn world() -> Database {
        let mut db = Database::new(StoreConfig::default());
        let def = TableDef::builder("player")
            .column("id", ColumnType::U64)
            .column("name", ColumnType::String)
            .column("hp", ColumnType::I32)
            .column("speed", ColumnType::F32)
            .column("gold", opt(ColumnType::U64))
            .column("alive", ColumnType::Bool)
            .column("owner", ColumnType::Identity)
            .column("pos", ColumnType::Vec2)
            .column("born", ColumnType::Timestamp)
            .column("bag", ColumnType::Opaque)
            .column("tag", ColumnType::Bytes)
            .column("Level", ColumnType::U8)
            .primary_key("id")
            .build()
            .unwrap();
        let player = db.create_table(def).unwrap();
        let bag = |items: &[u32]| Value::Opaque(rmp_serde::to_vec(items).unwrap().into());
        #[rustfmt::skip]
        let rows = vec![
            // id name     hp  speed  gold     alive  owner  pos         born  bag          tag     Level
            row(1, "alice", 100, 5.5, Some(10), true, 1, (1.0, 2.0), 1_000, bag(&[1, 2]), &[0xab], 3),
            row(2, "bob", -5, 0.0, None, false, 2, (0.0, 0.0), 2_000, bag(&[]), &[], 1),
            row(3, "carol", 50, f32::NAN, Some(7), true, 3, (-3.5, 4.0), 3_000, bag(&[9]), &[0x01, 0x02], 2),
            row(4, "dave", 50, 2.25, Some(0), true, 4, (5.0, 5.0), 4_000, bag(&[3]), &[0xff], 2),
            row(5, "eve", 0, -1.5, None, false, 5, (0.5, 0.5), 5_000, bag(&[4, 4]), &[0x00], 1),
        ];
        insert_rows(&mut db, player, &rows);
        let empty = TableDef::builder("empty")
            .column("k", ColumnType::String)
            .column("v", ColumnType::U64)
            .primary_key("k")
            .build()
            .unwrap();
        db.create_table(empty).unwrap();
        db
    }

    #[expect(clippy::too_many_arguments, reason = "one test row, column by column")]
    fn row(
        id: u64,
        name: &str,
        hp: i32,
        speed: f32,
        gold: Option<u64>,
        alive: bool,
        owner: u8,
        pos: (f32, f32),
        born: u64,
        bag: Value,
        tag: &[u8],
        level: u8,
    ) -> Vec<Value> {
        vec![
            Value::U64(id),
            name.into(),
            hp.into(),
            speed.into(),
            gold.into(),
            alive.into(),
            Value::Identity(Identity([owner; 32])),
            Value::Vec2(Vec2::new(pos.0, pos.1)),
            Value::Timestamp(Timestamp(born)),
            bag,
            tag.into(),
            level.into(),
        ]
    }

    fn run(db: &Database, sql: &str) -> QueryResult {
        query(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The ids `sql` selects from `player`, in result order (`sql` must select `id` first).
    fn ids(db: &Database, sql: &str) -> Vec<u64> {
        run(db, sql)
            .rows
            .iter()
            .map(|r| r[0].as_u64().expect("an id"))
            .collect()
    }

    fn ids_where(db: &Database, cond: &str) -> Vec<u64> {
        ids(db, &format!("SELECT id FROM player WHERE {cond}"))
    }

    fn err(db: &Database, sql: &str) -> QueryError {
        match query(db, sql) {
            Ok(r) => panic!("{sql}: expected an error, got {r:?}"),
            Err(e) => e,
        }
    }

    /// Asserts `sql` is unsupported, naming `what`.
    fn assert_unsupported(db: &Database, sql: &str, what: &str) {
        match err(db, sql) {
            QueryError::Unsupported(m) => assert!(m.contains(what), "{sql}: `{m}` lacks `{what}`"),
            e => panic!("{sql}: expected Unsupported({what}), got {e:?}"),
        }
    }

    #[test]
    fn star_selects_every_column_in_declared_order_sorted_by_primary_key() {
        let db = world();
        let r = run(&db, "SELECT * FROM player");
        let names: Vec<&str> = db
            .table(TableId(0))
            .unwrap()
            .def()
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(r.columns, names);
        assert!(!r.truncated);
        assert_eq!(r.rows.len(), 5);
        assert_eq!(
            r.rows[0],
            vec![
                json!(1),
                json!("alice"),
                json!(100),
                json!(5.5),
                json!(10),
                json!(true),
                json!("01".repeat(32)),
                json!([1.0, 2.0]),
                json!(1000),
                json!([1, 2]),
                json!("ab"),
                json!(3),
            ]
        );
        assert_eq!(r.rows[1][4], Json::Null);
        assert_eq!(r.rows[2][3], json!("NaN"));
        assert_eq!(ids(&db, "select * from player"), [1, 2, 3, 4, 5]);
        assert_eq!(ids(&db, "SELECT *, name FROM player")[..], [1, 2, 3, 4, 5]);
        assert_eq!(run(&db, "SELECT *, name FROM player").columns.len(), 13);
    }

    #[test]
    fn columns_aliases_and_qualified_names() {
        let db = world();
        let r = run(
            &db,
            "SELECT name, id AS key, player.hp, p.hp FROM player AS p WHERE id = 4",
        );
        assert_eq!(r.columns, ["name", "key", "hp", "hp"]);
        assert_eq!(
            r.rows,
            [vec![json!("dave"), json!(4), json!(50), json!(50)]]
        );
        let r = run(
            &db,
            "SELECT p.name n FROM player p WHERE p.id <= 2 ORDER BY n DESC",
        );
        assert_eq!(r.columns, ["n"]);
        assert_eq!(r.rows, [vec![json!("bob")], vec![json!("alice")]]);
        match err(&db, "SELECT q.id FROM player p") {
            QueryError::NoSuchColumn { table, column } => {
                assert_eq!((table.as_str(), column.as_str()), ("player", "q.id"));
            }
            e => panic!("{e:?}"),
        }
        assert_unsupported(&db, "SELECT a.b.c FROM player", "a.b.c");
    }

    #[test]
    fn names_are_case_sensitive_and_private_tables_are_queryable() {
        let db = world();
        assert_eq!(
            run(&db, "SELECT Level FROM player WHERE id = 1").rows,
            [vec![json!(3)]]
        );
        assert_eq!(
            run(&db, "SELECT \"Level\" FROM player WHERE id = 1").rows,
            [vec![json!(3)]]
        );
        match err(&db, "SELECT level FROM player") {
            QueryError::NoSuchColumn { column, .. } => assert_eq!(column, "level"),
            e => panic!("{e:?}"),
        }
        assert!(
            matches!(err(&db, "SELECT * FROM Player"), QueryError::NoSuchTable(t) if t == "Player")
        );
        assert_eq!(
            db.table(TableId(0)).unwrap().def().access,
            locus_types::TableAccess::Private
        );
        // Keywords are not case-sensitive.
        assert_eq!(
            ids(&db, "sElEcT id FrOm player wHeRe hp = 50 oRdEr By id DeSc"),
            [4, 3]
        );
    }

    #[test]
    fn count_star() {
        let db = world();
        assert_eq!(
            run(&db, "SELECT COUNT(*) FROM player").rows,
            [vec![json!(5)]]
        );
        let r = run(&db, "SELECT count(*) AS n FROM player WHERE hp >= 50");
        assert_eq!(r.columns, ["n"]);
        assert_eq!(r.rows, [vec![json!(3)]]);
        assert_eq!(run(&db, "SELECT COUNT(*) FROM player").columns, ["count"]);
        assert_eq!(
            run(&db, "SELECT COUNT(*) FROM empty").rows,
            [vec![json!(0)]]
        );
        assert_eq!(
            run(&db, "SELECT COUNT(*) FROM player WHERE id = 3").rows,
            [vec![json!(1)]]
        );
        assert!(
            run(&db, "SELECT COUNT(*) FROM player LIMIT 0")
                .rows
                .is_empty()
        );
        assert!(
            run(&db, "SELECT COUNT(*) FROM player OFFSET 1")
                .rows
                .is_empty()
        );
        assert_eq!(
            run(&db, "SELECT COUNT(*) FROM player LIMIT 3").rows.len(),
            1
        );
        assert_unsupported(&db, "SELECT COUNT(*), id FROM player", "COUNT(*) beside");
        assert_unsupported(&db, "SELECT id, COUNT(*) FROM player", "COUNT(*) beside");
        assert_unsupported(&db, "SELECT COUNT(id) FROM player", "COUNT(id)");
        assert_unsupported(
            &db,
            "SELECT COUNT(DISTINCT id) FROM player",
            "only COUNT(*)",
        );
        assert_unsupported(
            &db,
            "SELECT COUNT(*) FILTER (WHERE hp > 0) FROM player",
            "only COUNT(*)",
        );
        assert_unsupported(&db, "SELECT COUNT(*) OVER () FROM player", "only COUNT(*)");
        assert_unsupported(
            &db,
            "SELECT COUNT(*) FROM player ORDER BY id",
            "ORDER BY with COUNT",
        );
        assert_unsupported(&db, "SELECT MAX(hp) FROM player", "MAX(hp)");
        assert_unsupported(&db, "SELECT id FROM player WHERE abs(hp) > 1", "abs(hp)");
    }

    #[test]
    fn numeric_comparisons_are_exact_across_ints_and_floats() {
        let db = world();
        assert_eq!(ids_where(&db, "hp = 50"), [3, 4]);
        assert_eq!(ids_where(&db, "hp = 50.0"), [3, 4]);
        assert_eq!(ids_where(&db, "hp != 50"), [1, 2, 5]);
        assert_eq!(ids_where(&db, "hp <> 50"), [1, 2, 5]);
        assert_eq!(ids_where(&db, "hp < 0"), [2]);
        assert_eq!(ids_where(&db, "hp <= 0"), [2, 5]);
        assert_eq!(ids_where(&db, "hp > 49.5"), [1, 3, 4]);
        assert_eq!(ids_where(&db, "hp >= 50.5"), [1]);
        assert_eq!(ids_where(&db, "hp > -5.5"), [1, 2, 3, 4, 5]);
        assert_eq!(ids_where(&db, "hp = -5"), [2]);
        assert_eq!(ids_where(&db, "hp = +50"), [3, 4]);
        assert_eq!(ids_where(&db, "hp = 1e2"), [1]);
        // Literal on the left: the operator is flipped.
        assert_eq!(ids_where(&db, "50 < hp"), [1]);
        assert_eq!(ids_where(&db, "0 >= hp"), [2, 5]);
        // Floats against integer and float literals; NaN is unknown.
        assert_eq!(ids_where(&db, "speed > 2"), [1, 4]);
        assert_eq!(ids_where(&db, "speed = 2.25"), [4]);
        assert_eq!(ids_where(&db, "speed < 0"), [5]);
        assert_eq!(ids_where(&db, "speed != 0"), [1, 4, 5]);
        assert_eq!(ids_where(&db, "NOT (speed = 0)"), [1, 4, 5]);
        // Unsigned columns against negative and huge literals.
        assert_eq!(ids_where(&db, "id > -1"), [1, 2, 3, 4, 5]);
        assert!(ids_where(&db, "id > 99999999999999999999999999").is_empty());
        assert_eq!(ids_where(&db, "id < 1e300"), [1, 2, 3, 4, 5]);
        assert_eq!(ids_where(&db, "Level < 2.000001"), [2, 3, 4, 5]);
        // Timestamps compare as microseconds.
        assert_eq!(ids_where(&db, "born >= 4000"), [4, 5]);
    }

    #[test]
    fn int_float_comparison_matches_exact_arithmetic() {
        for (n, f) in [
            (0_i128, 0.0),
            (0, -0.0),
            (1, 0.5),
            (-1, -0.5),
            (-1, -1.5),
            (i128::from(i64::MAX), 9_223_372_036_854_775_807.0), // the float is 2^63
            (i128::from(u64::MAX), 18_446_744_073_709_551_615.0), // the float is 2^64
            (i128::MAX, 1e39),
            (i128::MIN + 1, -1e39),
            (5, f64::INFINITY),
            (5, f64::NEG_INFINITY),
        ] {
            let expected = if f.is_infinite() {
                if f > 0.0 {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            } else if f.abs() < 1e30 {
                // Small enough to compare in scaled integers.
                let scaled = (f * 2.0) as i128;
                (n * 2).cmp(&scaled)
            } else if f > 0.0 {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            let expected = match (n, f) {
                (n, _) if n == i128::from(i64::MAX) => Ordering::Less,
                (n, _) if n == i128::from(u64::MAX) => Ordering::Less,
                _ => expected,
            };
            assert_eq!(cmp_int_float(n, f), Some(expected), "{n} vs {f}");
        }
        assert_eq!(cmp_int_float(1, f64::NAN), None);
    }

    #[test]
    fn f32_columns_compare_with_literals_rounded_to_f32() {
        let mut db = Database::new(StoreConfig::default());
        let def = TableDef::builder("f")
            .column("id", ColumnType::U8)
            .column("v", ColumnType::F32)
            .primary_key("id")
            .build()
            .unwrap();
        let f = db.create_table(def).unwrap();
        let rows: Vec<Vec<Value>> = [0.1_f32, 0.2, 0.3, 1e30, f32::INFINITY]
            .iter()
            .zip(1u8..)
            .map(|(v, id)| vec![id.into(), (*v).into()])
            .collect();
        insert_rows(&mut db, f, &rows);
        let ids = |cond: &str| ids(&db, &format!("SELECT id FROM f WHERE {cond}"));
        assert_eq!(ids("v = 0.1"), [1]);
        assert_eq!(ids("v > 0.1"), [2, 3, 4, 5]);
        assert_eq!(ids("v <= 0.2"), [1, 2]);
        assert_eq!(ids("v BETWEEN 0.2 AND 0.3"), [2, 3]);
        assert_eq!(ids("v = 1e30"), [4]);
        // Beyond f32's range the literal stays exact.
        assert_eq!(ids("v > 1e39"), [5]);
        assert_eq!(ids("v < 1e39"), [1, 2, 3, 4]);
        assert_eq!(
            run(&db, "SELECT v FROM f WHERE id = 1").rows,
            [vec![json!(0.1)]]
        );
    }

    #[test]
    fn strings_bools_bytes_identities() {
        let db = world();
        assert_eq!(ids_where(&db, "name = 'bob'"), [2]);
        assert_eq!(ids_where(&db, "name > 'c'"), [3, 4, 5]);
        assert_eq!(ids_where(&db, "name <> 'bob'"), [1, 3, 4, 5]);
        assert_eq!(ids_where(&db, "'carol' = name"), [3]);
        assert!(ids_where(&db, "name = 'Bob'").is_empty());
        assert_eq!(ids_where(&db, "alive = true"), [1, 3, 4]);
        assert_eq!(ids_where(&db, "alive"), [1, 3, 4]);
        assert_eq!(ids_where(&db, "NOT alive"), [2, 5]);
        assert_eq!(ids_where(&db, "alive < TRUE"), [2, 5]);
        assert_eq!(ids_where(&db, "tag = X'AB'"), [1]);
        assert_eq!(ids_where(&db, "tag < X'01'"), [2, 5]);
        let owner = "03".repeat(32);
        assert_eq!(ids_where(&db, &format!("owner = '{owner}'")), [3]);
        assert_eq!(
            ids_where(&db, &format!("owner = '{}'", owner.to_uppercase())),
            [3]
        );
        assert_eq!(ids_where(&db, &format!("owner >= X'{owner}'")), [3, 4, 5]);
        assert_eq!(ids_where(&db, "TRUE"), [1, 2, 3, 4, 5]);
        assert!(ids_where(&db, "FALSE").is_empty());
        assert!(ids_where(&db, "NULL").is_empty());
    }

    #[test]
    fn null_follows_three_valued_logic() {
        let db = world();
        assert_eq!(ids_where(&db, "gold IS NULL"), [2, 5]);
        assert_eq!(ids_where(&db, "gold IS NOT NULL"), [1, 3, 4]);
        assert!(ids_where(&db, "gold = NULL").is_empty());
        assert!(ids_where(&db, "gold != NULL").is_empty());
        assert!(ids_where(&db, "NOT (gold = NULL)").is_empty());
        assert_eq!(ids_where(&db, "gold > 5"), [1, 3]);
        assert_eq!(ids_where(&db, "NOT (gold > 5)"), [4]);
        assert_eq!(ids_where(&db, "gold > 5 OR hp = -5"), [1, 2, 3]);
        assert_eq!(ids_where(&db, "gold > 5 OR TRUE"), [1, 2, 3, 4, 5]);
        assert_eq!(ids_where(&db, "NOT (gold > 5 AND FALSE)"), [1, 2, 3, 4, 5]);
        // Row 4 (gold 0): `false OR NULL` is unknown, and so is its negation.
        assert!(ids_where(&db, "NOT (gold > 5 OR NULL)").is_empty());
        assert_eq!(ids_where(&db, "NOT (gold > 5 AND NULL)"), [4]);
        assert_eq!(ids_where(&db, "pos IS NOT NULL"), [1, 2, 3, 4, 5]);
        assert!(ids_where(&db, "bag IS NULL").is_empty());
        assert!(ids_where(&db, "name = NULL").is_empty());
    }

    #[test]
    fn and_or_not_and_parentheses() {
        let db = world();
        assert_eq!(ids_where(&db, "hp = 50 AND alive"), [3, 4]);
        assert_eq!(ids_where(&db, "hp = 50 AND speed > 0"), [4]);
        assert_eq!(ids_where(&db, "hp = 100 OR name = 'eve'"), [1, 5]);
        // AND binds tighter than OR.
        assert_eq!(ids_where(&db, "id = 1 OR id = 2 AND hp = 50"), [1]);
        assert_eq!(ids_where(&db, "(id = 1 OR id = 2) AND hp = -5"), [2]);
        assert_eq!(ids_where(&db, "NOT (id = 1 OR id = 2)"), [3, 4, 5]);
        assert_eq!(ids_where(&db, "NOT NOT id = 3"), [3]);
        assert_eq!(ids_where(&db, "((((id)))) = 3"), [3]);
    }

    #[test]
    fn in_and_between() {
        let db = world();
        assert_eq!(ids_where(&db, "id IN (1, 3, 99)"), [1, 3]);
        assert_eq!(ids_where(&db, "id NOT IN (1, 3, 99)"), [2, 4, 5]);
        assert_eq!(ids_where(&db, "name IN ('eve', 'bob')"), [2, 5]);
        // A NULL in the list makes NOT IN unknown for every row that is not in it.
        assert_eq!(ids_where(&db, "id IN (1, NULL)"), [1]);
        assert!(ids_where(&db, "id NOT IN (1, NULL)").is_empty());
        assert_eq!(ids_where(&db, "gold IN (0, 7)"), [3, 4]);
        assert_eq!(ids_where(&db, "gold NOT IN (0, 7)"), [1]);
        assert_eq!(ids_where(&db, "hp BETWEEN 0 AND 50"), [3, 4, 5]);
        assert_eq!(ids_where(&db, "hp NOT BETWEEN 0 AND 50"), [1, 2]);
        assert_eq!(ids_where(&db, "hp BETWEEN -5.5 AND -4.5"), [2]);
        assert!(ids_where(&db, "hp BETWEEN 50 AND 0").is_empty());
        assert_eq!(ids_where(&db, "gold NOT BETWEEN 1 AND 9"), [1, 4]);
        assert_eq!(ids_where(&db, "name BETWEEN 'b' AND 'd'"), [2, 3]);
        assert_unsupported(
            &db,
            "SELECT id FROM player WHERE id IN (SELECT id FROM player)",
            "IN",
        );
        assert_unsupported(
            &db,
            "SELECT id FROM player WHERE id IN (hp)",
            "only literals",
        );
        assert_unsupported(
            &db,
            "SELECT id FROM player WHERE 3 IN (1, 2)",
            "must be a column",
        );
        assert_unsupported(
            &db,
            "SELECT id FROM player WHERE 3 BETWEEN hp AND 4",
            "must be a column",
        );
        assert_unsupported(
            &db,
            "SELECT id FROM player WHERE 3 IS NULL",
            "must be a column",
        );
    }

    #[test]
    fn order_by_keys_directions_and_nulls() {
        let db = world();
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY id DESC"),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY name"),
            [1, 2, 3, 4, 5]
        );
        // Ties are broken by primary key.
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY hp DESC"),
            [1, 3, 4, 5, 2]
        );
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY hp ASC, id DESC"),
            [2, 5, 4, 3, 1]
        );
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY Level, hp DESC"),
            [5, 2, 3, 4, 1]
        );
        // NULLs last ascending, first descending, unless told.
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY gold"),
            [4, 3, 1, 2, 5]
        );
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY gold DESC"),
            [2, 5, 1, 3, 4]
        );
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY gold NULLS FIRST"),
            [2, 5, 4, 3, 1]
        );
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY gold DESC NULLS LAST"),
            [1, 3, 4, 2, 5]
        );
        // Floats by total order: NaN above everything.
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY speed"),
            [5, 2, 4, 1, 3]
        );
        // Any column sorts, even ones that cannot be compared in WHERE.
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY pos"),
            [3, 2, 5, 1, 4]
        );
        // An alias from the select list.
        assert_eq!(
            ids(
                &db,
                "SELECT id, hp AS health FROM player ORDER BY health, id"
            ),
            [2, 5, 3, 4, 1]
        );
        assert_eq!(
            ids(&db, "SELECT id FROM player p ORDER BY p.name DESC"),
            [5, 4, 3, 2, 1]
        );
        // A select-list name wins over a column of the same name, as in SQL.
        assert_eq!(
            ids(&db, "SELECT id, hp AS name FROM player ORDER BY name, id"),
            [2, 5, 3, 4, 1]
        );
        assert!(matches!(
            err(&db, "SELECT id FROM player ORDER BY nope"),
            QueryError::NoSuchColumn { .. }
        ));
        assert_unsupported(
            &db,
            "SELECT id FROM player ORDER BY hp + 1",
            "ORDER BY `hp + 1`",
        );
        assert_unsupported(&db, "SELECT id FROM player ORDER BY 1", "ORDER BY `1`");
    }

    #[test]
    fn limit_and_offset() {
        let db = world();
        assert_eq!(ids(&db, "SELECT id FROM player LIMIT 2"), [1, 2]);
        assert_eq!(
            ids(&db, "SELECT id FROM player ORDER BY id DESC LIMIT 2"),
            [5, 4]
        );
        assert_eq!(ids(&db, "SELECT id FROM player LIMIT 2 OFFSET 1"), [2, 3]);
        assert_eq!(ids(&db, "SELECT id FROM player OFFSET 3"), [4, 5]);
        assert_eq!(ids(&db, "SELECT id FROM player LIMIT 1, 2"), [2, 3]);
        assert_eq!(ids(&db, "SELECT id FROM player LIMIT ALL"), [1, 2, 3, 4, 5]);
        assert_eq!(ids(&db, "SELECT id FROM player LIMIT NULL OFFSET 4"), [5]);
        assert!(ids(&db, "SELECT id FROM player LIMIT 0").is_empty());
        assert!(ids(&db, "SELECT id FROM player OFFSET 99").is_empty());
        assert_eq!(
            ids(&db, "SELECT id FROM player LIMIT 10 OFFSET 2"),
            [3, 4, 5]
        );
    }

    #[test]
    fn bad_limits_are_errors() {
        let db = world();
        for sql in [
            "SELECT id FROM player LIMIT -1",
            "SELECT id FROM player LIMIT 1.5",
            "SELECT id FROM player LIMIT 'x'",
            "SELECT id FROM player LIMIT hp",
            "SELECT id FROM player OFFSET -2",
            "SELECT id FROM player LIMIT 99999999999999999999999",
        ] {
            assert!(
                matches!(err(&db, sql), QueryError::BadLiteral { .. }),
                "{sql}"
            );
        }
    }

    #[test]
    fn results_are_truncated_at_max_rows() {
        let mut db = Database::new(StoreConfig::default());
        let def = TableDef::builder("many")
            .column("id", ColumnType::U32)
            .column("even", ColumnType::Bool)
            .primary_key("id")
            .build()
            .unwrap();
        let many = db.create_table(def).unwrap();
        let n = MAX_ROWS as u32 + 5;
        let rows: Vec<Vec<Value>> = (0..n)
            .rev()
            .map(|i| vec![i.into(), (i % 2 == 0).into()])
            .collect();
        insert_rows(&mut db, many, &rows);
        let r = run(&db, "SELECT id FROM many");
        assert!(r.truncated);
        assert_eq!(r.rows.len(), MAX_ROWS);
        assert_eq!(r.rows[0], [json!(0)]);
        assert_eq!(r.rows[MAX_ROWS - 1], [json!(MAX_ROWS - 1)]);
        assert!(format_table(&r).contains("truncated"));
        let r = run(
            &db,
            "SELECT id FROM many ORDER BY id DESC LIMIT 10 OFFSET 2",
        );
        assert!(!r.truncated);
        assert_eq!(r.rows.first(), Some(&vec![json!(n - 3)]));
        assert_eq!(r.rows.len(), 10);
        let r = run(&db, &format!("SELECT id FROM many LIMIT {MAX_ROWS}"));
        assert!(!r.truncated);
        assert_eq!(r.rows.len(), MAX_ROWS);
        let r = run(&db, "SELECT id FROM many OFFSET 5");
        assert!(!r.truncated);
        assert_eq!(r.rows.len(), MAX_ROWS);
        assert_eq!(r.rows[0], [json!(5)]);
        let r = run(&db, "SELECT id FROM many WHERE even");
        assert!(!r.truncated);
        assert_eq!(r.rows.len(), (n as usize).div_ceil(2));
        assert_eq!(run(&db, "SELECT COUNT(*) FROM many").rows, [vec![json!(n)]]);
    }

    #[test]
    fn primary_key_equality_is_a_lookup_with_the_same_result() {
        let db = world();
        let lookup = |sql: &str| plan(&db, sql).unwrap().pk_lookup();
        assert_eq!(
            lookup("SELECT * FROM player WHERE id = 3"),
            Some(Value::U64(3))
        );
        assert_eq!(
            lookup("SELECT * FROM player WHERE 3 = id"),
            Some(Value::U64(3))
        );
        assert_eq!(
            lookup("SELECT * FROM player WHERE (id = 3)"),
            Some(Value::U64(3))
        );
        assert_eq!(lookup("SELECT * FROM player WHERE id = 3 AND hp > 0"), None);
        assert_eq!(lookup("SELECT * FROM player WHERE id = -1"), None);
        assert_eq!(lookup("SELECT * FROM player WHERE id = 3.0"), None);
        assert_eq!(lookup("SELECT * FROM player WHERE hp = 3"), None);
        assert_eq!(
            lookup("SELECT * FROM empty WHERE k = 'x'"),
            Some(Value::from("x"))
        );
        assert_eq!(ids_where(&db, "id = 3"), [3]);
        assert_eq!(ids_where(&db, "id = 3.0"), [3]);
        assert!(ids_where(&db, "id = 9").is_empty());
        assert!(ids_where(&db, "id = -1").is_empty());
        assert_eq!(
            run(&db, "SELECT COUNT(*) FROM player WHERE id = 2").rows,
            [vec![json!(1)]]
        );
    }

    #[test]
    fn type_mismatches_are_errors() {
        let db = world();
        for (cond, column) in [
            ("id = 'x'", "id"),
            ("'x' < id", "id"),
            ("name = 3", "name"),
            ("alive = 1", "alive"),
            ("hp = TRUE", "hp"),
            ("born = '2020-01-01'", "born"),
            ("tag = 'ab'", "tag"),
            ("gold = 'x'", "gold"),
            ("id IN (1, 'x')", "id"),
            ("hp BETWEEN 1 AND 'x'", "hp"),
            ("name = X'00'", "name"),
            ("owner = 1", "owner"),
        ] {
            let sql = format!("SELECT id FROM player WHERE {cond}");
            match err(&db, &sql) {
                QueryError::TypeMismatch { column: c, .. } => assert_eq!(c, column, "{sql}"),
                e => panic!("{sql}: {e:?}"),
            }
        }
        // On an empty table too: errors come from planning.
        assert!(matches!(
            err(&db, "SELECT * FROM empty WHERE v = 'x'"),
            QueryError::TypeMismatch { .. }
        ));
        for cond in ["pos = 1", "bag = 'x'", "pos > 0"] {
            let sql = format!("SELECT id FROM player WHERE {cond}");
            assert!(
                matches!(err(&db, &sql), QueryError::NotComparable { .. }),
                "{sql}"
            );
        }
        for cond in [
            "owner = 'abc'",
            "owner = X'0102'",
            &format!("owner = '{}'", "zz".repeat(32)),
            "tag = X'abc'",
        ] {
            let sql = format!("SELECT id FROM player WHERE {cond}");
            assert!(
                matches!(err(&db, &sql), QueryError::BadLiteral { .. }),
                "{sql}"
            );
        }
        assert!(matches!(
            err(&db, "SELECT id FROM player WHERE speed > 1e999"),
            QueryError::BadLiteral { .. }
        ));
        assert_unsupported(&db, "SELECT id FROM player WHERE hp", "not Bool");
        assert_unsupported(&db, "SELECT id FROM player WHERE 3", "`3` as a condition");
        assert_unsupported(
            &db,
            "SELECT id FROM player WHERE name = -'x'",
            "sign on a non-number",
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        let db = world();
        assert!(
            matches!(err(&db, "SELECT * FROM nope"), QueryError::NoSuchTable(t) if t == "nope")
        );
        for sql in [
            "SELECT nope FROM player",
            "SELECT id FROM player WHERE nope = 1",
            "SELECT id FROM player WHERE nope IS NULL",
            "SELECT id FROM player WHERE 1 = nope",
        ] {
            match err(&db, sql) {
                QueryError::NoSuchColumn { table, column } => {
                    assert_eq!(
                        (table.as_str(), column.as_str()),
                        ("player", "nope"),
                        "{sql}"
                    );
                }
                e => panic!("{sql}: {e:?}"),
            }
        }
    }

    #[test]
    fn everything_outside_the_subset_is_unsupported_and_named() {
        let db = world();
        for (sql, what) in [
            ("INSERT INTO player (id) VALUES (1)", "INSERT statements"),
            ("DELETE FROM player", "DELETE statements"),
            ("UPDATE player SET hp = 1", "UPDATE statements"),
            ("DROP TABLE player", "DROP statements"),
            ("SELECT 1; SELECT 2", "2 statements"),
            ("SELECT id FROM player UNION SELECT id FROM player", "UNION"),
            ("VALUES (1)", "VALUES"),
            ("WITH x AS (SELECT 1) SELECT * FROM player", "WITH"),
            ("SELECT DISTINCT hp FROM player", "DISTINCT"),
            ("SELECT hp FROM player GROUP BY hp", "GROUP BY"),
            ("SELECT id FROM player HAVING id > 1", "HAVING"),
            ("SELECT * FROM player, empty", "exactly one table"),
            ("SELECT 1", "exactly one table"),
            ("SELECT * FROM player JOIN empty ON id = v", "JOIN"),
            ("SELECT * FROM (SELECT * FROM player) AS t", "in FROM"),
            ("SELECT * FROM public.player", "qualified table name"),
            ("SELECT * FROM player FOR UPDATE", "FOR UPDATE"),
            ("SELECT * FROM player FETCH FIRST 1 ROWS ONLY", "FETCH"),
            ("SELECT * FROM player AS p (a, b)", "column aliases"),
            ("SELECT hp + 1 FROM player", "`hp + 1` in the select list"),
            ("SELECT 'x' FROM player", "in the select list"),
            ("SELECT * EXCLUDE (hp) FROM player", "only a plain *"),
            ("SELECT p.* FROM player p", "in the select list"),
            ("SELECT id FROM player WHERE name LIKE 'a%'", "LIKE"),
            ("SELECT id FROM player WHERE hp + 1 > 2", "`hp + 1` in"),
            ("SELECT id FROM player WHERE hp & 1", "operator `&`"),
            (
                "SELECT id FROM player WHERE hp = Level",
                "comparing two columns",
            ),
            ("SELECT id FROM player WHERE 1 = 1", "needs a column"),
            (
                "SELECT id FROM player WHERE id = (SELECT 1)",
                "only literals",
            ),
            ("SELECT id FROM player WHERE EXISTS (SELECT 1)", "in WHERE"),
            ("SELECT id FROM player WHERE alive IS TRUE", "in WHERE"),
            ("SELECT id FROM player WHERE name = E'x'", "literal"),
            ("SELECT id FROM player WHERE hp = $1", "literal"),
        ] {
            assert_unsupported(&db, sql, what);
        }
    }

    #[test]
    fn parse_errors_and_size_limits() {
        let db = world();
        for sql in [
            "",
            "   ",
            "SELEKT * FROM player",
            "SELECT * FROM",
            "SELECT * FROM player WHERE",
        ] {
            assert!(matches!(err(&db, sql), QueryError::Parse(_)), "{sql:?}");
        }
        let long = format!(
            "SELECT id FROM player WHERE name = '{}'",
            "x".repeat(MAX_QUERY_LEN)
        );
        assert!(matches!(err(&db, &long), QueryError::TooLarge(_)));
        // A long chain of ANDs nests deeply without parentheses.
        let chain = vec!["id > 0"; MAX_CONDITION_DEPTH + 10].join(" AND ");
        assert!(matches!(
            err(&db, &format!("SELECT id FROM player WHERE {chain}")),
            QueryError::TooLarge(_)
        ));
        let longest = "id > 0 AND ".repeat(MAX_QUERY_LEN / 12);
        let sql = format!("SELECT id FROM player WHERE {longest}id > 0");
        assert!(sql.len() <= MAX_QUERY_LEN);
        assert!(matches!(err(&db, &sql), QueryError::TooLarge(_)));
        let chain = vec!["id > 0"; MAX_CONDITION_DEPTH / 2].join(" AND ");
        assert_eq!(ids_where(&db, &chain), [1, 2, 3, 4, 5]);
        // Long IN lists do not nest.
        let list: Vec<String> = (0..2_000).map(|i| i.to_string()).collect();
        assert_eq!(
            ids_where(&db, &format!("id IN ({})", list.join(", "))),
            [1, 2, 3, 4, 5]
        );
        // Deep parentheses are refused (by the parser or by us), never overflow the stack.
        let deep = format!(
            "SELECT id FROM player WHERE {}id = 1{}",
            "(".repeat(5_000),
            ")".repeat(5_000)
        );
        assert!(matches!(
            err(&db, &deep),
            QueryError::Parse(_) | QueryError::TooLarge(_)
        ));
    }

    #[test]
    fn values_as_json() {
        assert_eq!(value_to_json(&Value::Null), Json::Null);
        assert_eq!(value_to_json(&Value::Bool(true)), json!(true));
        assert_eq!(value_to_json(&Value::I64(i64::MIN)), json!(i64::MIN));
        assert_eq!(value_to_json(&Value::U64(u64::MAX)), json!(u64::MAX));
        assert_eq!(value_to_json(&Value::F32(0.1)), json!(0.1));
        assert_eq!(value_to_json(&Value::F32(-2.5)), json!(-2.5));
        assert_eq!(value_to_json(&Value::F32(f32::NAN)), json!("NaN"));
        assert_eq!(value_to_json(&Value::F64(f64::INFINITY)), json!("inf"));
        assert_eq!(value_to_json(&Value::F64(f64::NEG_INFINITY)), json!("-inf"));
        assert_eq!(value_to_json(&Value::F64(0.1)), json!(0.1));
        assert_eq!(value_to_json(&Value::from("é\n")), json!("é\n"));
        assert_eq!(
            value_to_json(&Value::from(vec![0u8, 15, 255])),
            json!("000fff")
        );
        assert_eq!(
            value_to_json(&Value::Vec2(Vec2::new(0.1, -3.0))),
            json!([0.1, -3.0])
        );
        let mut id = [0u8; 32];
        id[0] = 0xab;
        id[31] = 0x01;
        let hex_id = format!("ab{}01", "00".repeat(30));
        assert_eq!(value_to_json(&Value::Identity(Identity(id))), json!(hex_id));
        assert_eq!(
            value_to_json(&Value::Timestamp(Timestamp(1_700_000_000_000_000))),
            json!(1_700_000_000_000_000_u64)
        );
    }

    #[test]
    fn opaque_values_decode_from_message_pack() {
        // serde_json's `Value` serializes through rmp_serde as MessagePack maps and arrays.
        let item = json!({
            "kind": "sword",
            "count": 70_000,
            "weight": 1.25,
            "tags": [-1, -200, 300, i64::MIN],
            "owner": null,
        });
        let opaque = |bytes: Vec<u8>| value_to_json(&Value::Opaque(bytes.into()));
        assert_eq!(opaque(rmp_serde::to_vec(&item).unwrap()), item);
        let tuple = (
            "sword",
            70_000_u32,
            1.25_f32,
            vec![-1_i64, -200, 300, i64::MIN],
            None::<u8>,
        );
        assert_eq!(
            opaque(rmp_serde::to_vec(&tuple).unwrap()),
            json!(["sword", 70_000, 1.25, [-1, -200, 300, i64::MIN], null])
        );
        // bin 8 as hex.
        assert_eq!(opaque(vec![0xc4, 0x02, 0x01, 0x02]), json!("0102"));
        let long = "y".repeat(300);
        let many: Vec<u64> = (0..70_000).map(|i| i * 1_000_000).collect();
        assert_eq!(opaque(rmp_serde::to_vec(&long).unwrap()), json!(long));
        assert_eq!(opaque(rmp_serde::to_vec(&many).unwrap()), json!(many));
        assert_eq!(
            opaque(rmp_serde::to_vec(&(true, false, 0.5f64)).unwrap()),
            json!([true, false, 0.5])
        );
        let mut map = std::collections::BTreeMap::new();
        map.insert(3u8, "three");
        assert_eq!(
            opaque(rmp_serde::to_vec(&map).unwrap()),
            json!({"3": "three"})
        );
        // fixext 1 and ext 8.
        assert_eq!(
            opaque(vec![0xd4, 0x05, 0xaa]),
            json!({"ext": 5, "data": "aa"})
        );
        assert_eq!(
            opaque(vec![0xc7, 0x02, 0xff, 0x01, 0x02]),
            json!({"ext": -1, "data": "0102"})
        );
        // Malformed: shown as hex.
        assert_eq!(opaque(vec![0x92, 0x01]), json!("9201"));
        assert_eq!(opaque(vec![0x01, 0x02]), json!("0102"));
        assert_eq!(
            opaque(vec![0xdd, 0xff, 0xff, 0xff, 0xff]),
            json!("ddffffffff")
        );
        assert_eq!(opaque(vec![0xa1, 0xff]), json!("a1ff"));
        let mut deep = vec![0x91; MAX_DEPTH + 2];
        deep.push(0xc0);
        assert_eq!(opaque(deep.clone()), json!(hex(&deep)));
    }

    #[test]
    fn format_table_aligns_columns() {
        let r = QueryResult {
            columns: vec!["id".into(), "name".into(), "pos".into()],
            rows: vec![
                vec![json!(1), json!("alice"), json!([1.0, 2.5])],
                vec![json!(100), json!("b\tb"), Json::Null],
            ],
            truncated: false,
        };
        let expected = concat!(
            "  id | name  | pos\n",
            "-----+-------+-----------\n",
            "   1 | alice | [1.0,2.5]\n",
            " 100 | b\\tb  | NULL\n",
            "(2 rows)\n",
        );
        assert_eq!(format_table(&r), expected);
        let one = QueryResult {
            columns: vec!["count".into()],
            rows: vec![vec![json!(7)]],
            truncated: false,
        };
        assert_eq!(format_table(&one), " count\n-------\n     7\n(1 row)\n");
        let none = QueryResult {
            columns: vec!["k".into()],
            rows: vec![],
            truncated: false,
        };
        assert_eq!(format_table(&none), " k\n---\n(0 rows)\n");
    }

    #[test]
    fn results_serialize_as_one_json_object() {
        let db = world();
        let r = run(&db, "SELECT id, name FROM player WHERE id <= 2");
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"columns":["id","name"],"rows":[[1,"alice"],[2,"bob"]],"truncated":false}"#
        );
        assert_eq!(serde_json::from_str::<QueryResult>(&text).unwrap(), r);
        let all = run(&db, "SELECT * FROM player");
        assert_eq!(
            serde_json::from_value::<QueryResult>(serde_json::to_value(&all).unwrap()).unwrap(),
            all
        );
        assert!(serde_json::from_str::<QueryResult>(r#"{"columns":[]}"#).is_err());
    }

    // ---- property test: `query` against a plain-Rust model ----

    /// The model's row: `id: u64` (key), `a: i64`, `b: Option<u32>`, `f: f64`, `s: String`.
    #[derive(Clone, Debug)]
    struct ModelRow {
        id: u64,
        a: i64,
        b: Option<u32>,
        f: f64,
        s: String,
    }

    const MODEL_COLUMNS: [&str; 5] = ["id", "a", "b", "f", "s"];

    /// A model literal and its SQL.
    #[derive(Clone, Debug)]
    enum MLit {
        Null,
        Num(f64),
        Str(String),
    }

    impl MLit {
        fn sql(&self) -> String {
            match self {
                MLit::Null => "NULL".into(),
                MLit::Num(n) if n.fract() == 0.0 => format!("{}", *n as i64),
                MLit::Num(n) => format!("{n}"),
                MLit::Str(s) => format!("'{s}'"),
            }
        }
    }

    #[derive(Clone, Debug)]
    enum MExpr {
        Cmp(usize, &'static str, MLit),
        IsNull(usize, bool),
        In(usize, Vec<MLit>, bool),
        Between(usize, MLit, MLit, bool),
        Not(Box<MExpr>),
        And(Box<MExpr>, Box<MExpr>),
        Or(Box<MExpr>, Box<MExpr>),
    }

    impl MExpr {
        fn sql(&self) -> String {
            let not = |n: bool| if n { "NOT " } else { "" };
            match self {
                MExpr::Cmp(c, op, l) => format!("{} {op} {}", MODEL_COLUMNS[*c], l.sql()),
                MExpr::IsNull(c, n) => format!("{} IS {}NULL", MODEL_COLUMNS[*c], not(*n)),
                MExpr::In(c, list, n) => {
                    let items: Vec<String> = list.iter().map(MLit::sql).collect();
                    format!("{} {}IN ({})", MODEL_COLUMNS[*c], not(*n), items.join(", "))
                }
                MExpr::Between(c, lo, hi, n) => {
                    format!(
                        "{} {}BETWEEN {} AND {}",
                        MODEL_COLUMNS[*c],
                        not(*n),
                        lo.sql(),
                        hi.sql()
                    )
                }
                MExpr::Not(e) => format!("NOT ({})", e.sql()),
                MExpr::And(a, b) => format!("({}) AND ({})", a.sql(), b.sql()),
                MExpr::Or(a, b) => format!("({}) OR ({})", a.sql(), b.sql()),
            }
        }

        /// Three-valued evaluation, written independently of `Pred`.
        fn eval(&self, r: &ModelRow) -> Option<bool> {
            match self {
                MExpr::Cmp(c, op, l) => {
                    let ord = model_cmp(r, *c, l)?;
                    Some(match *op {
                        "=" => ord == Ordering::Equal,
                        "<>" | "!=" => ord != Ordering::Equal,
                        "<" => ord == Ordering::Less,
                        "<=" => ord != Ordering::Greater,
                        ">" => ord == Ordering::Greater,
                        ">=" => ord != Ordering::Less,
                        _ => unreachable!(),
                    })
                }
                MExpr::IsNull(c, n) => Some((*c == 2 && r.b.is_none()) != *n),
                MExpr::In(c, list, n) => {
                    let mut unknown = false;
                    for l in list {
                        match model_cmp(r, *c, l) {
                            Some(Ordering::Equal) => return Some(!*n),
                            Some(_) => {}
                            None => unknown = true,
                        }
                    }
                    if unknown { None } else { Some(*n) }
                }
                MExpr::Between(c, lo, hi, n) => {
                    let ge = model_cmp(r, *c, lo).map(|o| o != Ordering::Less);
                    let le = model_cmp(r, *c, hi).map(|o| o != Ordering::Greater);
                    let both = match (ge, le) {
                        (Some(false), _) | (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    };
                    both.map(|b| b != *n)
                }
                MExpr::Not(e) => e.eval(r).map(|b| !b),
                MExpr::And(a, b) => match (a.eval(r), b.eval(r)) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                },
                MExpr::Or(a, b) => match (a.eval(r), b.eval(r)) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                },
            }
        }
    }

    /// Column `c` of `r` against `l`, as exact rationals (every model number is a multiple of 1/4).
    fn model_cmp(r: &ModelRow, c: usize, l: &MLit) -> Option<Ordering> {
        let quarters = |x: f64| (x * 4.0) as i128;
        match (c, l) {
            (_, MLit::Null) => None,
            (4, MLit::Str(s)) => Some(r.s.as_str().cmp(s)),
            (0, MLit::Num(n)) => Some((i128::from(r.id) * 4).cmp(&quarters(*n))),
            (1, MLit::Num(n)) => Some((i128::from(r.a) * 4).cmp(&quarters(*n))),
            (2, MLit::Num(n)) => r.b.map(|b| (i128::from(b) * 4).cmp(&quarters(*n))),
            (3, MLit::Num(n)) => Some(quarters(r.f).cmp(&quarters(*n))),
            _ => unreachable!("generated literals match their column"),
        }
    }

    fn model_value(r: &ModelRow, c: usize) -> Json {
        match c {
            0 => json!(r.id),
            1 => json!(r.a),
            2 => r.b.map_or(Json::Null, |b| json!(b)),
            3 => json!(r.f),
            _ => json!(r.s),
        }
    }

    fn gen_lit(rng: &mut StdRng, c: usize) -> MLit {
        if rng.random_bool(0.08) {
            return MLit::Null;
        }
        match c {
            4 => MLit::Str(["", "a", "ab", "b", "ba", "c"][rng.random_range(0..6)].to_owned()),
            0 | 2 if rng.random_bool(0.8) => MLit::Num(f64::from(rng.random_range(-2..12_i32))),
            _ => MLit::Num(f64::from(rng.random_range(-20..48_i32)) / 4.0),
        }
    }

    fn gen_expr(rng: &mut StdRng, depth: u32) -> MExpr {
        let c = rng.random_range(0..5);
        match rng.random_range(0..if depth == 0 { 4 } else { 7 }) {
            0 => {
                let op = ["=", "<>", "!=", "<", "<=", ">", ">="][rng.random_range(0..7)];
                MExpr::Cmp(c, op, gen_lit(rng, c))
            }
            1 => MExpr::IsNull(c, rng.random_bool(0.5)),
            2 => {
                let n = rng.random_range(1..4);
                MExpr::In(
                    c,
                    (0..n).map(|_| gen_lit(rng, c)).collect(),
                    rng.random_bool(0.3),
                )
            }
            3 => MExpr::Between(c, gen_lit(rng, c), gen_lit(rng, c), rng.random_bool(0.3)),
            4 => MExpr::Not(Box::new(gen_expr(rng, depth - 1))),
            5 => MExpr::And(
                Box::new(gen_expr(rng, depth - 1)),
                Box::new(gen_expr(rng, depth - 1)),
            ),
            _ => MExpr::Or(
                Box::new(gen_expr(rng, depth - 1)),
                Box::new(gen_expr(rng, depth - 1)),
            ),
        }
    }

    #[test]
    fn random_queries_match_a_reference_model() {
        for seed in 0..400_u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut db = Database::new(StoreConfig::default());
            let def = TableDef::builder("m")
                .column("a", ColumnType::I16)
                .column("id", ColumnType::U64)
                .column("b", opt(ColumnType::U32))
                .column("f", ColumnType::F64)
                .column("s", ColumnType::String)
                .primary_key("id")
                .build()
                .unwrap();
            let m = db.create_table(def).unwrap();
            let n = rng.random_range(0..30);
            let mut ids: Vec<u64> = (0..40).collect();
            let mut model = Vec::new();
            for _ in 0..n {
                let id = ids.swap_remove(rng.random_range(0..ids.len()));
                model.push(ModelRow {
                    id,
                    a: rng.random_range(-3..8),
                    b: rng.random_bool(0.7).then(|| rng.random_range(0..10)),
                    f: f64::from(rng.random_range(-8..24_i32)) / 4.0,
                    s: ["", "a", "ab", "b", "ba", "c"][rng.random_range(0..6)].to_owned(),
                });
            }
            let rows: Vec<Vec<Value>> = model
                .iter()
                .map(|r| {
                    vec![
                        Value::I64(r.a),
                        Value::U64(r.id),
                        r.b.into(),
                        Value::F64(r.f),
                        r.s.as_str().into(),
                    ]
                })
                .collect();
            insert_rows(&mut db, m, &rows);

            for _ in 0..8 {
                let filter = rng.random_bool(0.85).then(|| gen_expr(&mut rng, 3));
                let keys: Vec<(usize, bool, Option<bool>)> = (0..rng.random_range(0..3))
                    .map(|_| {
                        let nulls = [None, Some(true), Some(false)][rng.random_range(0..3)];
                        (rng.random_range(0..5), rng.random_bool(0.5), nulls)
                    })
                    .collect();
                let limit = rng.random_bool(0.4).then(|| rng.random_range(0..12_usize));
                let offset = rng.random_bool(0.3).then(|| rng.random_range(0..12_usize));
                let projection: Vec<usize> = (0..rng.random_range(1..4))
                    .map(|_| rng.random_range(0..5))
                    .collect();
                let count = rng.random_bool(0.15);

                let mut sql = if count {
                    "SELECT COUNT(*) FROM m".to_owned()
                } else {
                    let cols: Vec<&str> = projection.iter().map(|c| MODEL_COLUMNS[*c]).collect();
                    format!("SELECT {} FROM m", cols.join(", "))
                };
                if let Some(f) = &filter {
                    write!(sql, " WHERE {}", f.sql()).unwrap();
                }
                if !keys.is_empty() && !count {
                    let keys: Vec<String> = keys
                        .iter()
                        .map(|(c, desc, nulls)| {
                            let dir = if *desc { " DESC" } else { " ASC" };
                            let nulls = match nulls {
                                None => "",
                                Some(true) => " NULLS FIRST",
                                Some(false) => " NULLS LAST",
                            };
                            format!("{}{dir}{nulls}", MODEL_COLUMNS[*c])
                        })
                        .collect();
                    write!(sql, " ORDER BY {}", keys.join(", ")).unwrap();
                }
                if let Some(l) = limit {
                    write!(sql, " LIMIT {l}").unwrap();
                }
                if let Some(o) = offset {
                    write!(sql, " OFFSET {o}").unwrap();
                }

                // The model.
                let mut selected: Vec<&ModelRow> = model
                    .iter()
                    .filter(|r| filter.as_ref().is_none_or(|f| f.eval(r) == Some(true)))
                    .collect();
                let expected: Vec<Vec<Json>> = if count {
                    vec![vec![json!(selected.len())]]
                } else {
                    selected.sort_by(|x, y| {
                        for (c, desc, nulls) in &keys {
                            let nulls_first = nulls.unwrap_or(*desc);
                            let o = if *c == 2 {
                                match (x.b, y.b) {
                                    (None, None) => Ordering::Equal,
                                    (None, Some(_)) if nulls_first => Ordering::Less,
                                    (None, Some(_)) => Ordering::Greater,
                                    (Some(_), None) if nulls_first => Ordering::Greater,
                                    (Some(_), None) => Ordering::Less,
                                    (Some(p), Some(q)) if *desc => q.cmp(&p),
                                    (Some(p), Some(q)) => p.cmp(&q),
                                }
                            } else {
                                let o = match c {
                                    0 => x.id.cmp(&y.id),
                                    1 => x.a.cmp(&y.a),
                                    3 => x.f.total_cmp(&y.f),
                                    _ => x.s.cmp(&y.s),
                                };
                                if *desc { o.reverse() } else { o }
                            };
                            if o.is_ne() {
                                return o;
                            }
                        }
                        x.id.cmp(&y.id)
                    });
                    selected
                        .iter()
                        .map(|r| projection.iter().map(|c| model_value(r, *c)).collect())
                        .collect()
                };
                let expected: Vec<Vec<Json>> = expected
                    .into_iter()
                    .skip(offset.unwrap_or(0))
                    .take(limit.unwrap_or(usize::MAX))
                    .collect();

                let got = query(&db, &sql).unwrap_or_else(|e| panic!("seed {seed}: {sql}: {e}"));
                assert_eq!(got.rows, expected, "seed {seed}: {sql}");
                assert!(!got.truncated);
            }
        }
    }
}
