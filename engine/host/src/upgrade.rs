//! Module upgrades on a live database: [`Module::upgrade`], then [`Upgrade::apply`].
//!
//! Only what changed is migrated. A table whose definition the new module keeps is not touched: its rows,
//! indexes and auto_inc sequence stay where they are in the same [`Database`]. A table whose definition changed is
//! rebuilt from its rows (each one migrated with [`migrate::migrate_row`] when columns were added) and a new table
//! is created empty, both aside from the database, which is only read until [`Upgrade::apply`] swaps them in (and
//! cannot fail). A refused or failed upgrade therefore leaves the database exactly as it was.

use locus_store::{Database, Table};
use locus_types::TableDef;
use locus_types::migrate::{self, Incompatible, Plan};
use thiserror::Error;

use crate::instance::Layout;
use crate::{InstantiateError, Module, ModuleInstance};

/// A new module version, instantiated and ready to run over a database whose changed tables are migrated aside;
/// nothing is changed until [`Upgrade::apply`].
pub struct Upgrade {
    /// What changed.
    pub plan: Plan,
    instance: ModuleInstance,
    /// The changed tables, migrated, and the new ones, for [`Database::swap_tables`].
    staged: Vec<Table>,
    /// How many tables the database read had.
    base_tables: usize,
}

/// Why a module cannot replace the running one. In every case the running instance and its database are
/// untouched.
#[derive(Debug, Error)]
pub enum UpgradeError {
    /// The schemas differ in ways that would lose or reinterpret data, or break callers: each change is named.
    #[error("incompatible with the running module: {}", list(.0))]
    Incompatible(Vec<Incompatible>),
    /// The stored rows do not fit the new schema (e.g. a new unique index over duplicate values).
    #[error("the stored rows do not fit the new schema: {0}")]
    Migrate(String),
    /// The new module cannot be instantiated.
    #[error(transparent)]
    Instantiate(#[from] InstantiateError),
}

fn list(wrong: &[Incompatible]) -> String {
    wrong
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rebuilt: Vec<&str> = self.staged.iter().map(Table::name).collect();
        f.debug_struct("Upgrade")
            .field("plan", &self.plan)
            .field("rebuilt", &rebuilt)
            .finish_non_exhaustive()
    }
}

impl Upgrade {
    /// The tables of `db` (the database [`Module::upgrade`] read) as they will be once the upgrade is applied, in
    /// id order: the unchanged ones, the migrated ones in their place, then the new ones. For writing the migrated
    /// data's snapshot before anything changes.
    #[must_use]
    pub fn tables<'a>(&'a self, db: &'a Database) -> Vec<&'a Table> {
        let mut tables: Vec<&Table> = db.tables().collect();
        for t in &self.staged {
            let at = t.id().0 as usize;
            if at < tables.len() {
                tables[at] = t;
            } else {
                tables.push(t);
            }
        }
        tables
    }

    /// The tables the upgrade builds: the changed ones, migrated, and the new ones.
    pub fn rebuilt(&self) -> impl Iterator<Item = &Table> + '_ {
        self.staged.iter()
    }

    /// Swap the migrated and new tables into `db` — every other table stays as it is — and return the new instance,
    /// made for `db`. Returns the replaced tables too, for the caller to drop where it suits (dropping a large
    /// table takes time).
    ///
    /// `db` must be the database [`Module::upgrade`] read, unwritten since: a write to a changed table in between
    /// would be lost with the table it replaces.
    ///
    /// # Panics
    ///
    /// If `db` is not that database (its table count or a replaced table's name differs).
    pub fn apply(self, db: &mut Database) -> (ModuleInstance, Vec<Table>) {
        assert_eq!(
            db.tables().count(),
            self.base_tables,
            "an upgrade is applied to the database it was made from"
        );
        let replaced = db
            .swap_tables(self.staged)
            .expect("an upgrade is applied to the database it was made from");
        (self.instance, replaced)
    }
}

impl Module {
    /// Plan the upgrade from `from`'s module to this one ([`locus_types::migrate::plan`]) over `db`, `from`'s
    /// database, and prepare it: build the changed tables in the new schema aside (they keep their ids, rows and
    /// sequences; new columns get their defaults; their indexes are built anew), and new tables (after the existing
    /// ones), and instantiate this module for the result. Unchanged tables are not copied.
    ///
    /// `db` is only read: a failed upgrade changes nothing, and the caller decides when to [apply](Upgrade::apply)
    /// it.
    ///
    /// # Errors
    ///
    /// An [`UpgradeError`].
    pub fn upgrade(&self, from: &ModuleInstance, db: &Database) -> Result<Upgrade, UpgradeError> {
        let plan = migrate::plan(
            &from.def().tables,
            &from.def().reducers,
            &self.def().tables,
            &self.def().reducers,
        )
        .map_err(UpgradeError::Incompatible)?;
        self.prepare(db, plan)
    }

    /// Instantiate for a recovered database whose schema may be older than this module's (a world restarted with
    /// a newer build): plan the change from the database's own tables (the commit log keeps the schema, not the
    /// old reducers, so reducer changes are not checked here), migrate the changed tables if needed, and
    /// instantiate. Returns the plan; when it is not empty the caller should write a snapshot before logging
    /// anything in the new schema.
    ///
    /// # Errors
    ///
    /// An [`UpgradeError`] naming every incompatible table change; `db` is then unchanged.
    pub fn instantiate_upgrading(
        &self,
        db: &mut Database,
    ) -> Result<(ModuleInstance, Plan), UpgradeError> {
        let system = [
            locus_types::abi::SCHEDULE_TABLE,
            locus_types::abi::AREA_TABLE,
        ];
        let old_tables: Vec<TableDef> = db
            .tables()
            .map(|t| t.def().clone())
            .filter(|d| !system.contains(&d.name.as_str()))
            .collect();
        let reducers = &self.def().reducers;
        let plan = migrate::plan(&old_tables, reducers, &self.def().tables, reducers)
            .map_err(UpgradeError::Incompatible)?;
        if plan.is_empty() {
            return Ok((self.instantiate(db)?, plan));
        }
        let (instance, _replaced) = self.prepare(db, plan.clone())?.apply(db);
        Ok((instance, plan))
    }

    /// Build what `plan` changes in `db` aside and instantiate this module for the result.
    fn prepare(&self, db: &Database, plan: Plan) -> Result<Upgrade, UpgradeError> {
        let layout: Layout = self.layout(db, |old, def| {
            if old.def() == def {
                return Ok::<_, UpgradeError>(None);
            }
            let rows = if def.columns.len() == old.def().columns.len() {
                None
            } else {
                let rows = old
                    .iter()
                    .map(|row| migrate::migrate_row(old.def(), def, row))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(UpgradeError::Migrate)?;
                Some(rows)
            };
            // The sequence carries over: a key handed out before the upgrade is never handed out again.
            let next = old.next_auto_inc();
            let built = match &rows {
                Some(rows) => {
                    db.build_table(old.id(), def.clone(), rows.iter().map(Vec::as_slice), next)
                }
                None => db.build_table(old.id(), def.clone(), old.iter(), next),
            };
            let table =
                built.map_err(|e| UpgradeError::Migrate(format!("table `{}`: {e}", def.name)))?;
            Ok(Some(table))
        })?;
        let base_tables = db.tables().count();
        let (instance, staged) = self.instantiate_laid_out(layout)?;
        Ok(Upgrade {
            plan,
            instance,
            staged,
            base_tables,
        })
    }
}
