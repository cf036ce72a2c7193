//! [`Backtrace`]: a trapped reducer's wasm backtrace, for the server's log.
//!
//! Wasmtime's own rendering of a trap (`{:#}` of its error) prints every frame with its module offset and the
//! symbol demangled *with* its hash (`game_module::items::craft::h2fabb87ee398302e`, `std[a543996e6e7dbf1e]::…`),
//! including the dozen frames of the panic runtime above the reducer. This one keeps what a module author reads:
//! each function demangled without hashes (`rustc-demangle`'s alternate form; C++ and other names stay as they
//! are), innermost first, and for a panic without the runtime's frames (see [`Backtrace::from_wasm`]).
//!
//! A backtrace is for operators: the host never puts it in a [`CallError`](crate::CallError)'s message, and the
//! server writes it only to its own log.

use std::fmt;

/// One frame of a [`Backtrace`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The function, demangled without its hash (`locus_test_module::panic_after_write`), or
    /// `<wasm function N>` when the module has no name for it.
    pub function: String,
    /// The frame's offset in the module's bytes, if wasmtime knows it.
    pub offset: Option<usize>,
}

/// A wasm backtrace with demangled function names, innermost frame first.
///
/// Its [`Display`](fmt::Display) is one frame a line under a `wasm backtrace:` header:
///
/// ```text
/// wasm backtrace:
///     0: locus_test_module::panic_after_write (at 0x9bd27)
///     1: locus_test_module::panic_after_write::__invoke (at 0xa3723)
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backtrace {
    /// The frames, innermost first.
    pub frames: Vec<Frame>,
}

/// Names of the functions a Rust panic runs through between `panic!` and the trap (demangled, hash-free): the
/// panic runtime of `core` and `std`, and the symbols rustc gives its entry points (`__rustc::…`).
const PANIC_RUNTIME: &[&str] = &[
    "__rustc::",
    "core::panicking::",
    "std::panicking::",
    "std::sys::backtrace::",
    "rust_begin_unwind",
    "rust_panic",
    "__rust_start_panic",
    "__rust_abort",
];

impl Backtrace {
    /// The backtrace of a trap, demangled. For a `panic`, the frames of the panic runtime at the top (everything
    /// from the trap down to `core::panicking::panic_fmt` and the like, [`PANIC_RUNTIME`]) are left out, so the
    /// first frame is the function that panicked.
    #[must_use]
    pub(crate) fn from_wasm(trace: &wasmtime::WasmBacktrace, panic: bool) -> Backtrace {
        let mut frames: Vec<Frame> = trace
            .frames()
            .iter()
            .map(|f| Frame {
                function: match f.func_name() {
                    Some(name) => demangle(name),
                    None => format!("<wasm function {}>", f.func_index()),
                },
                offset: f.module_offset(),
            })
            .collect();
        if panic {
            let runtime = frames
                .iter()
                .take_while(|f| PANIC_RUNTIME.iter().any(|p| f.function.starts_with(p)))
                .count();
            // A module whose every frame looks like the runtime's keeps them all: better too much than nothing.
            if runtime < frames.len() {
                frames.drain(..runtime);
            }
        }
        Backtrace { frames }
    }
}

/// `name` demangled as Rust (legacy or v0 mangling) without its hash, or as it is.
fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(d) => format!("{d:#}"),
        Err(_) => name.to_owned(),
    }
}

impl fmt::Display for Backtrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wasm backtrace:")?;
        for (i, frame) in self.frames.iter().enumerate() {
            write!(f, "\n  {i:>3}: {}", frame.function)?;
            if let Some(offset) = frame.offset {
                write!(f, " (at {offset:#x})")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_names_lose_their_hashes_and_others_stay() {
        assert_eq!(
            demangle("_ZN17locus_test_module17panic_after_write17h2fabb87ee398302eE"),
            "locus_test_module::panic_after_write"
        );
        assert_eq!(
            demangle("_RNvNtCs1234_4core9panicking9panic_fmt"),
            "core::panicking::panic_fmt"
        );
        assert_eq!(demangle("__locus_reducer_craft"), "__locus_reducer_craft");
    }

    #[test]
    fn it_displays_one_frame_a_line() {
        let bt = Backtrace {
            frames: vec![
                Frame {
                    function: "m::f".into(),
                    offset: Some(0x10),
                },
                Frame {
                    function: "<wasm function 3>".into(),
                    offset: None,
                },
            ],
        };
        assert_eq!(
            bt.to_string(),
            "wasm backtrace:\n    0: m::f (at 0x10)\n    1: <wasm function 3>"
        );
    }
}
