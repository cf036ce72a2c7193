//! Module upgrades on a live database: [`Module::upgrade`].

use locus_store::Database;
use locus_types::TableDef;
use locus_types::migrate::{self, Incompatible, Plan};
use thiserror::Error;

use crate::{InstantiateError, Module, ModuleInstance};

/// A new module version instantiated over a migrated copy of a running instance's database.
#[derive(Debug)]
pub struct Upgrade {
    /// The new instance (the old one is untouched).
    pub instance: ModuleInstance,
    /// What changed.
    pub plan: Plan,
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

impl Module {
    /// Plan the upgrade from `from`'s module to this one ([`locus_types::migrate::plan`]), copy `from`'s
    /// database into the new schema (existing tables keep their ids, rows and sequences; new columns get their
    /// defaults; indexes are built anew; new tables come after the existing ones), and instantiate this module
    /// over the copy.
    ///
    /// The copy costs one pass over every row; `from` is only read, so a failed upgrade changes nothing and the
    /// caller decides when to switch.
    ///
    /// # Errors
    ///
    /// An [`UpgradeError`].
    pub fn upgrade(&self, from: &ModuleInstance) -> Result<Upgrade, UpgradeError> {
        let plan = migrate::plan(
            &from.def().tables,
            &from.def().reducers,
            &self.def().tables,
            &self.def().reducers,
        )
        .map_err(UpgradeError::Incompatible)?;
        let db = migrated(from.db(), &plan).map_err(UpgradeError::Migrate)?;
        let instance = self.instantiate(db)?;
        Ok(Upgrade { instance, plan })
    }
}

impl Module {
    /// Instantiate over a recovered database whose schema may be older than this module's (a world restarted with a
    /// newer build): plan the change from the database's own tables (the commit log keeps the schema, not the old
    /// reducers, so reducer changes are not checked here), migrate if needed, and instantiate. Returns the plan;
    /// when it is not empty the caller should write a snapshot before logging anything in the new schema.
    ///
    /// # Errors
    ///
    /// An [`UpgradeError`] naming every incompatible table change.
    pub fn instantiate_upgrading(
        &self,
        db: Database,
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
        let db = if plan.is_empty() {
            db
        } else {
            migrated(&db, &plan).map_err(UpgradeError::Migrate)?
        };
        Ok((self.instantiate(db)?, plan))
    }
}

/// `old` with every table as `plan` defines it (tables `plan` does not name, the system tables, as they are).
fn migrated(old: &Database, plan: &Plan) -> Result<Database, String> {
    let mut db = Database::new(*old.config());
    for table in old.tables() {
        let def: &TableDef = plan
            .tables
            .iter()
            .find(|t| t.name == table.def().name)
            .unwrap_or(table.def());
        let id = db.create_table(def.clone()).map_err(|e| e.to_string())?;
        debug_assert_eq!(id, table.id(), "tables are created in the old order");
        if def.columns.len() == table.def().columns.len() {
            db.load(id, table.iter())
        } else {
            let rows = table
                .iter()
                .map(|row| migrate::migrate_row(table.def(), def, row))
                .collect::<Result<Vec<_>, _>>()?;
            db.load(id, rows.iter().map(Vec::as_slice))
        }
        .map_err(|e| format!("table `{}`: {e}", def.name))?;
        db.redo(id)
            .expect("just created")
            .set_next_auto_inc(table.next_auto_inc());
    }
    for def in &plan.tables {
        if old.table_id(&def.name).is_none() {
            db.create_table(def.clone()).map_err(|e| e.to_string())?;
        }
    }
    db.rebuild_spatial_indexes();
    Ok(db)
}
