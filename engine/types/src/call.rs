//! [`ReducerCall`]: a call of one reducer by name with its encoded arguments, shared by the guest SDK (which
//! builds them: `my_reducer::call(args…)`) and the client SDK (which sends them).

/// A call of one reducer with encoded arguments: what `my_reducer::call(args…)` returns.
///
/// `args` is one MessagePack array with one element per parameter, each encoded as a row column of the
/// parameter's type would be. Send it from a native client (which gets the same typed `call` functions by depending
/// on the module crate). Inside a module, a `#[reducer(scheduled)]` reducer's `call` returns the SDK's
/// `ScheduledCall` instead (a `ReducerCall` underneath), the only thing `ReducerContext::schedule_at` takes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReducerCall {
    /// The reducer's name.
    pub reducer: &'static str,
    /// The encoded arguments.
    pub args: Vec<u8>,
}

impl ReducerCall {
    /// A call of `reducer` with already encoded `args`.
    #[must_use]
    pub fn new(reducer: &'static str, args: Vec<u8>) -> ReducerCall {
        ReducerCall { reducer, args }
    }
}
