//! Logging to the module log: [`error!`](crate::error), [`warn!`](crate::warn), [`info!`](crate::info),
//! [`debug!`](crate::debug), [`trace!`](crate::trace).
//!
//! Each macro formats its arguments like `format!` and sends one line through the `log` host call, which tags it
//! with the running reducer's name. Logging never fails a reducer: lines past the host's per-call limit are dropped.
//!
//! Importing `warn` (`use locus_module::warn;`) makes a `#[warn(...)]` lint attribute in the same module ambiguous
//! (rustc cannot tell the macro from the built-in attribute); call it as `locus_module::warn!(...)` there.

use std::fmt::Arguments;

use locus_types::abi::LogLevel;

use crate::sys;

/// Send one formatted line at `level` (what the log macros expand to).
#[doc(hidden)]
pub fn log(level: LogLevel, args: Arguments<'_>) {
    match args.as_str() {
        Some(s) => sys::log(level, s),
        None => sys::log(level, &args.to_string()),
    }
}

/// Log a line at [`LogLevel::Error`]: `error!("lost {} items", n)`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::__private::log($crate::LogLevel::Error, ::core::format_args!($($arg)+)) };
}

/// Log a line at [`LogLevel::Warn`]: `warn!("slow tick: {dt}")`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::__private::log($crate::LogLevel::Warn, ::core::format_args!($($arg)+)) };
}

/// Log a line at [`LogLevel::Info`]: `info!("{} joined", name)`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::__private::log($crate::LogLevel::Info, ::core::format_args!($($arg)+)) };
}

/// Log a line at [`LogLevel::Debug`]: `debug!("state: {state:?}")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::__private::log($crate::LogLevel::Debug, ::core::format_args!($($arg)+)) };
}

/// Log a line at [`LogLevel::Trace`]: `trace!("step {i}")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::__private::log($crate::LogLevel::Trace, ::core::format_args!($($arg)+)) };
}
