//! The wasmtime layer of the host calls: bounds-checked moves between guest memory and [`Env`].
//!
//! The linker is built from [`locus_types::for_each_host_call!`], the same list the guest SDK declares its imports
//! from, so the two cannot drift: a call missing here is a compile error.
//!
//! Every function here only converts arguments and delegates. A pointer/length pair outside the guest's memory
//! becomes a [`Fault`] trap (never a host panic); every other failure is an errno the guest gets back.

use locus_types::abi::{Errno, IMPORT_MODULE};
use locus_types::{Identity, Vec2, for_each_host_call};
use thiserror::Error;
use wasmtime::{Caller, Linker, Memory, ResourceLimiter};

use crate::env::{Env, IterNext};

/// The per-instance state wasmtime's `Store<T>` holds.
#[derive(Debug, Default)]
pub(crate) struct HostState {
    pub(crate) env: Env,
    pub(crate) memory: Option<Memory>,
    pub(crate) memory_limit: usize,
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Err(wasmtime::Error::new(Fault::MemoryLimit {
                limit: self.memory_limit,
                desired,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table element is a pointer; a million of them is far beyond any real module.
        Ok(desired <= 1_000_000)
    }
}

/// Why the host stopped a module in the middle of a host call (or a memory grow).
#[derive(Debug, Error)]
pub(crate) enum Fault {
    /// A buffer argument lies (partly) outside the guest's memory.
    #[error("host call `{call}`: buffer {ptr:#x}+{len} lies outside the module's memory")]
    OutOfBounds {
        call: &'static str,
        ptr: u32,
        len: u64,
    },
    /// A host call ran before the instance's memory was known (e.g. from a start function).
    #[error("host call `{0}` made during instantiation")]
    NoMemory(&'static str),
    /// `memory.grow` past the configured limit.
    #[error("memory limit exceeded: {desired} bytes requested, limit {limit}")]
    MemoryLimit { limit: usize, desired: usize },
}

type Result<T> = wasmtime::Result<T>;

fn parts<'a>(
    caller: &'a mut Caller<'_, HostState>,
    call: &'static str,
) -> Result<(&'a mut [u8], &'a mut Env)> {
    let memory = caller.data().memory.ok_or(Fault::NoMemory(call))?;
    let (data, state) = memory.data_and_store_mut(caller);
    Ok((data, &mut state.env))
}

fn oob(call: &'static str, ptr: u32, len: usize) -> wasmtime::Error {
    wasmtime::Error::new(Fault::OutOfBounds {
        call,
        ptr,
        len: len as u64,
    })
}

fn read<'m>(mem: &'m [u8], call: &'static str, ptr: u32, len: u32) -> Result<&'m [u8]> {
    let start = ptr as usize;
    mem.get(start..start + len as usize)
        .ok_or_else(|| oob(call, ptr, len as usize))
}

fn write(mem: &mut [u8], call: &'static str, ptr: u32, bytes: &[u8]) -> Result<()> {
    let start = ptr as usize;
    mem.get_mut(start..start + bytes.len())
        .ok_or_else(|| oob(call, ptr, bytes.len()))?
        .copy_from_slice(bytes);
    Ok(())
}

fn errno(e: Errno) -> Result<u32> {
    Ok(e.code())
}

const OK: Result<u32> = Ok(0);

macro_rules! link_host_calls {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty; )*) => {
        /// Register every host call of the ABI in `linker`.
        pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
            $(
                linker.func_wrap(
                    IMPORT_MODULE,
                    stringify!($name),
                    |mut caller: Caller<'_, HostState>, $($arg: $ty),*| -> Result<$ret> {
                        $name(&mut caller, $($arg),*)
                    },
                )?;
            )*
            Ok(())
        }

        /// The names of every host call, in ABI list order.
        pub(crate) const HOST_CALLS: &[&str] = &[$(stringify!($name)),*];
    };
}

for_each_host_call!(link_host_calls);

fn table_id(c: &mut Caller<'_, HostState>, name_ptr: u32, name_len: u32, out: u32) -> Result<u32> {
    const CALL: &str = "table_id";
    let (mem, env) = parts(c, CALL)?;
    let name = read(mem, CALL, name_ptr, name_len)?;
    match env.table_id(name) {
        Ok(id) => write(mem, CALL, out, &id.to_le_bytes()).and(OK),
        Err(e) => errno(e),
    }
}

fn reducer_args(c: &mut Caller<'_, HostState>, buf: u32, cap: u32, out_len: u32) -> Result<u32> {
    const CALL: &str = "reducer_args";
    let (mem, env) = parts(c, CALL)?;
    match env.args() {
        Ok(args) if args.len() > cap as usize => {
            write(mem, CALL, out_len, &(args.len() as u32).to_le_bytes())?;
            errno(Errno::BufferTooSmall)
        }
        Ok(args) => {
            write(mem, CALL, buf, args)?;
            write(mem, CALL, out_len, &(args.len() as u32).to_le_bytes()).and(OK)
        }
        Err(e) => errno(e),
    }
}

fn reducer_context(c: &mut Caller<'_, HostState>, out: u32) -> Result<u32> {
    const CALL: &str = "reducer_context";
    let (mem, env) = parts(c, CALL)?;
    match env.context() {
        Ok(ctx) => write(mem, CALL, out, &ctx).and(OK),
        Err(e) => errno(e),
    }
}

fn reducer_fail(c: &mut Caller<'_, HostState>, ptr: u32, len: u32) -> Result<u32> {
    const CALL: &str = "reducer_fail";
    let (mem, env) = parts(c, CALL)?;
    let msg = read(mem, CALL, ptr, len)?;
    env.fail(msg).map_or_else(errno, |()| OK)
}

fn reducer_panic(
    c: &mut Caller<'_, HostState>,
    msg_ptr: u32,
    msg_len: u32,
    file_ptr: u32,
    file_len: u32,
    line: u32,
    column: u32,
) -> Result<u32> {
    const CALL: &str = "reducer_panic";
    let (mem, env) = parts(c, CALL)?;
    let msg = read(mem, CALL, msg_ptr, msg_len)?;
    let file = read(mem, CALL, file_ptr, file_len)?;
    env.panic(msg, file, line, column)
        .map_or_else(errno, |()| OK)
}

fn log(c: &mut Caller<'_, HostState>, level: u32, ptr: u32, len: u32) -> Result<u32> {
    const CALL: &str = "log";
    let (mem, env) = parts(c, CALL)?;
    let msg = read(mem, CALL, ptr, len)?;
    env.log(level, msg).map_or_else(errno, |()| OK)
}

fn insert(c: &mut Caller<'_, HostState>, table: u32, ptr: u32, len: u32, out: u32) -> Result<u32> {
    const CALL: &str = "insert";
    let (mem, env) = parts(c, CALL)?;
    let row = read(mem, CALL, ptr, len)?;
    match env.insert(table, row) {
        Ok(key) => write(mem, CALL, out, &key.to_le_bytes()).and(OK),
        Err(e) => errno(e),
    }
}

fn update(c: &mut Caller<'_, HostState>, table: u32, ptr: u32, len: u32) -> Result<u32> {
    const CALL: &str = "update";
    let (mem, env) = parts(c, CALL)?;
    let row = read(mem, CALL, ptr, len)?;
    env.update(table, row).map_or_else(errno, |()| OK)
}

fn delete(c: &mut Caller<'_, HostState>, table: u32, ptr: u32, len: u32) -> Result<u32> {
    const CALL: &str = "delete";
    let (mem, env) = parts(c, CALL)?;
    let key = read(mem, CALL, ptr, len)?;
    env.delete(table, key).map_or_else(errno, |()| OK)
}

fn get(
    c: &mut Caller<'_, HostState>,
    table: u32,
    key_ptr: u32,
    key_len: u32,
    buf: u32,
    cap: u32,
    out_len: u32,
) -> Result<u32> {
    const CALL: &str = "get";
    let (mem, env) = parts(c, CALL)?;
    let key = read(mem, CALL, key_ptr, key_len)?;
    match env.get(table, key) {
        Ok(row) if row.len() > cap as usize => {
            write(mem, CALL, out_len, &(row.len() as u32).to_le_bytes())?;
            errno(Errno::BufferTooSmall)
        }
        Ok(row) => {
            write(mem, CALL, buf, row)?;
            write(mem, CALL, out_len, &(row.len() as u32).to_le_bytes()).and(OK)
        }
        Err(e) => errno(e),
    }
}

fn row_count(c: &mut Caller<'_, HostState>, table: u32, out: u32) -> Result<u32> {
    const CALL: &str = "row_count";
    let (mem, env) = parts(c, CALL)?;
    match env.row_count(table) {
        Ok(n) => write(mem, CALL, out, &n.to_le_bytes()).and(OK),
        Err(e) => errno(e),
    }
}

fn opened(
    mem: &mut [u8],
    call: &'static str,
    out: u32,
    r: std::result::Result<u32, Errno>,
) -> Result<u32> {
    match r {
        Ok(handle) => write(mem, call, out, &handle.to_le_bytes()).and(OK),
        Err(e) => errno(e),
    }
}

fn scan(c: &mut Caller<'_, HostState>, table: u32, out: u32) -> Result<u32> {
    const CALL: &str = "scan";
    let (mem, env) = parts(c, CALL)?;
    let r = env.scan(table);
    opened(mem, CALL, out, r)
}

fn index_eq(
    c: &mut Caller<'_, HostState>,
    table: u32,
    column: u32,
    key_ptr: u32,
    key_len: u32,
    out: u32,
) -> Result<u32> {
    const CALL: &str = "index_eq";
    let (mem, env) = parts(c, CALL)?;
    let key = read(mem, CALL, key_ptr, key_len)?;
    let r = env.index_eq(table, column, key);
    opened(mem, CALL, out, r)
}

#[expect(clippy::too_many_arguments, reason = "the ABI's argument list")]
fn index_range(
    c: &mut Caller<'_, HostState>,
    table: u32,
    column: u32,
    lo_ptr: u32,
    lo_len: u32,
    hi_ptr: u32,
    hi_len: u32,
    bounds: u32,
    out: u32,
) -> Result<u32> {
    const CALL: &str = "index_range";
    let (mem, env) = parts(c, CALL)?;
    if locus_types::abi::BoundKind::unpack(bounds).is_none() {
        // Read no buffer: `Env` reports NotInReducer, NoSuchTable or BadArgument, in that order.
        let r = env.index_range(table, column, &[], &[], bounds);
        return opened(mem, CALL, out, r);
    }
    // An unbounded side's buffer is ignored (not even bounds-checked), as documented.
    let side = |kind: u32, ptr: u32, len: u32| -> Result<&[u8]> {
        if kind & 3 == 0 {
            Ok(&[])
        } else {
            read(mem, CALL, ptr, len)
        }
    };
    let lo = side(bounds, lo_ptr, lo_len)?;
    let hi = side(bounds >> 2, hi_ptr, hi_len)?;
    let r = env.index_range(table, column, lo, hi, bounds);
    opened(mem, CALL, out, r)
}

fn within_radius(
    c: &mut Caller<'_, HostState>,
    table: u32,
    x: f32,
    y: f32,
    radius: f32,
    out: u32,
) -> Result<u32> {
    const CALL: &str = "within_radius";
    let (mem, env) = parts(c, CALL)?;
    let r = env.within_radius(table, Vec2::new(x, y), radius);
    opened(mem, CALL, out, r)
}

fn within_box(
    c: &mut Caller<'_, HostState>,
    table: u32,
    min_x: f32,
    min_y: f32,
    max_x: f32,
    max_y: f32,
    out: u32,
) -> Result<u32> {
    const CALL: &str = "within_box";
    let (mem, env) = parts(c, CALL)?;
    let r = env.within_box(table, Vec2::new(min_x, min_y), Vec2::new(max_x, max_y));
    opened(mem, CALL, out, r)
}

fn nearest(
    c: &mut Caller<'_, HostState>,
    table: u32,
    x: f32,
    y: f32,
    k: u32,
    out: u32,
) -> Result<u32> {
    const CALL: &str = "nearest";
    let (mem, env) = parts(c, CALL)?;
    let r = env.nearest(table, Vec2::new(x, y), k);
    opened(mem, CALL, out, r)
}

fn iter_next(
    c: &mut Caller<'_, HostState>,
    iter: u32,
    buf: u32,
    cap: u32,
    out_len: u32,
) -> Result<u32> {
    const CALL: &str = "iter_next";
    let (mem, env) = parts(c, CALL)?;
    // Check the whole output buffer up front, so a bad buffer traps before the iterator advances.
    read(mem, CALL, buf, cap)?;
    read(mem, CALL, out_len, 4)?;
    match env.iter_next(iter, cap) {
        Ok(IterNext::Rows(rows)) => {
            write(mem, CALL, buf, rows)?;
            write(mem, CALL, out_len, &(rows.len() as u32).to_le_bytes()).and(OK)
        }
        Ok(IterNext::TooSmall(need)) => {
            write(mem, CALL, out_len, &need.to_le_bytes())?;
            errno(Errno::BufferTooSmall)
        }
        Ok(IterNext::Exhausted) => {
            write(mem, CALL, out_len, &0u32.to_le_bytes())?;
            errno(Errno::Exhausted)
        }
        Err(e) => errno(e),
    }
}

fn iter_close(c: &mut Caller<'_, HostState>, iter: u32) -> Result<u32> {
    let (_, env) = parts(c, "iter_close")?;
    env.iter_close(iter).map_or_else(errno, |()| OK)
}

fn schedule(
    c: &mut Caller<'_, HostState>,
    name_ptr: u32,
    name_len: u32,
    at: u64,
    args_ptr: u32,
    args_len: u32,
    out: u32,
) -> Result<u32> {
    const CALL: &str = "schedule";
    let (mem, env) = parts(c, CALL)?;
    let name = read(mem, CALL, name_ptr, name_len)?;
    let args = read(mem, CALL, args_ptr, args_len)?;
    match env.schedule(name, at, args) {
        Ok(id) => write(mem, CALL, out, &id.to_le_bytes()).and(OK),
        Err(e) => errno(e),
    }
}

fn unschedule(c: &mut Caller<'_, HostState>, id: u64) -> Result<u32> {
    let (_, env) = parts(c, "unschedule")?;
    env.unschedule(id).map_or_else(errno, |()| OK)
}

/// The 32-byte identity at `ptr`.
fn identity(mem: &[u8], call: &'static str, ptr: u32) -> Result<Identity> {
    let bytes = read(mem, call, ptr, 32)?;
    Ok(Identity(bytes.try_into().expect("read 32 bytes")))
}

fn area_follow(
    c: &mut Caller<'_, HostState>,
    identity_ptr: u32,
    table: u32,
    key_ptr: u32,
    key_len: u32,
    enter: f32,
    leave: f32,
) -> Result<u32> {
    const CALL: &str = "area_follow";
    let (mem, env) = parts(c, CALL)?;
    let who = identity(mem, CALL, identity_ptr)?;
    let key = read(mem, CALL, key_ptr, key_len)?;
    env.area_follow(who, table, key, enter, leave)
        .map_or_else(errno, |()| OK)
}

fn area_fixed(
    c: &mut Caller<'_, HostState>,
    identity_ptr: u32,
    x: f32,
    y: f32,
    enter: f32,
    leave: f32,
) -> Result<u32> {
    const CALL: &str = "area_fixed";
    let (mem, env) = parts(c, CALL)?;
    let who = identity(mem, CALL, identity_ptr)?;
    env.area_fixed(who, Vec2::new(x, y), enter, leave)
        .map_or_else(errno, |()| OK)
}

fn area_clear(c: &mut Caller<'_, HostState>, identity_ptr: u32) -> Result<u32> {
    const CALL: &str = "area_clear";
    let (mem, env) = parts(c, CALL)?;
    let who = identity(mem, CALL, identity_ptr)?;
    env.area_clear(who).map_or_else(errno, |()| OK)
}

fn region_send(
    c: &mut Caller<'_, HostState>,
    region_ptr: u32,
    region_len: u32,
    name_ptr: u32,
    name_len: u32,
    args_ptr: u32,
    args_len: u32,
) -> Result<u32> {
    const CALL: &str = "region_send";
    let (mem, env) = parts(c, CALL)?;
    let region = read(mem, CALL, region_ptr, region_len)?;
    let name = read(mem, CALL, name_ptr, name_len)?;
    let args = read(mem, CALL, args_ptr, args_len)?;
    env.region_send(region, name, args)
        .map_or_else(errno, |()| OK)
}

fn region_broadcast(
    c: &mut Caller<'_, HostState>,
    name_ptr: u32,
    name_len: u32,
    args_ptr: u32,
    args_len: u32,
) -> Result<u32> {
    const CALL: &str = "region_broadcast";
    let (mem, env) = parts(c, CALL)?;
    let name = read(mem, CALL, name_ptr, name_len)?;
    let args = read(mem, CALL, args_ptr, args_len)?;
    env.region_broadcast(name, args).map_or_else(errno, |()| OK)
}

fn region_list(c: &mut Caller<'_, HostState>, buf: u32, cap: u32, out_len: u32) -> Result<u32> {
    const CALL: &str = "region_list";
    let (mem, env) = parts(c, CALL)?;
    match env.region_list() {
        Ok(list) if list.len() > cap as usize => {
            write(mem, CALL, out_len, &(list.len() as u32).to_le_bytes())?;
            errno(Errno::BufferTooSmall)
        }
        Ok(list) => {
            write(mem, CALL, buf, &list)?;
            write(mem, CALL, out_len, &(list.len() as u32).to_le_bytes()).and(OK)
        }
        Err(e) => errno(e),
    }
}
