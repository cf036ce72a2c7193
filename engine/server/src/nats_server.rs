//! Running a local `nats-server` with JetStream: for `locus cluster` (a world's regions on one machine, for
//! development) and for the multi-region tests. Production runs its NATS servers itself (`engine/docs/regions.md`).

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Why a `nats-server` did not start.
#[derive(Debug, Error)]
pub enum NatsStartError {
    /// `nats-server` is not on `PATH`.
    #[error(
        "nats-server is not installed (Debian and Ubuntu: `apt-get install nats-server`; elsewhere see \
         https://docs.nats.io/running-a-nats-service/introduction/installation)"
    )]
    NotInstalled,
    /// It could not be run, or no port was free.
    #[error("cannot run nats-server: {0}")]
    Spawn(#[from] std::io::Error),
    /// It ran but did not accept connections in time (or exited).
    #[error("nats-server did not start listening on port {port} within {waited:?}")]
    NotListening {
        /// The port.
        port: u16,
        /// How long it was given.
        waited: Duration,
    },
}

/// A `nats-server -js` child process on loopback, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    program: PathBuf,
    port: u16,
    store: PathBuf,
}

/// `nats-server` on `PATH`, if any.
#[must_use]
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// Whether a test that needs `nats-server` should run: `true` if it is installed; otherwise a loud message on
/// stderr that `test` was skipped and `false`, or a panic if the environment variable `LOCUS_REQUIRE_NATS` is set
/// (not empty or `0`), as CI sets it, so that a skip cannot pass unnoticed there.
///
/// # Panics
///
/// As said, when required and missing.
#[must_use]
pub fn available_or_skip(test: &str) -> bool {
    if find().is_some() {
        return true;
    }
    let required =
        std::env::var_os("LOCUS_REQUIRE_NATS").is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{test}: {} and LOCUS_REQUIRE_NATS is set",
        NatsStartError::NotInstalled
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n\n*** SKIPPED {test}: {} ***\n*** Set LOCUS_REQUIRE_NATS=1 to make this a failure. ***\n\n",
        NatsStartError::NotInstalled
    );
    false
}

impl NatsServer {
    /// Start `nats-server -js` on `127.0.0.1:port` (0: a free port) keeping its JetStream store in `store`, and
    /// wait until it accepts connections.
    ///
    /// # Errors
    ///
    /// A [`NatsStartError`].
    pub fn start(store: &Path, port: u16) -> Result<NatsServer, NatsStartError> {
        let program = find().ok_or(NatsStartError::NotInstalled)?;
        let port = match port {
            0 => TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
            p => p,
        };
        let mut server = NatsServer {
            child: Self::spawn(&program, store, port)?,
            program,
            port,
            store: store.to_owned(),
        };
        server.wait_listening()?;
        Ok(server)
    }

    fn spawn(program: &Path, store: &Path, port: u16) -> std::io::Result<Child> {
        std::fs::create_dir_all(store)?;
        Command::new(program)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }

    fn wait_listening(&mut self) -> Result<(), NatsStartError> {
        let waited = Duration::from_secs(20);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if start.elapsed() > waited || self.child.try_wait()?.is_some() {
                return Err(NatsStartError::NotListening {
                    port: self.port,
                    waited,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Its URL, `nats://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kill it with SIGKILL (as a crash would) and wait for it to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again after [`NatsServer::kill`], on the same port and store.
    ///
    /// # Errors
    ///
    /// A [`NatsStartError`].
    pub fn restart(&mut self) -> Result<(), NatsStartError> {
        self.child = Self::spawn(&self.program, &self.store, self.port)?;
        self.wait_listening()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
