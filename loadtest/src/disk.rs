//! `loadtest disk`: a full disk, and a data directory that turns read-only, under a serving world, on a real file
//! system.
//!
//! ```sh
//! cargo run --release -p loadtest -- disk --json target/loadtest/disk.json
//! ```
//!
//! The command runs itself again inside a new user and mount namespace (`unshare --user --map-root-user --mount`:
//! no root needed), where the data directory is a `tmpfs` of `--size-mb` MiB mounted for the run. Then, for each
//! fault in turn:
//!
//! 1. a server (the `serve-child` process) serves the directory while the bots call `set_name` (as in
//!    `loadtest torture`);
//! 2. the fault: a file fills the file system to its last byte (`full`), or the file system is remounted
//!    read-only (`read-only`);
//! 3. the world must stop taking writes with a clear error: the bots are told why (their `Error` frames and close
//!    reasons are collected) and so is the operator (the server's log and exit status). Read-only: the operator's
//!    `snapshot` command is refused, and the world stops at the first file it must create (its next log
//!    segment), since nothing more could be made durable;
//! 4. the fault is repaired (the file removed; the file system remounted read-write) and the server started again
//!    on the same directory: it must start cleanly and hold every rename the bots were told was done.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::child::{self, ChildServer};
use crate::torture::{
    Ledger, bot, check_player, lock, module_of, player_names, say, server_options,
};

/// Set in the re-run inside the namespace.
const INSIDE: &str = "LOCUS_LOADTEST_DISK_NAMESPACE";

/// Command line of `loadtest disk`.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct DiskArgs {
    /// Bots calling reducers.
    #[arg(long, default_value_t = 12)]
    pub(crate) players: u32,
    /// Size of the data directory's file system, MiB.
    #[arg(long, default_value_t = 64)]
    pub(crate) size_mb: u32,
    /// Write the report as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

/// What happened with one fault.
#[derive(Debug, Serialize)]
struct Fault {
    fault: &'static str,
    /// How long after the fault the server stopped (its process exited), ms; `None` if it kept running.
    stopped_after_ms: Option<u64>,
    /// The server process's exit status, as text.
    exit: Option<String>,
    /// What the bots were told (distinct messages).
    clients_told: Vec<String>,
    /// The server's log lines at error level during the fault.
    operator_told: Vec<String>,
    /// Renames acknowledged since the previous fault (or the start), each checked after the restart.
    acked_renames: u64,
    /// Read-only: the operator's `snapshot` command's refusal (the world itself goes on: its open log stays
    /// writable).
    snapshot_refused: Option<Option<String>>,
    /// The restart after the repair, ms (process start to listening).
    restart_ms: u64,
    violations: Vec<String>,
}

/// `loadtest disk`.
pub(crate) fn disk(args: &DiskArgs) -> anyhow::Result<()> {
    if std::env::var_os(INSIDE).is_none() {
        let exe = std::env::current_exe()?;
        let status = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
                "--",
            ])
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env(INSIDE, "1")
            .status()
            .context("running unshare (util-linux) for a mount namespace of our own")?;
        if !status.success() {
            bail!("the run in its own mount namespace failed: {status}");
        }
        return Ok(());
    }
    let scratch = tempfile::Builder::new().prefix("locus-disk-").tempdir()?;
    let data = scratch.path().join("data");
    std::fs::create_dir(&data)?;
    mount(
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={}m", args.size_mb),
            "tmpfs",
        ],
        &data,
    )?;
    let demo = scratch.path().join("demo.wasm");
    std::fs::write(&demo, child::build_demo_module()?)?;
    let options = server_options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ledgers: Vec<Arc<Mutex<Ledger>>> = (0..args.players)
        .map(|_| Arc::new(Mutex::new(Ledger::default())))
        .collect();
    let log = scratch.path().join("server.log");
    let module_of = |dir: &Path| module_of(dir, &demo);
    let mut faults = Vec::new();
    let mut acked_before = 0;
    let mut server =
        ChildServer::start_logging(&data, Some(&module_of(&data)), &options, Some(&log))?;
    for fault in ["full", "read-only"] {
        // Serve, with the bots calling.
        let stop = Arc::new(AtomicBool::new(false));
        let welcomed = Arc::new(AtomicUsize::new(0));
        let (addr, fingerprint) = (server.addr, server.fingerprint);
        for l in &ledgers {
            lock(l).told = None;
        }
        let handles: Vec<_> = ledgers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (l, stop, welcomed) = (l.clone(), stop.clone(), welcomed.clone());
                rt.spawn(
                    async move { bot(i, addr, fingerprint, l, stop, welcomed, i as u64).await },
                )
            })
            .collect();
        let t = Instant::now();
        while welcomed.load(Ordering::Relaxed) < ledgers.len() {
            if t.elapsed() > Duration::from_secs(60) {
                bail!("{fault}: the bots did not all connect");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_secs(2));
        let log_before = std::fs::read_to_string(&log).unwrap_or_default().len();
        // The fault.
        let filler = data.join("filler");
        let mut snapshot_refused = None;
        match fault {
            "full" => fill(&filler)?,
            _ => {
                // A read-only mount stacked on the directory: the files the server has open stay writable (they
                // belong to the mount below), every file it opens from now on is on the read-only one. (A
                // file system with files open for writing cannot be remounted read-only.)
                mount(&["--bind"], &data)
                    .and_then(|()| mount(&["-o", "remount,bind,ro"], &data))?;
                snapshot_refused = Some(
                    server
                        .command("snapshot", Duration::from_secs(30))
                        .err()
                        .map(|e| e.to_string()),
                );
            }
        }
        let at = Instant::now();
        let mut stopped_after_ms = None;
        while at.elapsed() < Duration::from_secs(if fault == "full" { 10 } else { 3 }) {
            if server.exited().is_some() {
                stopped_after_ms = Some(at.elapsed().as_millis() as u64);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let exit = server.exited().map(|s| s.to_string());
        // What the bots were told, then their ledgers as of now.
        std::thread::sleep(Duration::from_millis(500));
        let mut clients_told: Vec<String> = ledgers
            .iter()
            .filter_map(|l| lock(l).told.clone())
            .collect();
        clients_told.sort();
        clients_told.dedup();
        let frozen: Vec<(u64, u64)> = ledgers.iter().map(|l| lock(l).renames()).collect();
        let acked_total: u64 = ledgers.iter().map(|l| lock(l).acked_calls()).sum();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let _ = rt.block_on(h);
        }
        server.kill();
        let operator_told: Vec<String> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .get(log_before..)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ERROR") || l.starts_with("Error"))
            .map(|l| strip_ansi(l).chars().take(300).collect())
            .collect();
        // Repair, restart, check.
        match fault {
            "full" => std::fs::remove_file(&filler)?,
            _ => umount(&data)?,
        }
        let started = Instant::now();
        server = ChildServer::start_logging(&data, Some(&module_of(&data)), &options, Some(&log))
            .with_context(|| format!("restarting after the {fault} fault was repaired"))?;
        let restart_ms = started.elapsed().as_millis() as u64;
        let names = player_names(&mut server)?;
        let mut violations = Vec::new();
        let acked_renames = acked_total - acked_before;
        acked_before = acked_total;
        for (i, l) in ledgers.iter().enumerate() {
            let (sent, acked) = frozen[i];
            let l = lock(l);
            let Some(identity) = l.identity() else {
                continue;
            };
            let found: Vec<&String> = names.get(identity).into_iter().flatten().collect();
            if let Err(why) = check_player(i, &found, acked, sent) {
                violations.push(format!("{fault}: {why}"));
            }
        }
        say(format!(
            "{fault}: the server {}; the snapshot: {}; clients were told {clients_told:?}; the operator {operator_told:?}; restarted in {restart_ms} ms; {acked_renames} acknowledged renames checked, {} violations",
            stopped_after_ms.map_or_else(
                || "kept running".to_owned(),
                |ms| format!(
                    "stopped {ms} ms after the fault ({})",
                    exit.as_deref().unwrap_or("?")
                )
            ),
            match &snapshot_refused {
                None => "not asked".to_owned(),
                Some(None) => "WRITTEN".to_owned(),
                Some(Some(e)) => e.clone(),
            },
            violations.len()
        ));
        faults.push(Fault {
            fault,
            stopped_after_ms,
            exit,
            clients_told,
            operator_told,
            snapshot_refused,
            acked_renames,
            restart_ms,
            violations,
        });
    }
    server.stop();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&faults)?)?;
    }
    let bad: Vec<&String> = faults.iter().flat_map(|f| &f.violations).collect();
    if !bad.is_empty() {
        bail!("acknowledged effects were lost: {bad:?}");
    }
    if let Some(f) = faults
        .iter()
        .find(|f| f.stopped_after_ms.is_none() || f.clients_told.is_empty())
    {
        bail!(
            "{}: the world did not stop with a clear error to its clients",
            f.fault
        );
    }
    Ok(())
}

/// Write zeros to `path` until the file system is full.
fn fill(path: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    let block = vec![0u8; 1 << 16];
    loop {
        match f.write(&block) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => return Ok(()), // ENOSPC
            Err(e) => return Err(e.into()),
        }
    }
}

fn umount(dir: &Path) -> anyhow::Result<()> {
    let status = Command::new("umount")
        .arg(dir)
        .status()
        .context("running umount")?;
    if !status.success() {
        bail!("umount {} failed: {status}", dir.display());
    }
    Ok(())
}

/// `mount ARGS DIR` (`--bind`: `mount --bind DIR DIR`).
fn mount(args: &[&str], dir: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new("mount");
    cmd.args(args);
    if args == ["--bind"] {
        cmd.arg(dir);
    }
    let status = cmd.arg(dir).status().context("running mount")?;
    if !status.success() {
        bail!("mount {args:?} {} failed: {status}", dir.display());
    }
    Ok(())
}

/// A log line without its terminal colours.
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
