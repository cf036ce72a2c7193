//! The reducer context: who called, when, the database, a deterministic RNG, scheduling, clients' areas of
//! interest, and in a world split into regions, which region this is and calls to the other regions.

use std::cell::RefCell;
use std::convert::Infallible;

use locus_types::abi::{CONTEXT_SIZE, ContextLayout, Errno, MAX_AREA_RADIUS};
use locus_types::{Identity, Tick, Timestamp, Vec2};
use rand::{SeedableRng, TryRng};
use rand_chacha::ChaCha8Rng;

use crate::reducer::{IntoRegionCall, IntoScheduledCall};
use crate::region::Region;
use crate::scratch::Scratch;
use crate::sys;
use crate::table::{IntoTableHandle, Table};

/// The database of the running call. Tables are reached through the accessor trait `#[table]` generates for each
/// table (`ctx.db.player()` needs `PlayerTable` in scope).
///
/// A `Db` exists only inside a reducer call (it cannot be built elsewhere), so every table operation runs in the
/// call's transaction: its writes commit when the reducer returns `Ok` and roll back when it fails or traps.
#[derive(Debug)]
pub struct Db {
    _private: (),
}

/// Everything a reducer knows about the call it runs in.
///
/// Built by the SDK from the host's `reducer_context` call at the start of every reducer call; it cannot be built
/// anywhere else (so no table can be touched outside a call).
#[derive(Debug)]
pub struct ReducerContext {
    /// Who made the call: a client, or [`Identity::SERVER`] for `init`, `tick`, `every_ms` and scheduled
    /// reducers run by the server itself. For a call another region sent
    /// ([`send_to_region`](Self::send_to_region)), the sender of the reducer that sent it.
    pub sender: Identity,
    /// The tick the call runs in.
    pub tick: Tick,
    /// The call's timestamp (world time, microseconds since the Unix epoch). Use it instead of a clock: it is the
    /// same on replay.
    pub timestamp: Timestamp,
    /// The database.
    pub db: Db,
    rng_seed: u64,
    rng: RefCell<Option<ChaCha8Rng>>,
}

impl ReducerContext {
    /// Read the running call's context from the host.
    pub(crate) fn from_host() -> Result<ReducerContext, Errno> {
        let raw = sys::reducer_context()?;
        Ok(ReducerContext::from_bytes(&raw))
    }

    /// Decode the 64-byte context layout ([`ContextLayout`]).
    pub(crate) fn from_bytes(raw: &[u8; CONTEXT_SIZE]) -> ReducerContext {
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut sender = [0u8; 32];
        sender.copy_from_slice(&raw[ContextLayout::SENDER..ContextLayout::SENDER + 32]);
        ReducerContext {
            sender: Identity(sender),
            tick: Tick(u64_at(ContextLayout::TICK)),
            timestamp: Timestamp(u64_at(ContextLayout::TIMESTAMP)),
            db: Db { _private: () },
            rng_seed: u64_at(ContextLayout::RNG_SEED),
            rng: RefCell::new(None),
        }
    }

    /// The call's deterministic random number generator.
    ///
    /// It is `rand_chacha::ChaCha8Rng::seed_from_u64(seed)`, where `seed` is the call's RNG seed (the server
    /// derives it from the world seed, the tick and the call's position in the tick), created on first use. Every
    /// `rng()` of one call draws from that one stream, so two calls to `rng()` continue the sequence rather than
    /// replay it; a replayed call draws the same numbers. Use it with [`rand::RngExt`]
    /// (`ctx.rng().random_range(0..6)`) or the [`rand::Rng`] methods.
    #[must_use]
    pub fn rng(&self) -> ContextRng<'_> {
        ContextRng { ctx: self }
    }

    /// Schedule `call` — a `#[reducer(scheduled)]` reducer's `my_reducer::call(args)`, a [`ScheduledCall`](crate::ScheduledCall) — to
    /// run at `at`. Only scheduled reducers' calls are accepted: a client reducer's `call(..)` (a
    /// [`ReducerCall`](crate::ReducerCall)) does not compile here (see [`ScheduledCall`](crate::ScheduledCall)).
    ///
    /// The schedule is written in this call's transaction: it is dropped if this reducer fails. A time in the past
    /// is accepted: the reducer runs at the host's next pass over due schedules.
    ///
    /// # Errors
    ///
    /// Only for a call the compiler could not check ([`ScheduledCall::unchecked`](crate::ScheduledCall::unchecked)):
    /// [`ScheduleError::NoSuchReducer`] if no scheduled reducer of the running module has that name;
    /// [`ScheduleError::BadArguments`] if the call's arguments do not match that reducer's parameters.
    pub fn schedule_at(
        &self,
        at: Timestamp,
        call: impl IntoScheduledCall,
    ) -> Result<ScheduleId, ScheduleError> {
        let call = call.into_scheduled_call();
        match sys::schedule(call.reducer, at.as_micros(), &call.args) {
            Ok(id) => Ok(ScheduleId(id)),
            Err(Errno::NoSuchReducer) => Err(ScheduleError::NoSuchReducer {
                reducer: call.reducer,
            }),
            Err(Errno::BadArgument) => Err(ScheduleError::BadArguments {
                reducer: call.reducer,
            }),
            Err(e) => sys::unexpected("schedule", e),
        }
    }

    /// Schedule `call` (a `#[reducer(scheduled)]` reducer's `call(args)`) to run `delay` after this call's
    /// [`timestamp`](Self::timestamp).
    ///
    /// # Errors
    ///
    /// As [`schedule_at`](Self::schedule_at).
    pub fn schedule_in(
        &self,
        delay: std::time::Duration,
        call: impl IntoScheduledCall,
    ) -> Result<ScheduleId, ScheduleError> {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.schedule_at(self.timestamp.add_micros(micros), call)
    }

    /// Cancel a schedule that has not run yet; returns whether there was one. Written in this call's transaction.
    pub fn unschedule(&self, id: ScheduleId) -> bool {
        match sys::unschedule(id.0) {
            Ok(()) => true,
            Err(Errno::NotFound) => false,
            Err(e) => sys::unexpected("unschedule", e),
        }
    }

    /// Make `identity`'s area of interest a circle that follows the row of `table` whose primary key is `key`
    /// (typically the client's avatar: `ctx.set_area_follow(ctx.sender, ctx.db.player(), &me.id, 64.0, 72.0)`).
    ///
    /// The server streams that client the rows of spatial tables within `enter` metres of the row's `#[spatial]`
    /// column, and keeps each in view until it is more than `leave` metres away (the gap stops rows at the edge
    /// from flickering). The row need not exist yet: the area is empty while it does not, and follows it once it
    /// does. Replaces the identity's previous area. Written in this call's transaction: dropped if this reducer
    /// fails, durable once it commits. Only the module sets areas; clients cannot.
    ///
    /// # Errors
    ///
    /// [`AreaError::NotSpatial`] if the table has no `#[spatial]` column; [`AreaError::InvalidRadius`] unless
    /// `0 < enter <= leave <=` [`MAX_AREA_RADIUS`] (both finite).
    pub fn set_area_follow<H: IntoTableHandle>(
        &self,
        identity: Identity,
        table: H,
        key: &<H::Row as Table>::PrimaryKey,
        enter: f32,
        leave: f32,
    ) -> Result<(), AreaError> {
        let _ = table;
        let mut encoded = Scratch::empty();
        H::Row::__encode_key(key, &mut encoded);
        match sys::area_follow(&identity, H::Row::__table_id(), &encoded, enter, leave) {
            Ok(()) => Ok(()),
            Err(Errno::NoSuchIndex) => Err(AreaError::NotSpatial {
                table: <H::Row as Table>::NAME,
            }),
            Err(Errno::BadArgument) => Err(AreaError::InvalidRadius { enter, leave }),
            Err(e) => sys::unexpected("area_follow", e),
        }
    }

    /// Make `identity`'s area of interest a circle around the fixed point `center` (a spectator camera, a
    /// loading screen), with radii as for [`set_area_follow`](Self::set_area_follow). Replaces the identity's
    /// previous area; written in this call's transaction.
    ///
    /// # Errors
    ///
    /// [`AreaError::InvalidPosition`] if `center` is not finite or is outside ±1e9;
    /// [`AreaError::InvalidRadius`] unless `0 < enter <= leave <=` [`MAX_AREA_RADIUS`] (both finite).
    pub fn set_area_fixed(
        &self,
        identity: Identity,
        center: Vec2,
        enter: f32,
        leave: f32,
    ) -> Result<(), AreaError> {
        match sys::area_fixed(&identity, center.x, center.y, enter, leave) {
            Ok(()) => Ok(()),
            Err(Errno::InvalidPosition) => Err(AreaError::InvalidPosition { center }),
            Err(Errno::BadArgument) => Err(AreaError::InvalidRadius { enter, leave }),
            Err(e) => sys::unexpected("area_fixed", e),
        }
    }

    /// Remove `identity`'s area of interest (the client then sees no rows of spatial tables); returns whether it
    /// had one. Written in this call's transaction.
    pub fn clear_area(&self, identity: Identity) -> bool {
        match sys::area_clear(&identity) {
            Ok(()) => true,
            Err(Errno::NotFound) => false,
            Err(e) => sys::unexpected("area_clear", e),
        }
    }

    /// Send `call` — a `#[reducer(region)]` reducer's `my_reducer::call(args)` (a
    /// [`RegionCall`](crate::RegionCall)), or a client reducer's — to the region of the world named `region` (its
    /// name in `world.toml`; this region's own name works too, and goes the same way).
    ///
    /// What happens, in a world split into regions (each region a server process running this same module):
    ///
    /// - **Only if this reducer commits.** The call is written in this call's transaction (a row of the system
    ///   table `locus_outbox`): nothing is sent if this reducer fails, panics or is stopped. It leaves once the
    ///   transaction is durable.
    /// - **At least once, applied exactly once.** The message may travel more than once (a lost acknowledgement, a
    ///   restart), but the receiving region runs the reducer once per send, and records that it did in the same
    ///   tick. A failing reducer there counts as run (its failure goes to that region's module log): it is not
    ///   retried, and this reducer is not told.
    /// - **As this call's sender.** The reducer runs with `ctx.sender` = this call's [`sender`](Self::sender)
    ///   (the player who called this reducer, or [`Identity::SERVER`]), its own tick, timestamp and RNG seed.
    /// - **Unordered between regions.** Calls sent to one region arrive in any order relative to calls sent to
    ///   another, and relative to what that region does meanwhile; write the receiving reducer so that the order
    ///   of arrival does not matter (or carry what it needs, e.g. a timestamp).
    ///
    /// A `#[reducer(region)]` reducer runs only this way: clients cannot call it. A client reducer sent this way runs
    /// there as if the sender had called it there.
    ///
    /// # Errors
    ///
    /// [`RegionSendError::NotSplit`] in a world that is not split into regions (check for it to keep working in
    /// one: do the work here instead); [`RegionSendError::NoSuchRegion`] if no region has that name. For a call the
    /// compiler could not check (a [`ReducerCall`](crate::ReducerCall) built by hand, a lifecycle reducer's):
    /// [`RegionSendError::NoSuchReducer`], [`RegionSendError::BadArguments`]. The reducer and its arguments are
    /// checked first, so such a mistake fails in a world that is not split too. Arguments longer than
    /// [`MAX_REGION_CALL_ARGS`](crate::MAX_REGION_CALL_ARGS) are [`RegionSendError::TooLong`].
    pub fn send_to_region(
        &self,
        region: &str,
        call: impl IntoRegionCall,
    ) -> Result<(), RegionSendError> {
        let call = call.into_region_call();
        match sys::region_send(region, call.reducer, &call.args) {
            Ok(()) => Ok(()),
            Err(Errno::NotSplit) => Err(RegionSendError::NotSplit),
            Err(Errno::NotFound) => Err(RegionSendError::NoSuchRegion {
                region: region.to_owned(),
            }),
            Err(Errno::NoSuchReducer) => Err(RegionSendError::NoSuchReducer {
                reducer: call.reducer,
            }),
            Err(Errno::BadArgument) => Err(RegionSendError::BadArguments {
                reducer: call.reducer,
            }),
            Err(Errno::LimitExceeded) if call.args.len() > crate::MAX_REGION_CALL_ARGS => {
                Err(RegionSendError::TooLong {
                    reducer: call.reducer,
                    len: call.args.len(),
                })
            }
            Err(e) => sys::unexpected("region_send", e),
        }
    }

    /// Send `call`, as [`send_to_region`](Self::send_to_region) does, to every region of the world — **this one
    /// included**: each region, this one too, runs it exactly once, after this reducer commits and its
    /// transaction is durable. So a reducer that also does the work here at once (to show a player's own message
    /// without the round trip) must make the receiving reducer skip what is already done here — see the demo's
    /// global chat (`game-module/src/chat.rs`).
    ///
    /// # Errors
    ///
    /// [`RegionBroadcastError::NotSplit`] in a world that is not split into regions; for a call the compiler could
    /// not check, [`RegionBroadcastError::NoSuchReducer`] and [`RegionBroadcastError::BadArguments`] (also in a
    /// world that is not split); [`RegionBroadcastError::TooLong`].
    pub fn send_to_all_regions(
        &self,
        call: impl IntoRegionCall,
    ) -> Result<(), RegionBroadcastError> {
        let call = call.into_region_call();
        match sys::region_broadcast(call.reducer, &call.args) {
            Ok(()) => Ok(()),
            Err(Errno::NotSplit) => Err(RegionBroadcastError::NotSplit),
            Err(Errno::NoSuchReducer) => Err(RegionBroadcastError::NoSuchReducer {
                reducer: call.reducer,
            }),
            Err(Errno::BadArgument) => Err(RegionBroadcastError::BadArguments {
                reducer: call.reducer,
            }),
            Err(Errno::LimitExceeded) if call.args.len() > crate::MAX_REGION_CALL_ARGS => {
                Err(RegionBroadcastError::TooLong {
                    reducer: call.reducer,
                    len: call.args.len(),
                })
            }
            Err(e) => sys::unexpected("region_broadcast", e),
        }
    }

    /// The region this call runs in, in a world split into regions (each region a server process running this
    /// same module over its own database, serving one rectangle of the world: `engine/docs/regions.md`); `None` in
    /// a world that is not split, which is all of the world.
    ///
    /// Use it to keep to the region's own part of the world: a world's `init` runs once in every region, so
    /// content that `init` generates for the whole world would exist once per region. The region is known from the
    /// first call on — `init` included: the server describes the regions before it runs `init` for a new world.
    /// It is read-only and changes only if the operator changes the layout (a restart with another `world.toml`).
    ///
    /// Rows of movable tables may stand outside their region's rectangle for a moment: the engine hands them over
    /// to the region that holds their point after the tick (see [`Rect::contains`](crate::Rect::contains) for
    /// which points a rectangle holds).
    #[must_use]
    pub fn region(&self) -> Option<Region> {
        self.regions().into_iter().find(|r| r.own)
    }

    /// Every region of a world split into regions, this one included ([`Region::own`]), in their layout's order;
    /// empty in a world that is not split. Their rectangles tile the world. See [`region`](Self::region).
    #[must_use]
    pub fn regions(&self) -> Vec<Region> {
        let mut buf = Scratch::take();
        match sys::region_list(&mut buf) {
            Ok(bytes) => Region::decode_list(bytes),
            Err(Errno::NotSplit) => Vec::new(),
            Err(e) => sys::unexpected("region_list", e),
        }
    }

    fn with_rng<R>(&self, f: impl FnOnce(&mut ChaCha8Rng) -> R) -> R {
        let mut slot = self.rng.borrow_mut();
        f(slot.get_or_insert_with(|| ChaCha8Rng::seed_from_u64(self.rng_seed)))
    }
}

/// The call's random number generator, as returned by [`ReducerContext::rng`].
///
/// It implements [`rand::TryRng`] with `Error = Infallible`, hence [`rand::Rng`] and [`rand::RngExt`]. Any
/// number of `ContextRng`s of one context may be alive at once; they share one stream.
#[derive(Debug)]
pub struct ContextRng<'a> {
    ctx: &'a ReducerContext,
}

impl TryRng for ContextRng<'_> {
    type Error = Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.ctx.with_rng(|r| r.try_next_u32())
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.ctx.with_rng(|r| r.try_next_u64())
    }

    #[inline]
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.ctx.with_rng(|r| r.try_fill_bytes(dst))
    }
}

/// The id of a schedule made with [`ReducerContext::schedule_at`] (the id of its row in the system table
/// `locus_schedule`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ScheduleId(pub u64);

/// Why a schedule could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// No `#[reducer(scheduled)]` reducer has this name (client, lifecycle, tick and `every_ms` reducers cannot be
    /// scheduled). Only a [`ScheduledCall::unchecked`](crate::ScheduledCall::unchecked) call can name one: the typed `call(..)` of a reducer that is
    /// not scheduled does not compile.
    #[error("cannot schedule `{reducer}`: no scheduled reducer has that name")]
    NoSuchReducer {
        /// The name given.
        reducer: &'static str,
    },
    /// The call's arguments are not a valid argument list for the reducer's parameters (only possible for a
    /// [`ScheduledCall::unchecked`](crate::ScheduledCall::unchecked) call).
    #[error("cannot schedule `{reducer}`: the arguments do not match its parameters")]
    BadArguments {
        /// The reducer.
        reducer: &'static str,
    },
}

impl From<ScheduleError> for String {
    fn from(e: ScheduleError) -> String {
        e.to_string()
    }
}

/// Why an area of interest could not be set.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum AreaError {
    /// The table has no `#[spatial]` column, so its rows have no position for an area to follow.
    #[error("cannot follow a row of `{table}`: the table has no #[spatial] column")]
    NotSpatial {
        /// The table.
        table: &'static str,
    },
    /// The fixed centre is not finite or is outside the world's coordinate range (±1e9).
    #[error("area centre {center} is not finite or is outside the world")]
    InvalidPosition {
        /// The centre given.
        center: Vec2,
    },
    /// The radii are not `0 < enter <= leave <=` [`MAX_AREA_RADIUS`], both finite.
    #[error("area radii must satisfy 0 < enter ({enter}) <= leave ({leave}) <= {MAX_AREA_RADIUS}")]
    InvalidRadius {
        /// The enter radius given.
        enter: f32,
        /// The leave radius given.
        leave: f32,
    },
}

impl From<AreaError> for String {
    fn from(e: AreaError) -> String {
        e.to_string()
    }
}

/// Why [`ReducerContext::send_to_region`] sent nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegionSendError {
    /// The world is not split into regions: there is no other region (and no network) to send to.
    #[error("this world is not split into regions")]
    NotSplit,
    /// No region of the world has this name.
    #[error("no region named `{region}`")]
    NoSuchRegion {
        /// The name given.
        region: String,
    },
    /// No client or `#[reducer(region)]` reducer of the running module has this name (only possible for a
    /// [`ReducerCall`](crate::ReducerCall) the compiler could not check: a typed `call(..)` of a region or client
    /// reducer always names one).
    #[error("cannot send `{reducer}` to a region: no client or region reducer has that name")]
    NoSuchReducer {
        /// The name given.
        reducer: &'static str,
    },
    /// The call's arguments are not a valid argument list for the reducer's parameters (only possible for a
    /// [`ReducerCall`](crate::ReducerCall) built by hand).
    #[error("cannot send `{reducer}` to a region: the arguments do not match its parameters")]
    BadArguments {
        /// The reducer.
        reducer: &'static str,
    },
    /// The call's arguments are longer than [`MAX_REGION_CALL_ARGS`](crate::MAX_REGION_CALL_ARGS).
    #[error(
        "cannot send `{reducer}` to a region: its arguments take {len} bytes, more than the {} allowed",
        crate::MAX_REGION_CALL_ARGS
    )]
    TooLong {
        /// The reducer.
        reducer: &'static str,
        /// The arguments' length, in bytes.
        len: usize,
    },
}

impl From<RegionSendError> for String {
    fn from(e: RegionSendError) -> String {
        e.to_string()
    }
}

/// Why [`ReducerContext::send_to_all_regions`] sent nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegionBroadcastError {
    /// The world is not split into regions: this is the only one.
    #[error("this world is not split into regions")]
    NotSplit,
    /// As [`RegionSendError::NoSuchReducer`].
    #[error("cannot send `{reducer}` to the regions: no client or region reducer has that name")]
    NoSuchReducer {
        /// The name given.
        reducer: &'static str,
    },
    /// As [`RegionSendError::BadArguments`].
    #[error("cannot send `{reducer}` to the regions: the arguments do not match its parameters")]
    BadArguments {
        /// The reducer.
        reducer: &'static str,
    },
    /// As [`RegionSendError::TooLong`].
    #[error(
        "cannot send `{reducer}` to the regions: its arguments take {len} bytes, more than the {} allowed",
        crate::MAX_REGION_CALL_ARGS
    )]
    TooLong {
        /// The reducer.
        reducer: &'static str,
        /// The arguments' length, in bytes.
        len: usize,
    },
}

impl From<RegionBroadcastError> for String {
    fn from(e: RegionBroadcastError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, RngExt};

    use super::*;

    fn ctx(seed: u64) -> ReducerContext {
        let mut raw = [0u8; CONTEXT_SIZE];
        raw[..32].fill(7);
        raw[ContextLayout::TICK..][..8].copy_from_slice(&42u64.to_le_bytes());
        raw[ContextLayout::TIMESTAMP..][..8].copy_from_slice(&1_000_000u64.to_le_bytes());
        raw[ContextLayout::RNG_SEED..][..8].copy_from_slice(&seed.to_le_bytes());
        ReducerContext::from_bytes(&raw)
    }

    #[test]
    fn context_layout_is_decoded() {
        let c = ctx(5);
        assert_eq!(c.sender, Identity([7; 32]));
        assert_eq!(c.tick, Tick(42));
        assert_eq!(c.timestamp, Timestamp(1_000_000));
        assert_eq!(c.rng_seed, 5);
    }

    #[test]
    fn rng_is_chacha8_from_the_seed_and_shared_between_calls() {
        let c = ctx(99);
        let a = c.rng().next_u64();
        let b = c.rng().next_u64();
        let mut expected = ChaCha8Rng::seed_from_u64(99);
        assert_eq!(a, expected.next_u64());
        assert_eq!(
            b,
            expected.next_u64(),
            "a second rng() continues the stream"
        );
        let mut r1 = c.rng();
        let mut r2 = c.rng();
        let x: u32 = r1.random_range(0..1000);
        let y: u32 = r2.random_range(0..1000);
        assert!(x < 1000 && y < 1000);
        assert_ne!(ctx(1).rng().next_u64(), ctx(2).rng().next_u64());
    }

    #[test]
    fn area_errors_convert_to_strings_for_question_mark() {
        fn reducer() -> Result<(), String> {
            Err(AreaError::InvalidRadius {
                enter: 80.0,
                leave: 72.0,
            })?;
            Ok(())
        }
        assert_eq!(
            reducer().unwrap_err(),
            "area radii must satisfy 0 < enter (80) <= leave (72) <= 512"
        );
        let e = AreaError::NotSpatial { table: "item" };
        assert_eq!(
            String::from(e),
            "cannot follow a row of `item`: the table has no #[spatial] column"
        );
    }

    #[test]
    fn region_errors_say_what_the_module_author_needs() {
        assert_eq!(
            String::from(RegionSendError::NotSplit),
            "this world is not split into regions"
        );
        assert_eq!(
            RegionBroadcastError::NotSplit.to_string(),
            "this world is not split into regions"
        );
        let e = RegionSendError::NoSuchRegion {
            region: "nowhere".into(),
        };
        assert_eq!(String::from(e), "no region named `nowhere`");
        let e = RegionSendError::NoSuchReducer { reducer: "ping" };
        assert_eq!(
            e.to_string(),
            "cannot send `ping` to a region: no client or region reducer has that name"
        );
        let e = RegionBroadcastError::TooLong {
            reducer: "big",
            len: 70_000,
        };
        assert_eq!(
            String::from(e),
            "cannot send `big` to the regions: its arguments take 70000 bytes, more than the 65536 allowed"
        );
    }

    #[test]
    fn schedule_errors_name_the_reducer() {
        let e = ScheduleError::NoSuchReducer { reducer: "say" };
        assert_eq!(
            String::from(e),
            "cannot schedule `say`: no scheduled reducer has that name"
        );
    }
}
