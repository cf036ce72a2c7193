//! The host-call layer: the ABI's import list, and typed wrappers over it.
//!
//! [`raw`] is generated from [`locus_types::for_each_host_call!`], the one list of host calls, so the SDK can never
//! disagree with the host about a name or a signature:
//!
//! - on `wasm32`, each call is an import from the `locus_v1` module;
//! - on every other target, each call is a function with the same signature that returns
//!   [`Errno::NotInReducer`]. That is the truth there: reducers only run inside the host, so natively no call can
//!   succeed. (Natively, the SDK is used for its types and for [`crate::ReducerCall`]s, never to run a reducer;
//!   no [`crate::ReducerContext`] can be made outside a call, so the stubs are unreachable through the public API.)
//!
//! The imports are declared `safe`, so this is the only place in the crate that says `unsafe`. That is sound
//! because [`raw`] is private to this module and every wrapper below passes only pointers derived from live
//! buffers (or locals) that are valid for the access the host makes: `buf_cap`/`*_len` are exactly the lengths of
//! the slices the pointers come from, and out-parameters are aligned locals of the documented width.
//!
//! Pointers are passed as `u32` addresses in the module's linear memory; [`addr`] exposes a pointer's provenance
//! before turning it into one, so the compiler knows the host may access it. On native targets the (truncated)
//! addresses are never used.

use locus_types::abi::Errno;

/// The host calls, exactly as the ABI list declares them.
mod raw {
    macro_rules! declare_host_calls {
        ($( $(#[$doc:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty; )*) => {
            #[cfg(all(target_arch = "wasm32", not(feature = "client")))]
            #[link(wasm_import_module = "locus_v1")]
            #[expect(unsafe_code, reason = "the one extern block of host imports; every item is declared `safe`, see the module docs")]
            unsafe extern "C" {
                $(
                    $(#[$doc])*
                    pub(crate) safe fn $name($($arg: $ty),*) -> $ret;
                )*
            }

            $(
                $(#[$doc])*
                ///
                /// (Native stub: no reducer can run outside the host, so this always returns `NotInReducer`.)
                #[cfg(not(all(target_arch = "wasm32", not(feature = "client"))))]
                #[allow(clippy::too_many_arguments, reason = "the signatures are the ABI's")]
                pub(crate) fn $name($($arg: $ty),*) -> $ret {
                    let _ = ($($arg,)*);
                    locus_types::abi::Errno::NotInReducer.code()
                }
            )*
        };
    }

    locus_types::for_each_host_call!(declare_host_calls);
}

// The import module named in the extern block must be the ABI's.
const _: () = {
    let a = locus_types::abi::IMPORT_MODULE.as_bytes();
    let b = b"locus_v1";
    assert!(a.len() == b.len());
    let mut i = 0;
    while i < a.len() {
        assert!(a[i] == b[i]);
        i += 1;
    }
};

/// The wasm address of `p` (its provenance exposed so the host may use it).
#[inline(always)]
fn addr<T: ?Sized>(p: *const T) -> u32 {
    p.cast::<u8>().expose_provenance() as u32
}

/// The address and length of `bytes`.
#[inline(always)]
fn slice(bytes: &[u8]) -> (u32, u32) {
    (addr(bytes.as_ptr()), bytes.len() as u32)
}

/// `Ok` for errno 0, otherwise the errno.
///
/// # Panics
///
/// If the host returns a code that is not an [`Errno`] (the SDK and host disagree about the ABI).
#[inline(always)]
pub(crate) fn check(call: &'static str, code: u32) -> Result<(), Errno> {
    if code == 0 {
        return Ok(());
    }
    match Errno::from_code(code) {
        Some(e) => Err(e),
        None => panic!(
            "locus-module: host call `{call}` returned unknown errno {code}; the SDK and the host disagree about the module ABI"
        ),
    }
}

/// Panic for an errno the caller does not expect from `call`.
#[cold]
#[track_caller]
pub(crate) fn unexpected(call: &'static str, errno: Errno) -> ! {
    if errno == Errno::NotInReducer {
        panic!(
            "locus-module: host call `{call}` failed: no reducer is running (tables, schedules and the reducer \
             context are only available inside a reducer call run by the Locus host)"
        );
    }
    panic!(
        "locus-module: host call `{call}` failed unexpectedly: {errno}; the SDK and the host disagree about the module ABI or a row"
    )
}

/// Make `buf` at least `len` bytes long (zero-filled, so every byte the host may write is initialized).
#[inline(always)]
pub(crate) fn ensure_len(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

/// Look up a table's id by name.
pub(crate) fn table_id(name: &str) -> Result<u32, Errno> {
    let (p, l) = slice(name.as_bytes());
    let mut out: u32 = 0;
    check("table_id", raw::table_id(p, l, addr(&raw mut out)))?;
    Ok(out)
}

/// Copy the running call's `len` argument bytes into `buf` (grown as needed); returns the argument bytes.
pub(crate) fn reducer_args(buf: &mut Vec<u8>, len: usize) -> Result<&[u8], Errno> {
    ensure_len(buf, len.max(16));
    loop {
        let mut out: u32 = 0;
        let code = raw::reducer_args(addr(buf.as_mut_ptr()), buf.len() as u32, addr(&raw mut out));
        match check("reducer_args", code) {
            Ok(()) => return Ok(&buf[..out as usize]),
            Err(Errno::BufferTooSmall) => ensure_len(buf, out as usize),
            Err(e) => return Err(e),
        }
    }
}

/// The running call's 64-byte context (see [`locus_types::abi::ContextLayout`]).
pub(crate) fn reducer_context() -> Result<[u8; locus_types::abi::CONTEXT_SIZE], Errno> {
    let mut out = [0u8; locus_types::abi::CONTEXT_SIZE];
    check(
        "reducer_context",
        raw::reducer_context(addr(out.as_mut_ptr())),
    )?;
    Ok(out)
}

/// Set the running call's failure message. Errors (no reducer running) are ignored: there is no one to tell.
pub(crate) fn reducer_fail(msg: &str) {
    let (p, l) = slice(msg.as_bytes());
    let _ = raw::reducer_fail(p, l);
}

/// Tell the host the running reducer panicked, with the panic's message and location (`file` empty for none), before
/// the trap. Errors (no reducer running: a panic while the host reads the descriptions) are ignored.
pub(crate) fn reducer_panic(message: &str, file: &str, line: u32, column: u32) {
    let (mp, ml) = slice(message.as_bytes());
    let (fp, fl) = slice(file.as_bytes());
    let _ = raw::reducer_panic(mp, ml, fp, fl, line, column);
}

/// Write a line to the module log. Errors (too many lines) are ignored: logging must not fail a reducer.
pub(crate) fn log(level: locus_types::abi::LogLevel, msg: &str) {
    let (p, l) = slice(msg.as_bytes());
    let _ = raw::log(level as u32, p, l);
}

/// Insert a row; returns the row's final primary key as the host reports it.
pub(crate) fn insert(table: u32, row: &[u8]) -> Result<u64, Errno> {
    let (p, l) = slice(row);
    let mut out: u64 = 0;
    check("insert", raw::insert(table, p, l, addr(&raw mut out)))?;
    Ok(out)
}

/// Replace the row with the same primary key.
pub(crate) fn update(table: u32, row: &[u8]) -> Result<(), Errno> {
    let (p, l) = slice(row);
    check("update", raw::update(table, p, l))
}

/// Delete the row with this primary key.
pub(crate) fn delete(table: u32, key: &[u8]) -> Result<(), Errno> {
    let (p, l) = slice(key);
    check("delete", raw::delete(table, p, l))
}

/// Copy the row with this primary key into `buf` (grown as needed); returns the row's bytes.
pub(crate) fn get<'b>(table: u32, key: &[u8], buf: &'b mut Vec<u8>) -> Result<&'b [u8], Errno> {
    let (kp, kl) = slice(key);
    ensure_len(buf, 256);
    loop {
        let mut out: u32 = 0;
        let code = raw::get(
            table,
            kp,
            kl,
            addr(buf.as_mut_ptr()),
            buf.len() as u32,
            addr(&raw mut out),
        );
        match check("get", code) {
            Ok(()) => return Ok(&buf[..out as usize]),
            Err(Errno::BufferTooSmall) => ensure_len(buf, out as usize),
            Err(e) => return Err(e),
        }
    }
}

/// The table's row count.
pub(crate) fn row_count(table: u32) -> Result<u64, Errno> {
    let mut out: u64 = 0;
    check("row_count", raw::row_count(table, addr(&raw mut out)))?;
    Ok(out)
}

/// Open an iterator over every row.
pub(crate) fn scan(table: u32) -> Result<u32, Errno> {
    let mut out: u32 = 0;
    check("scan", raw::scan(table, addr(&raw mut out)))?;
    Ok(out)
}

/// Open an iterator over the rows whose `column` equals `key`.
pub(crate) fn index_eq(table: u32, column: u16, key: &[u8]) -> Result<u32, Errno> {
    let (p, l) = slice(key);
    let mut out: u32 = 0;
    check(
        "index_eq",
        raw::index_eq(table, u32::from(column), p, l, addr(&raw mut out)),
    )?;
    Ok(out)
}

/// Open an iterator over a key range; `bounds` is [`locus_types::abi::BoundKind::pack`]ed.
pub(crate) fn index_range(
    table: u32,
    column: u16,
    lo: &[u8],
    hi: &[u8],
    bounds: u32,
) -> Result<u32, Errno> {
    let (lp, ll) = slice(lo);
    let (hp, hl) = slice(hi);
    let mut out: u32 = 0;
    let code = raw::index_range(
        table,
        u32::from(column),
        lp,
        ll,
        hp,
        hl,
        bounds,
        addr(&raw mut out),
    );
    check("index_range", code)?;
    Ok(out)
}

/// Open an iterator over the rows within `radius` of (`x`, `y`).
pub(crate) fn within_radius(table: u32, x: f32, y: f32, radius: f32) -> Result<u32, Errno> {
    let mut out: u32 = 0;
    check(
        "within_radius",
        raw::within_radius(table, x, y, radius, addr(&raw mut out)),
    )?;
    Ok(out)
}

/// Open an iterator over the rows in an envelope.
pub(crate) fn within_box(
    table: u32,
    min_x: f32,
    min_y: f32,
    max_x: f32,
    max_y: f32,
) -> Result<u32, Errno> {
    let mut out: u32 = 0;
    let code = raw::within_box(table, min_x, min_y, max_x, max_y, addr(&raw mut out));
    check("within_box", code)?;
    Ok(out)
}

/// Open an iterator over the `k` rows nearest to (`x`, `y`).
pub(crate) fn nearest(table: u32, x: f32, y: f32, k: u32) -> Result<u32, Errno> {
    let mut out: u32 = 0;
    check("nearest", raw::nearest(table, x, y, k, addr(&raw mut out)))?;
    Ok(out)
}

/// Copy the next batch of rows into `buf` (grown as needed if not even one row fits); returns the batch's
/// length. `Err(Exhausted)` once every row was read (the host has closed the iterator).
pub(crate) fn iter_next(iter: u32, buf: &mut Vec<u8>) -> Result<usize, Errno> {
    loop {
        let mut out: u32 = 0;
        let code = raw::iter_next(
            iter,
            addr(buf.as_mut_ptr()),
            buf.len() as u32,
            addr(&raw mut out),
        );
        match check("iter_next", code) {
            Ok(()) => return Ok(out as usize),
            Err(Errno::BufferTooSmall) => ensure_len(buf, out as usize),
            Err(e) => return Err(e),
        }
    }
}

/// Close an iterator early. Errors are ignored: the host closes leftovers when the reducer returns.
pub(crate) fn iter_close(iter: u32) {
    let _ = raw::iter_close(iter);
}

/// Schedule the `Scheduled` reducer `name` at `at_micros` with MessagePack `args`; returns the schedule id.
pub(crate) fn schedule(name: &str, at_micros: u64, args: &[u8]) -> Result<u64, Errno> {
    let (np, nl) = slice(name.as_bytes());
    let (ap, al) = slice(args);
    let mut out: u64 = 0;
    check(
        "schedule",
        raw::schedule(np, nl, at_micros, ap, al, addr(&raw mut out)),
    )?;
    Ok(out)
}

/// Cancel a schedule.
pub(crate) fn unschedule(id: u64) -> Result<(), Errno> {
    check("unschedule", raw::unschedule(id))
}

/// Set `identity`'s area of interest to follow the row of `table` with the encoded primary key `key`.
pub(crate) fn area_follow(
    identity: &locus_types::Identity,
    table: u32,
    key: &[u8],
    enter: f32,
    leave: f32,
) -> Result<(), Errno> {
    let (kp, kl) = slice(key);
    let code = raw::area_follow(addr(identity.0.as_ptr()), table, kp, kl, enter, leave);
    check("area_follow", code)
}

/// Set `identity`'s area of interest to a fixed point.
pub(crate) fn area_fixed(
    identity: &locus_types::Identity,
    x: f32,
    y: f32,
    enter: f32,
    leave: f32,
) -> Result<(), Errno> {
    let code = raw::area_fixed(addr(identity.0.as_ptr()), x, y, enter, leave);
    check("area_fixed", code)
}

/// Remove `identity`'s area of interest.
pub(crate) fn area_clear(identity: &locus_types::Identity) -> Result<(), Errno> {
    check("area_clear", raw::area_clear(addr(identity.0.as_ptr())))
}

/// Send a call of reducer `name` with MessagePack `args` to the region named `region`.
pub(crate) fn region_send(region: &str, name: &str, args: &[u8]) -> Result<(), Errno> {
    let (rp, rl) = slice(region.as_bytes());
    let (np, nl) = slice(name.as_bytes());
    let (ap, al) = slice(args);
    check("region_send", raw::region_send(rp, rl, np, nl, ap, al))
}

/// Send a call of reducer `name` with MessagePack `args` to every region.
pub(crate) fn region_broadcast(name: &str, args: &[u8]) -> Result<(), Errno> {
    let (np, nl) = slice(name.as_bytes());
    let (ap, al) = slice(args);
    check("region_broadcast", raw::region_broadcast(np, nl, ap, al))
}

/// The world's regions as `region_list` writes them (one MessagePack array of `[name, index, x0, y0, x1, y1, own]`),
/// copied into `buf` (grown as needed); returns those bytes.
pub(crate) fn region_list(buf: &mut Vec<u8>) -> Result<&[u8], Errno> {
    ensure_len(buf, 256);
    loop {
        let mut out: u32 = 0;
        let code = raw::region_list(addr(buf.as_mut_ptr()), buf.len() as u32, addr(&raw mut out));
        match check("region_list", code) {
            Ok(()) => return Ok(&buf[..out as usize]),
            Err(Errno::BufferTooSmall) => ensure_len(buf, out as usize),
            Err(e) => return Err(e),
        }
    }
}
