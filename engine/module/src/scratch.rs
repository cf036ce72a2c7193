//! Reusable byte buffers for the hot path.
//!
//! Every host call that moves bytes (arguments, keys, rows, iterator batches) needs a buffer. Allocating one per
//! call would dominate a small reducer, so buffers come from a per-instance pool: [`Scratch::take`] pops one (or
//! makes a new one), and dropping the [`Scratch`] puts it back. A wasm instance is single-threaded, so the pool is
//! a thread-local (a plain static on `wasm32`), and re-entrancy is safe: a nested user needs a second buffer and
//! simply gets another one.
//!
//! Invariant: a pooled buffer's `len` is its usable size and every byte in it is initialized (buffers handed to
//! the host are resized, never only reserved), so the host can write anywhere in `..len` without `unsafe`.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Buffers at most this big go back to the pool; bigger ones are freed so one huge row does not pin memory.
const MAX_POOLED: usize = 1 << 20;

/// At most this many idle buffers are kept.
const MAX_IDLE: usize = 16;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A byte buffer borrowed from the pool; returned to it on drop.
pub(crate) struct Scratch(Vec<u8>);

impl Scratch {
    /// Take a buffer from the pool (its contents are unspecified).
    #[inline]
    pub(crate) fn take() -> Scratch {
        Scratch(POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default())
    }

    /// Take a buffer and clear it, for appending (e.g. encoding).
    #[inline]
    pub(crate) fn empty() -> Scratch {
        let mut s = Scratch::take();
        s.0.clear();
        s
    }
}

impl Drop for Scratch {
    #[inline]
    fn drop(&mut self) {
        if self.0.capacity() <= MAX_POOLED {
            let buf = std::mem::take(&mut self.0);
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < MAX_IDLE {
                    p.push(buf);
                }
            });
        }
    }
}

impl Deref for Scratch {
    type Target = Vec<u8>;

    #[inline]
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Scratch {
    #[inline]
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_nested_takes_get_distinct_buffers() {
        let mut a = Scratch::take();
        a.resize(1000, 7);
        let a_ptr = a.as_ptr();
        drop(a);
        let b = Scratch::take();
        assert_eq!(b.as_ptr(), a_ptr, "the dropped buffer is reused");
        assert_eq!(b.len(), 1000, "its initialized length is kept");
        let c = Scratch::empty();
        assert_ne!(c.as_ptr(), b.as_ptr());
        assert!(c.is_empty());
    }
}
