//! Module upgrades on a live database: [`Module::upgrade`], then [`Upgrade::apply`], then
//! [`AppliedUpgrade::commit`] (or [`AppliedUpgrade::revert`]).
//!
//! Only what changed is migrated. A table whose definition the new module keeps is not touched: its rows,
//! indexes and auto_inc sequence stay where they are in the same [`Database`]. A table whose definition changed is
//! rebuilt from its rows (each one migrated with [`migrate::migrate_row`] when columns were added) and a new table
//! is created empty, both aside from the database, which is only read until [`Upgrade::apply`] swaps them in.
//!
//! # Versions and the upgrade reducer
//!
//! A module declares a version (`locus_types::abi::EXPORT_MODULE_VERSION`, 0 if none) and the database records the
//! version its data is at (the system table `locus_module`, [`crate::data_version`]). When they differ,
//! [`Upgrade::apply`] brings the data over in one transaction: it records the new version and runs the new module's
//! `Upgrade` reducer, if it has one, with `(data's version, module's version)` — e.g. to write new content into
//! the tables that hold it. That transaction stays open until [`AppliedUpgrade::commit`]: the caller can still
//! [revert](AppliedUpgrade::revert) everything if making the upgraded data durable fails.
//!
//! # Invariants
//!
//! - A refused upgrade ([`Module::upgrade`] failing), a failed upgrade reducer ([`Upgrade::apply`] failing) and a
//!   [reverted](AppliedUpgrade::revert) one leave the database exactly as it was: the same tables, rows and
//!   sequences, and the same data version.
//! - After [`AppliedUpgrade::commit`] the database holds the new schema, the upgrade reducer's writes and the new
//!   version, all or none of which a snapshot taken between [`Upgrade::apply`] and the commit shows.
//! - System tables (names starting with `locus_`, [`locus_types::abi::is_system_table`]) are never planned,
//!   migrated or dropped: the host's own are laid out anew only where missing, and those the server created itself
//!   keep their ids and rows through every upgrade, applied, refused or reverted.

use locus_store::{Database, Table, TxLog};
use locus_types::TableDef;
use locus_types::abi::is_system_table;
use locus_types::migrate::{self, Change, Incompatible, Plan};
use thiserror::Error;

use crate::instance::Layout;
use crate::{CallContext, CallError, InstantiateError, LogLine, Module, ModuleInstance};

/// A new module version, instantiated and ready to run over a database whose changed tables are migrated aside;
/// nothing is changed until [`Upgrade::apply`].
pub struct Upgrade {
    /// What changed (a [`Change::Version`] among it when the data is brought to another module version).
    pub plan: Plan,
    instance: ModuleInstance,
    /// The changed tables, migrated, and the new ones, for [`Database::swap_tables`].
    staged: Vec<Table>,
    /// How many tables the database read had.
    base_tables: usize,
    /// The data's version and the new module's, when they differ.
    versions: Option<(u32, u32)>,
}

/// An upgrade swapped into its database, its upgrade reducer run: the database holds the new schema and the
/// reducer's writes, in a transaction still open. [`AppliedUpgrade::commit`] keeps them and gives the new instance;
/// [`AppliedUpgrade::revert`] puts the database back as it was. Nothing but those two may touch the database in
/// between, except reads (a snapshot of the upgraded data).
#[must_use = "an applied upgrade must be committed or reverted"]
pub struct AppliedUpgrade {
    /// What changed.
    pub plan: Plan,
    instance: ModuleInstance,
    /// The tables the upgrade replaced, to put back on a revert or to hand over on a commit.
    replaced: Vec<Table>,
    /// How many tables the database had before.
    base_tables: usize,
    /// The open transaction of the version's write and the upgrade reducer.
    pending: Option<TxLog>,
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
    /// The new module's upgrade reducer failed, trapped or ran out of its budget: everything it wrote was undone.
    /// The message is the operator's ([`CallError::detailed`]: where it panicked).
    #[error("the upgrade from module version {from} to {to} failed: {}", .error.detailed())]
    Hook {
        /// The data's version.
        from: u32,
        /// The new module's.
        to: u32,
        /// How the upgrade reducer failed (boxed: a `CallError` is large, and this is the rare error).
        error: Box<CallError>,
        /// The lines it wrote to the module log before it failed.
        logs: Vec<LogLine>,
    },
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
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AppliedUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppliedUpgrade")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl Upgrade {
    /// The tables of `db` (the database [`Module::upgrade`] read) as they will be once the upgrade is swapped in,
    /// before the upgrade reducer runs, in id order: the unchanged ones, the migrated ones in their place, then the
    /// new ones.
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

    /// Swap the migrated and new tables into `db` — every other table stays as it is — and, if the data is at
    /// another module version than the new module's, bring it over: record the new version and run the new
    /// module's `Upgrade` reducer with `(from, to)` and `ctx` (the server's identity, the tick, its time), in one
    /// transaction left open. Then [commit](AppliedUpgrade::commit) or [revert](AppliedUpgrade::revert).
    ///
    /// `db` must be the database [`Module::upgrade`] read, unwritten since: a write to a changed table in between
    /// would be lost with the table it replaces.
    ///
    /// # Errors
    ///
    /// [`UpgradeError::Hook`] if the upgrade reducer fails, traps or runs out of its budget; `db` is then exactly as
    /// it was before this call.
    ///
    /// # Panics
    ///
    /// If `db` is not that database (its table count or a replaced table's name differs).
    pub fn apply(
        self,
        db: &mut Database,
        ctx: &CallContext,
    ) -> Result<AppliedUpgrade, UpgradeError> {
        assert_eq!(
            db.tables().count(),
            self.base_tables,
            "an upgrade is applied to the database it was made from"
        );
        let replaced = db
            .swap_tables(self.staged)
            .expect("an upgrade is applied to the database it was made from");
        let mut instance = self.instance;
        let pending = match self.versions {
            None => None,
            Some((from, to)) => match instance.upgrade_data(db, from, to, ctx) {
                Ok(tx) => Some(tx),
                Err(error) => {
                    unswap(db, self.base_tables, replaced);
                    return Err(UpgradeError::Hook {
                        from,
                        to,
                        error: Box::new(error),
                        logs: instance.drain_logs(),
                    });
                }
            },
        };
        Ok(AppliedUpgrade {
            plan: self.plan,
            instance,
            replaced,
            base_tables: self.base_tables,
            pending,
        })
    }
}

/// Undo a [`Database::swap_tables`] of an upgrade over a database of `base` tables: drop the tables it appended and
/// put the ones it replaced back.
fn unswap(db: &mut Database, base: usize, replaced: Vec<Table>) {
    drop(db.truncate_tables(base));
    db.swap_tables(replaced)
        .expect("the replaced tables go back where they were");
}

impl AppliedUpgrade {
    /// Keep the upgrade: commit the upgrade reducer's transaction and return the new instance, made for `db`, and the
    /// replaced tables, for the caller to drop where it suits (dropping a large table takes time).
    pub fn commit(self, db: &mut Database) -> (ModuleInstance, Vec<Table>) {
        if let Some(tx) = self.pending {
            // Nobody needs the changeset: a snapshot of the upgraded data comes before anything else is logged, and
            // the server rebuilds every client's view after a swap.
            let _written = tx.commit(db);
        }
        (self.instance, self.replaced)
    }

    /// Undo the upgrade: roll the upgrade reducer's transaction back, drop the new tables and put the replaced ones
    /// back. `db` is then exactly as it was before [`Upgrade::apply`]; the new instance is dropped.
    pub fn revert(self, db: &mut Database) {
        if let Some(tx) = self.pending {
            tx.rollback(db);
        }
        unswap(db, self.base_tables, self.replaced);
    }

    /// The new instance (e.g. for the upgrade reducer's log lines).
    pub fn instance_mut(&mut self) -> &mut ModuleInstance {
        &mut self.instance
    }
}

impl Module {
    /// Plan the upgrade from `from`'s module to this one ([`locus_types::migrate::plan`]) over `db`, `from`'s
    /// database, and prepare it: build the changed tables in the new schema aside (they keep their ids, rows and
    /// sequences; new columns get their defaults; their indexes are built anew), and new tables (after the existing
    /// ones), and instantiate this module for the result. Unchanged tables are not copied. If `db`'s data is at
    /// another module version than this module's ([`crate::data_version`]), the plan ends with a
    /// [`Change::Version`], and [`Upgrade::apply`] will run this module's upgrade reducer.
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
        let mut plan = plan;
        let versions = self.version_change(db, &mut plan);
        self.prepare(db, plan, versions)
    }

    /// The data's version and this module's, if they differ (then also noted in `plan`).
    fn version_change(&self, db: &Database, plan: &mut Plan) -> Option<(u32, u32)> {
        let (from, to) = (self.data_version_of(db), self.version());
        if from == to {
            return None;
        }
        plan.changes.push(Change::Version {
            from,
            to,
            hook: self.upgrade_reducer().map(|r| r.name.clone()),
        });
        Some((from, to))
    }

    /// Instantiate for a recovered database whose schema or data version may be older than this module's (a world
    /// restarted with a newer build): plan the change from the database's own tables (the commit log keeps the
    /// schema, not the old reducers, so reducer changes are not checked here), migrate the changed tables if needed,
    /// bring the data to this module's version — running its `Upgrade` reducer with `ctx`, as a publish would — and
    /// instantiate. Returns the plan; when it is not empty the caller should write a snapshot before logging
    /// anything in the new schema.
    ///
    /// System tables (every table whose name starts with `locus_`, [`is_system_table`]) are not the module's: they
    /// are left out of the plan and kept as they are, rows and all — the host's own and any the server created.
    ///
    /// # Errors
    ///
    /// An [`UpgradeError`] naming every incompatible table change, or the upgrade reducer's failure; `db` is then
    /// unchanged.
    pub fn instantiate_upgrading(
        &self,
        db: &mut Database,
        ctx: &CallContext,
    ) -> Result<(ModuleInstance, Plan), UpgradeError> {
        // The module's tables only: every system table — the host's and any the server made — is the engine's, and
        // stays as it is.
        let old_tables: Vec<TableDef> = db
            .tables()
            .filter(|t| !is_system_table(t.name()))
            .map(|t| t.def().clone())
            .collect();
        let reducers = &self.def().reducers;
        let mut plan = migrate::plan(&old_tables, reducers, &self.def().tables, reducers)
            .map_err(UpgradeError::Incompatible)?;
        let versions = self.version_change(db, &mut plan);
        if plan.is_empty() {
            return Ok((self.instantiate(db)?, plan));
        }
        let (instance, _replaced) = self
            .prepare(db, plan.clone(), versions)?
            .apply(db, ctx)?
            .commit(db);
        Ok((instance, plan))
    }

    /// Build what `plan` changes in `db` aside and instantiate this module for the result.
    fn prepare(
        &self,
        db: &Database,
        plan: Plan,
        versions: Option<(u32, u32)>,
    ) -> Result<Upgrade, UpgradeError> {
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
            versions,
        })
    }
}
