//! [`HostConfig`]: how reducer calls are bounded.

use std::time::Duration;

/// What stops a runaway reducer. The choice is made when the [`Runtime`](crate::Runtime) is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// Wall-clock time per call, enforced with wasmtime's epoch interruption: a background thread advances the
    /// engine's epoch every [`EPOCH_PERIOD`], so a call is stopped between `limit` and `limit + EPOCH_PERIOD`
    /// after it started. Cheap (one compare at each loop header and call).
    Time(Duration),
    /// Wasmtime fuel per call (roughly one unit per wasm instruction). Deterministic — the same call always stops
    /// at the same instruction — but compiled code runs measurably slower than with [`Budget::Time`].
    Fuel(u64),
}

/// How often the epoch of a [`Budget::Time`] runtime advances: the granularity of its time limit.
pub const EPOCH_PERIOD: Duration = Duration::from_millis(1);

/// Limits of the module host. Every field's default is stated on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// What bounds each reducer call (and each describe export at load time). Default
    /// `Budget::Time(100 ms)`: two ticks at 20 Hz, far above what a healthy reducer needs (`locus serve
    /// --reducer-time-limit` / `--reducer-fuel` set it; `engine/docs/operations.md` explains the default).
    pub budget: Budget,
    /// Largest linear memory an instance may have, in bytes. A `memory.grow` past it traps, stopping the call.
    /// Default 64 MiB.
    pub memory_limit: usize,
    /// Iterators a single call may hold open at once. Default 64.
    pub max_iterators: usize,
    /// Bytes of rows a single call's open iterators may hold on the host. Default 64 MiB.
    pub max_iterator_bytes: usize,
    /// Log lines a single call may write; later ones are dropped. Default 1,000.
    pub max_log_lines: usize,
    /// Log lines kept until [`ModuleInstance::drain_logs`](crate::ModuleInstance::drain_logs); the oldest are
    /// dropped past it. Default 10,000.
    pub log_buffer: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            budget: Budget::Time(Duration::from_millis(100)),
            memory_limit: 64 << 20,
            max_iterators: 64,
            max_iterator_bytes: 64 << 20,
            max_log_lines: 1_000,
            log_buffer: 10_000,
        }
    }
}
