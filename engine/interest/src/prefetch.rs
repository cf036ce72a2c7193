//! A hint to the CPU to start loading memory that is about to be read.
//!
//! The per-client pass of a tick reads each client's state and view once, from memory that is cold by then (the
//! views of 10,000 clients do not fit in a core's cache). `poll_tick` asks for the next clients' memory a few
//! clients ahead, so the loads overlap the work on the current client instead of stalling it.

/// Ask the CPU to bring the cache line holding `value` closer. A hint only: it reads nothing, cannot fault and
/// changes no state, on any address; on targets without a prefetch instruction it does nothing.
#[inline(always)]
pub(crate) fn prefetch<T>(value: *const T) {
    #[cfg(target_arch = "x86_64")]
    #[expect(
        unsafe_code,
        reason = "`_mm_prefetch` is a hint that never dereferences its pointer; it is `unsafe` only because it is \
                  a `target_feature` function, and SSE is part of the x86_64 baseline"
    )]
    // SAFETY: `prefetch` is a hint: it does not access memory architecturally and cannot fault, whatever the
    // address; SSE, which it needs, is always available on x86_64.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(value.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
