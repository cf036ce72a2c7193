//! Running the `loadtest` binary from a test and reading its JSON report.

#![allow(dead_code, reason = "each test file uses what it needs")]

use std::process::Command;

use serde_json::Value;

/// A finished run: its JSON report and, for assertion messages, what it printed.
pub(crate) struct Run {
    /// The report (`--json`).
    pub(crate) report: Value,
    /// `stdout:\n…`, for assertion messages.
    pub(crate) context: String,
}

/// Run `loadtest ARGS --json FILE`, assert that it succeeded, and read the report.
pub(crate) fn run(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run the loadtest binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "loadtest {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let report =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    Run {
        report,
        context: format!("stdout:\n{stdout}"),
    }
}

/// The unsigned number at `path` of `v`.
pub(crate) fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in the report"))
}
