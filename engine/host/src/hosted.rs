//! [`Hosted`]: a module instance paired with a database of its own.

use locus_store::{Changeset, Database};
use locus_types::abi::AreaRow;
use locus_types::migrate::Plan;
use locus_types::{Identity, ModuleDef, TableId, Tick, Timestamp};

use crate::{
    CallContext, CallError, InstantiateError, LogLine, Module, ModuleInstance, ScheduledRun,
    UpgradeError,
};

/// A [`ModuleInstance`] and the [`Database`] it runs over, owned together: a convenience for tests, benches and
/// tools that have no world to own the database. Each method lends `db` to `instance` and has the meaning of the
/// [`ModuleInstance`] method of the same name. The server does not use it: its world owns the database and lends it
/// to the instance itself.
#[derive(Debug)]
pub struct Hosted {
    /// The instance, made for `db`.
    pub instance: ModuleInstance,
    /// The database.
    pub db: Database,
}

impl Module {
    /// Instantiate the module for `db` ([`Module::instantiate`]) and keep the two together.
    ///
    /// # Errors
    ///
    /// An [`InstantiateError`]; `db` is dropped with it.
    pub fn hosted(&self, mut db: Database) -> Result<Hosted, InstantiateError> {
        let instance = self.instantiate(&mut db)?;
        Ok(Hosted { instance, db })
    }
}

impl Hosted {
    /// The database, for reads between calls.
    #[must_use]
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The database, for writes outside reducers.
    pub fn db_mut(&mut self) -> &mut Database {
        &mut self.db
    }

    /// The database, given up.
    #[must_use]
    pub fn into_db(self) -> Database {
        self.db
    }

    /// The module the instance runs.
    #[must_use]
    pub fn module(&self) -> &Module {
        self.instance.module()
    }

    /// The module's description.
    #[must_use]
    pub fn def(&self) -> &ModuleDef {
        self.instance.def()
    }

    /// [`ModuleInstance::area_table`].
    #[must_use]
    pub fn area_table(&self) -> TableId {
        self.instance.area_table()
    }

    /// The area of interest the module set for `identity` ([`crate::area`]).
    #[must_use]
    pub fn area(&self, identity: Identity) -> Option<AreaRow> {
        crate::area(&self.db, identity)
    }

    /// [`ModuleInstance::drain_logs`].
    pub fn drain_logs(&mut self) -> Vec<LogLine> {
        self.instance.drain_logs()
    }

    /// [`ModuleInstance::call`].
    ///
    /// # Errors
    ///
    /// A [`CallError`]; the call's writes are then rolled back.
    pub fn call(
        &mut self,
        reducer: &str,
        args: &[u8],
        ctx: &CallContext,
    ) -> Result<Changeset, CallError> {
        self.instance.call(&mut self.db, reducer, args, ctx)
    }

    /// [`ModuleInstance::call_from_region`].
    ///
    /// # Errors
    ///
    /// A [`CallError`]; the call's writes are then rolled back.
    pub fn call_from_region(
        &mut self,
        reducer: &str,
        args: &[u8],
        ctx: &CallContext,
    ) -> Result<Changeset, CallError> {
        self.instance
            .call_from_region(&mut self.db, reducer, args, ctx)
    }

    /// [`ModuleInstance::init`].
    ///
    /// # Errors
    ///
    /// A [`CallError`] if it fails; its writes are rolled back.
    pub fn init(&mut self, ctx: &CallContext) -> Result<Changeset, CallError> {
        self.instance.init(&mut self.db, ctx)
    }

    /// [`ModuleInstance::client_connected`].
    ///
    /// # Errors
    ///
    /// A [`CallError`] if it fails; its writes are rolled back.
    pub fn client_connected(&mut self, ctx: &CallContext) -> Result<Changeset, CallError> {
        self.instance.client_connected(&mut self.db, ctx)
    }

    /// [`ModuleInstance::client_disconnected`].
    ///
    /// # Errors
    ///
    /// A [`CallError`] if it fails; its writes are rolled back.
    pub fn client_disconnected(&mut self, ctx: &CallContext) -> Result<Changeset, CallError> {
        self.instance.client_disconnected(&mut self.db, ctx)
    }

    /// [`ModuleInstance::tick`].
    ///
    /// # Errors
    ///
    /// A [`CallError`] if it fails; its writes are rolled back.
    pub fn tick(&mut self, dt: f32, ctx: &CallContext) -> Result<Changeset, CallError> {
        self.instance.tick(&mut self.db, dt, ctx)
    }

    /// [`ModuleInstance::run_due`].
    pub fn run_due(&mut self, now: Timestamp, ctx: &CallContext) -> Vec<ScheduledRun> {
        self.instance.run_due(&mut self.db, now, ctx)
    }

    /// Upgrade to `module` in place ([`Module::upgrade`], then [`crate::Upgrade::apply`] and
    /// [`crate::AppliedUpgrade::commit`]); returns what changed. A data version change runs the module's upgrade
    /// reducer with the server's context at tick 0, time 0 ([`Hosted::upgrade_with`] takes another).
    ///
    /// # Errors
    ///
    /// An [`UpgradeError`]; the instance and the database are then as they were.
    pub fn upgrade(&mut self, module: &Module) -> Result<Plan, UpgradeError> {
        self.upgrade_with(module, &CallContext::server(Tick(0), Timestamp(0), 0))
    }

    /// [`Hosted::upgrade`], the upgrade reducer (if it runs) with `ctx`.
    ///
    /// # Errors
    ///
    /// An [`UpgradeError`]; the instance and the database are then as they were.
    pub fn upgrade_with(
        &mut self,
        module: &Module,
        ctx: &CallContext,
    ) -> Result<Plan, UpgradeError> {
        let upgrade = module.upgrade(&self.instance, &self.db)?;
        let applied = upgrade.apply(&mut self.db, ctx)?;
        let plan = applied.plan.clone();
        let (instance, _replaced) = applied.commit(&mut self.db);
        self.instance = instance;
        Ok(plan)
    }
}
