//! The module author's loop, end to end, as a new author runs it: `locus new` writes a project into a temporary
//! directory; `cargo test` there builds the module to wasm and passes its tests (through `locus-testing`); `locus
//! serve --module-crate … --watch` serves it; an edit that adds a table and a reducer is built and published into
//! the running world, and the admin calls the new reducer and queries the new table; a broken edit is reported and
//! the world keeps its module. The admin's commands leave no player in the world.
//!
//! The project's cargo builds go to `locus-new-module` in the workspace's target directory (a directory of their
//! own: the outer cargo holds `target/debug`), kept between runs so a re-run is incremental. Each step's time is
//! printed (`--nocapture`): the loop's figures.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `cargo` in the project, with the project's own target directory and nothing of the outer build's flags.
fn cargo(project: &Path, target: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(project)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    c
}

/// A running `locus serve`, its stdout lines arriving on a channel; killed when dropped.
struct Serving {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Serving {
    /// Wait for a stdout line containing `text` (at most `limit`); the line.
    fn wait_for(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {text:?} from `locus serve` within {limit:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `locus <args>` against the served world.
fn locus(data: &Path, addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(["--server", addr])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run locus")
}

/// `SELECT …` through `locus query --json`: the rows.
fn query(data: &Path, addr: &str, sql: &str) -> Vec<Vec<serde_json::Value>> {
    let out = locus(data, addr, &["query", "--json", sql]);
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    serde_json::from_value(result["rows"].clone()).expect("rows")
}

/// What the edit adds to the new project's `src/lib.rs`: a table and a reducer.
const EDIT: &str = r#"
/// A flower, planted by `plant` (added while the world ran).
#[table(public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Flower {
    /// Assigned on insert.
    #[primary_key]
    #[auto_inc]
    pub id: u64,
    /// How many petals it has.
    pub petals: u32,
}

/// Plant a flower of `petals` petals.
#[reducer]
pub fn plant(ctx: &ReducerContext, petals: u32) -> Result<(), String> {
    if petals == 0 {
        return Err("a flower has petals".into());
    }
    ctx.db.flower().insert(Flower { id: 0, petals })?;
    Ok(())
}
"#;

#[test]
#[expect(clippy::print_stderr, reason = "the loop's timings, for the record")]
fn a_new_module_project_tests_serves_and_takes_edits_live() {
    let loop_started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("my-world");
    let target = locus_host::build::module_target_dir(&workspace(), "locus-new-module");

    // 1. locus new
    let out = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["new", "my-world", "--path"])
        .arg(&project)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("cargo test"), "{}", stdout(&out));
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "README.md",
        "src/lib.rs",
        "tests/module.rs",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    // A second `new` into the same place is refused and changes nothing.
    let again = Command::new(env!("CARGO_BIN_EXE_locus"))
        .args(["new", "my-world", "--path"])
        .arg(&project)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    // 2. cargo test in the project: its tests build the module to wasm and run it.
    let started = Instant::now();
    let test = cargo(&project, &target).arg("test").output().unwrap();
    assert!(
        test.status.success(),
        "cargo test in the new project failed:\n{}\n{}",
        stdout(&test),
        stderr(&test)
    );
    assert!(stdout(&test).contains("3 passed"), "{}", stdout(&test));
    eprintln!(
        "loop: cargo test in the new project: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 3. serve it, watching its sources.
    let data = tmp.path().join("data");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_locus"))
        .arg("serve")
        .arg("--module-crate")
        .arg(&project)
        .arg("--watch")
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"])
        .env("CARGO_TARGET_DIR", &target)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut serving = Serving {
        child,
        lines,
        seen: Vec::new(),
    };
    let listening = serving.wait_for("listening on", Duration::from_secs(300));
    let addr = listening.split_whitespace().last().unwrap().to_owned();
    serving.wait_for("watching", Duration::from_secs(10));
    eprintln!(
        "loop: locus serve --module-crate: listening after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The admin's commands leave no player: the admin is not a player.
    let rows = query(&data, &addr, "SELECT COUNT(*) FROM player");
    assert_eq!(rows, [[serde_json::json!(0)]], "the admin got a player");

    // 4. An edit: a new table and reducer, built and published into the running world.
    let lib = project.join("src/lib.rs");
    let original = std::fs::read_to_string(&lib).unwrap();
    let started = Instant::now();
    std::fs::write(&lib, format!("{original}{EDIT}")).unwrap();
    let published = serving.wait_for("published", Duration::from_secs(300));
    serving.wait_for("new table `flower`", Duration::from_secs(5));
    eprintln!(
        "loop: edit to published: {:.1} s ({published})",
        started.elapsed().as_secs_f64()
    );
    let call = locus(&data, &addr, &["call", "plant", "[5]"]);
    assert!(call.status.success(), "{}", stderr(&call));
    let refused = locus(&data, &addr, &["call", "plant", "[0]"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("a flower has petals"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        query(&data, &addr, "SELECT petals FROM flower"),
        [[serde_json::json!(5)]]
    );

    // 5. A broken edit: reported, and the world keeps the module it runs.
    std::fs::write(&lib, format!("{original}{EDIT}\nfn broken( {{\n")).unwrap();
    serving.wait_for("the build failed", Duration::from_secs(300));
    let call = locus(&data, &addr, &["call", "plant", "[7]"]);
    assert!(call.status.success(), "{}", stderr(&call));
    assert_eq!(
        query(&data, &addr, "SELECT COUNT(*) FROM flower"),
        [[serde_json::json!(2)]]
    );
    eprintln!(
        "loop: the whole loop: {:.1} s",
        loop_started.elapsed().as_secs_f64()
    );
}
