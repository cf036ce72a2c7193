//! Reducers: typed calls ([`ReducerCall`], [`ScheduledCall`] for scheduled reducers and [`RegionCall`] for region
//! reducers), what a reducer may return ([`ReducerResult`]), and the entry-point glue the `#[reducer]` macro's
//! exports call.

use std::fmt::Display;

use locus_types::abi::ReducerStatus;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::ReducerContext;
use crate::scratch::Scratch;
use crate::sys;

pub use locus_types::ReducerCall;

/// What a reducer may return: `()` (always succeeds) or `Result<(), E>` with `E: Display` (an `Err` fails the
/// call: its writes roll back and the message goes to the caller).
#[diagnostic::on_unimplemented(
    message = "a reducer must return `()` or `Result<(), E>` where `E: Display`, not `{Self}`",
    label = "unsupported reducer return type"
)]
pub trait ReducerResult {
    /// `Ok(())` on success, the failure message otherwise.
    ///
    /// # Errors
    ///
    /// The reducer's error, displayed.
    fn into_reducer_result(self) -> Result<(), String>;
}

impl ReducerResult for () {
    fn into_reducer_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> ReducerResult for Result<(), E> {
    fn into_reducer_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// Encode `args` (the generated argument struct) into a [`ReducerCall`].
pub(crate) fn reducer_call<A: Serialize>(reducer: &'static str, args: &A) -> ReducerCall {
    match rmp_serde::to_vec(args) {
        Ok(args) => ReducerCall { reducer, args },
        Err(e) => panic!("locus-module: cannot encode the arguments of `{reducer}`: {e}"),
    }
}

/// A call of a `#[reducer(scheduled)]` reducer: what its `call(args…)` returns, and what
/// [`ReducerContext::schedule_at`](crate::ReducerContext::schedule_at) and
/// [`schedule_in`](crate::ReducerContext::schedule_in) take.
///
/// Only the `#[reducer(scheduled)]` macro makes one from typed arguments, so a schedule names a reducer the host
/// will run when it is due, with arguments of its parameters' types, and scheduling any other kind of reducer —
/// a client reducer's `call(..)` is a plain [`ReducerCall`] — is a compile error:
///
/// ```
/// use locus_module::{ReducerContext, reducer};
///
/// #[reducer(scheduled)]
/// pub fn put_out(ctx: &ReducerContext, campfire: u64) {}
///
/// #[reducer]
/// pub fn light(ctx: &ReducerContext) -> Result<(), String> {
///     ctx.schedule_in(std::time::Duration::from_secs(120), put_out::call(7))?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ```compile_fail,E0277
/// use locus_module::{ReducerContext, reducer};
///
/// #[reducer]
/// pub fn say(ctx: &ReducerContext, text: String) {}
///
/// #[reducer]
/// pub fn later(ctx: &ReducerContext) -> Result<(), String> {
///     // error[E0277]: `ReducerCall` cannot be scheduled: only a `#[reducer(scheduled)]` reducer's `call(..)` can
///     ctx.schedule_in(std::time::Duration::from_secs(1), say::call("hi".into()))?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// It is a [`ReducerCall`] underneath (it derefs to one, and converts `Into` one), so a tool or a test can still send
/// it by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScheduledCall(ReducerCall);

impl ScheduledCall {
    /// A scheduled call the compiler cannot check: `call` may name any reducer, with any arguments. The host checks
    /// both when it is scheduled ([`ScheduleError::NoSuchReducer`](crate::ScheduleError::NoSuchReducer) unless
    /// `call.reducer` is a `#[reducer(scheduled)]` reducer of the running module,
    /// [`ScheduleError::BadArguments`](crate::ScheduleError::BadArguments) unless the arguments fit its
    /// parameters). For calls the macros cannot type, e.g. a reducer named in data; prefer `my_reducer::call(..)`.
    #[must_use]
    pub fn unchecked(call: ReducerCall) -> ScheduledCall {
        ScheduledCall(call)
    }

    /// The call underneath.
    #[must_use]
    pub fn into_call(self) -> ReducerCall {
        self.0
    }
}

impl std::ops::Deref for ScheduledCall {
    type Target = ReducerCall;

    fn deref(&self) -> &ReducerCall {
        &self.0
    }
}

impl AsRef<ReducerCall> for ScheduledCall {
    fn as_ref(&self) -> &ReducerCall {
        &self.0
    }
}

impl From<ScheduledCall> for ReducerCall {
    fn from(call: ScheduledCall) -> ReducerCall {
        call.0
    }
}

/// What may be scheduled: a [`ScheduledCall`], which only a `#[reducer(scheduled)]` reducer's `call(..)` (or
/// [`ScheduledCall::unchecked`]) makes. Sealed: nothing else implements it, so scheduling a client reducer's
/// [`ReducerCall`] does not compile, and says why.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be scheduled: only a `#[reducer(scheduled)]` reducer's `call(..)` can",
    label = "not the call of a scheduled reducer",
    note = "a client (or lifecycle) reducer's `call(..)` returns a `ReducerCall`, for clients to send; a \
            `#[reducer(scheduled)]` reducer's returns the `ScheduledCall` that `schedule_at` and `schedule_in` take",
    note = "to run this reducer later, declare it `#[reducer(scheduled)]`"
)]
pub trait IntoScheduledCall: sealed::Sealed {
    /// The call to schedule.
    fn into_scheduled_call(self) -> ScheduledCall;
}

impl IntoScheduledCall for ScheduledCall {
    fn into_scheduled_call(self) -> ScheduledCall {
        self
    }
}

/// A call of a `#[reducer(region)]` reducer: what its `call(args…)` returns, and what
/// [`ReducerContext::send_to_region`](crate::ReducerContext::send_to_region) and
/// [`send_to_all_regions`](crate::ReducerContext::send_to_all_regions) take (they also take a client reducer's
/// [`ReducerCall`]).
///
/// Only the `#[reducer(region)]` macro makes one, from arguments of the reducer's parameter types, so arguments of
/// the wrong types do not compile; and neither does sending a [`ScheduledCall`]:
///
/// ```
/// use locus_module::{ReducerContext, reducer};
///
/// /// Run in a region when one sends it; no client can call it.
/// #[reducer(region)]
/// pub fn bell(ctx: &ReducerContext, rings: u32) {}
///
/// #[reducer]
/// pub fn ring(ctx: &ReducerContext) -> Result<(), String> {
///     ctx.send_to_region("east", bell::call(3))?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ```compile_fail,E0308
/// use locus_module::{ReducerContext, reducer};
///
/// #[reducer(region)]
/// pub fn bell(ctx: &ReducerContext, rings: u32) {}
///
/// #[reducer]
/// pub fn ring(ctx: &ReducerContext) -> Result<(), String> {
///     // error[E0308]: mismatched types: `bell` takes a `u32`
///     ctx.send_to_region("east", bell::call("three".to_owned()))?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ```compile_fail,E0277
/// use locus_module::{ReducerContext, reducer};
///
/// #[reducer(scheduled)]
/// pub fn later(ctx: &ReducerContext, rings: u32) {}
///
/// #[reducer]
/// pub fn ring(ctx: &ReducerContext) -> Result<(), String> {
///     // error[E0277]: `ScheduledCall` cannot be sent to a region
///     ctx.send_to_all_regions(later::call(3))?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// It is a [`ReducerCall`] underneath (it derefs to one, and converts `Into` one), so a tool or a test can still run
/// it by name (`locus_testing::World::call_from_region`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegionCall(ReducerCall);

impl RegionCall {
    /// The call of a region reducer whose arguments the macro encoded.
    pub(crate) fn from_macro(call: ReducerCall) -> RegionCall {
        RegionCall(call)
    }

    /// The call underneath.
    #[must_use]
    pub fn into_call(self) -> ReducerCall {
        self.0
    }
}

impl std::ops::Deref for RegionCall {
    type Target = ReducerCall;

    fn deref(&self) -> &ReducerCall {
        &self.0
    }
}

impl AsRef<ReducerCall> for RegionCall {
    fn as_ref(&self) -> &ReducerCall {
        &self.0
    }
}

impl From<RegionCall> for ReducerCall {
    fn from(call: RegionCall) -> ReducerCall {
        call.0
    }
}

/// What may be sent to other regions: a `#[reducer(region)]` reducer's [`RegionCall`], or a client reducer's
/// [`ReducerCall`] (which then runs in the receiving region as if the sender had called it there). Sealed: a
/// [`ScheduledCall`] does not implement it, so sending one does not compile.
///
/// A [`ReducerCall`] is not checked by the compiler for the reducer's kind (a lifecycle reducer's `call()` is one
/// too, and so is [`ReducerCall::new`] of any name and bytes): the host refuses, when it is sent, a name that is not
/// a client or region reducer of the running module and arguments that do not fit its parameters.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent to a region: only a `#[reducer(region)]` or client reducer's `call(..)` can",
    label = "not the call of a region or client reducer",
    note = "declare the reducer the regions should run `#[reducer(region)]`: clients cannot call it, and its \
            `call(..)` returns the `RegionCall` that `send_to_region` and `send_to_all_regions` take"
)]
pub trait IntoRegionCall: sealed::Sealed {
    /// The call to send.
    fn into_region_call(self) -> ReducerCall;
}

impl IntoRegionCall for RegionCall {
    fn into_region_call(self) -> ReducerCall {
        self.0
    }
}

impl IntoRegionCall for ReducerCall {
    fn into_region_call(self) -> ReducerCall {
        self
    }
}

mod sealed {
    /// Keeps [`IntoScheduledCall`](super::IntoScheduledCall) and [`IntoRegionCall`](super::IntoRegionCall) to this
    /// crate's types.
    pub trait Sealed {}

    impl Sealed for super::ScheduledCall {}
    impl Sealed for super::RegionCall {}
    impl Sealed for super::ReducerCall {}
}

/// Decode a reducer's arguments: exactly one MessagePack array, nothing after it. Reducers without parameters
/// also accept zero bytes.
pub(crate) fn decode_args<A: DeserializeOwned>(
    bytes: &[u8],
    param_count: usize,
) -> Result<A, String> {
    const EMPTY_ARRAY: &[u8] = &[0x90];
    let bytes = if bytes.is_empty() && param_count == 0 {
        EMPTY_ARRAY
    } else {
        bytes
    };
    let mut rest = bytes;
    let args = {
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        A::deserialize(&mut de).map_err(|e| e.to_string())?
    };
    if !rest.is_empty() {
        return Err(format!("{} bytes follow the argument array", rest.len()));
    }
    Ok(args)
}

/// Install (once per instance) a panic hook that reports the panic to the host — its message and its location,
/// apart, through `reducer_panic`, so the caller is told ``reducer `name` panicked: <message>`` and the world's
/// operator where — and logs `panicked at <file>:<line>:<column>: <message>` at level error. The trap that follows
/// (`panic = "abort"` on wasm32) ends the call.
fn install_panic_hook() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if !INSTALLED.swap(true, Ordering::Relaxed) {
        std::panic::set_hook(Box::new(|info| {
            let message = panic_message(info);
            let line = match info.location() {
                Some(at) => format!("panicked at {at}: {message}"),
                None => format!("panicked: {message}"),
            };
            sys::log(locus_types::abi::LogLevel::Error, &line);
            match info.location() {
                Some(at) => sys::reducer_panic(message, at.file(), at.line(), at.column()),
                None => sys::reducer_panic(message, "", 0, 0),
            }
        }));
    }
}

/// A panic's message: its payload when that is a string (`panic!("…")` with or without arguments, `expect`,
/// `unwrap`), as Rust's default hook prints it.
fn panic_message<'a>(info: &'a std::panic::PanicHookInfo<'_>) -> &'a str {
    info.payload_as_str().unwrap_or("Box<dyn Any>")
}

/// Run one reducer call: read and decode the arguments, build the context, run `f`, report failure.
///
/// Returns a [`ReducerStatus`] code. Bad arguments return `BadArguments` (with a message through `reducer_fail`);
/// an `Err` from the reducer returns `Failed` with its message.
pub(crate) fn run_reducer<A: DeserializeOwned>(
    name: &'static str,
    param_count: usize,
    args_len: u32,
    f: fn(&ReducerContext, A) -> Result<(), String>,
) -> u32 {
    install_panic_hook();
    let args = {
        let mut buf = Scratch::take();
        let bytes = match sys::reducer_args(&mut buf, args_len as usize) {
            Ok(bytes) => bytes,
            Err(e) => sys::unexpected("reducer_args", e),
        };
        match decode_args::<A>(bytes, param_count) {
            Ok(args) => args,
            Err(e) => {
                sys::reducer_fail(&format!("bad arguments for reducer `{name}`: {e}"));
                return ReducerStatus::BadArguments as u32;
            }
        }
    };
    let ctx = match ReducerContext::from_host() {
        Ok(ctx) => ctx,
        Err(e) => sys::unexpected("reducer_context", e),
    };
    match f(&ctx, args) {
        Ok(()) => ReducerStatus::Ok as u32,
        Err(msg) => {
            sys::reducer_fail(&msg);
            ReducerStatus::Failed as u32
        }
    }
}

thread_local! {
    /// Holds the last description handed to the host, which copies it right away.
    static DESCRIPTION: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Encode `value` as named MessagePack into the description buffer; returns `(ptr << 32) | len`.
pub(crate) fn describe<V: Serialize>(value: &V) -> u64 {
    install_panic_hook();
    let bytes = match rmp_serde::to_vec_named(value) {
        Ok(bytes) => bytes,
        Err(e) => panic!("locus-module: cannot encode a module description: {e}"),
    };
    DESCRIPTION.with(|d| {
        let mut d = d.borrow_mut();
        *d = bytes;
        let ptr = d.as_ptr().expose_provenance() as u64;
        (ptr << 32) | d.len() as u64
    })
}

/// The `#[unsafe(no_mangle)]` ABI-version export every module needs; it lives here so that depending on the SDK is
/// enough to have it.
#[cfg(all(target_arch = "wasm32", not(feature = "client")))]
#[expect(
    unsafe_code,
    reason = "`no_mangle` is needed to export the ABI version under its ABI name"
)]
#[unsafe(no_mangle)]
extern "C" fn __locus_abi_version() -> u32 {
    locus_types::abi::ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Args {
        a: u32,
        b: String,
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct NoArgs {}

    #[test]
    fn args_are_one_array_and_nothing_else() {
        let call = reducer_call(
            "r",
            &Args {
                a: 1,
                b: "x".into(),
            },
        );
        assert_eq!(call.args, [0x92, 0x01, 0xa1, b'x']);
        assert_eq!(
            decode_args::<Args>(&call.args, 2).unwrap(),
            Args {
                a: 1,
                b: "x".into()
            }
        );
        let mut trailing = call.args.clone();
        trailing.push(0xc0);
        assert!(
            decode_args::<Args>(&trailing, 2)
                .unwrap_err()
                .contains("1 bytes follow")
        );
        assert!(
            decode_args::<Args>(&[0x91, 0x01], 2).is_err(),
            "too few elements"
        );
        assert!(
            decode_args::<Args>(&[0x93, 0x01, 0xa1, b'x', 0x02], 2).is_err(),
            "too many elements"
        );
        assert!(
            decode_args::<Args>(&[0x92, 0xa1, b'x', 0x01], 2).is_err(),
            "wrong types"
        );
        assert!(decode_args::<Args>(&[], 2).is_err());
    }

    #[test]
    fn parameterless_reducers_accept_an_empty_array_or_nothing() {
        assert_eq!(reducer_call("r", &NoArgs {}).args, [0x90]);
        assert_eq!(decode_args::<NoArgs>(&[0x90], 0).unwrap(), NoArgs {});
        assert_eq!(decode_args::<NoArgs>(&[], 0).unwrap(), NoArgs {});
    }

    #[test]
    fn reducer_results() {
        assert_eq!(().into_reducer_result(), Ok(()));
        assert_eq!(
            Err::<(), _>("no").into_reducer_result(),
            Err("no".to_owned())
        );
        assert_eq!(Ok::<(), String>(()).into_reducer_result(), Ok(()));
    }
}
