//! Command-line options, and how they become a [`ClientConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

pub use crate::parse_point;
use locus_client::{ClientConfig, Trust};

/// The certificate file `locus serve` writes in its default data directory.
pub const DEFAULT_CERT: &str = "locus-data/cert.der";

/// The address `locus serve` listens on by default.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7878";

/// The Locus demo client: a top-down view of the demo world.
#[derive(Parser, Clone, Debug, PartialEq)]
#[command(name = "client-demo", version, about)]
pub struct Args {
    /// The server's UDP address.
    #[arg(long, default_value = DEFAULT_SERVER)]
    pub server: SocketAddr,
    /// Trust the server whose certificate has this SHA-256 fingerprint (the 64 hex digits `locus serve` printed).
    #[arg(long, value_name = "HEX", conflicts_with = "cert")]
    pub fingerprint: Option<String>,
    /// Trust the server whose certificate is in this file (DER or PEM). Default: `locus-data/cert.der` if it
    /// exists (the file `locus serve` writes when run from the same directory).
    #[arg(long, value_name = "PATH")]
    pub cert: Option<PathBuf>,
    /// Your player's name (3–16 letters, digits, `-`, `_`; set with the `set_name` reducer on entering).
    #[arg(long)]
    pub name: Option<String>,
    /// Where to keep the identity token, so the same player comes back next time.
    /// Default: `client-demo-data/<name>.token` (`default.token` without `--name`).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// On entering, jump to this point (`X,Y` in metres; the `teleport` reducer, a demo convenience).
    #[arg(long, value_name = "X,Y", value_parser = parse_point)]
    pub teleport: Option<(f32, f32)>,
    /// Window width in logical pixels.
    #[arg(long, default_value_t = 1280)]
    pub width: u32,
    /// Window height in logical pixels.
    #[arg(long, default_value_t = 720)]
    pub height: u32,
    /// Save a screenshot (PNG) here once the world around the avatar is drawn.
    #[arg(long, value_name = "PATH")]
    pub screenshot: Option<PathBuf>,
    /// Quit after this many seconds (after the screenshot, if one was asked for).
    #[arg(long, value_name = "N")]
    pub exit_after_secs: Option<f64>,
    /// On quitting, write the client cache (the rows in view, decoded) to this file as JSON.
    #[arg(long, value_name = "PATH")]
    pub dump_cache: Option<PathBuf>,
}

impl Args {
    /// The token file to use.
    #[must_use]
    pub fn token_path(&self) -> PathBuf {
        self.token_file.clone().unwrap_or_else(|| {
            let stem = self
                .name
                .as_deref()
                .unwrap_or("default")
                .to_ascii_lowercase();
            Path::new("client-demo-data").join(format!("{stem}.token"))
        })
    }

    /// `--exit-after-secs` as a duration.
    ///
    /// # Errors
    ///
    /// If it is negative or not finite.
    pub fn exit_after(&self) -> anyhow::Result<Option<Duration>> {
        self.exit_after_secs
            .map(|s| Duration::try_from_secs_f64(s).context("--exit-after-secs"))
            .transpose()
    }

    /// The connection settings: server, trust and token file.
    ///
    /// # Errors
    ///
    /// A fingerprint that does not parse, or no way to trust the server.
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let trust = resolve_trust(
            self.fingerprint.as_deref(),
            self.cert.as_deref(),
            Path::new(DEFAULT_CERT),
        )?;
        let mut config = ClientConfig::new(self.server, trust);
        config.token_file = Some(self.token_path());
        Ok(config)
    }
}

/// How to trust the server: `--fingerprint`, else `--cert`, else `default_cert` if that file exists.
///
/// # Errors
///
/// A fingerprint that does not parse; or none of the three.
pub fn resolve_trust(
    fingerprint: Option<&str>,
    cert: Option<&Path>,
    default_cert: &Path,
) -> anyhow::Result<Trust> {
    if let Some(fp) = fingerprint {
        return Trust::parse_fingerprint(fp).context("--fingerprint");
    }
    if let Some(cert) = cert {
        return Ok(Trust::CertFile(cert.to_owned()));
    }
    if default_cert.is_file() {
        return Ok(Trust::CertFile(default_cert.to_owned()));
    }
    bail!(
        "cannot tell which server to trust: pass --fingerprint HEX (printed by `locus serve`) or --cert PATH, or \
         run from the directory where `locus serve` keeps `{}`",
        default_cert.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "3fa1097c5e2b44d0189a6ef321b7c0558d0ef942a6137bc8e4905f2d61ab3c07";

    #[test]
    fn trust_comes_from_the_fingerprint_then_the_cert_then_the_default_file() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("cert.der");
        assert!(resolve_trust(None, None, &default).is_err());
        std::fs::write(&default, b"not really a certificate").unwrap();
        assert_eq!(
            resolve_trust(None, None, &default).unwrap(),
            Trust::CertFile(default.clone())
        );
        let other = Path::new("/elsewhere/cert.pem");
        assert_eq!(
            resolve_trust(None, Some(other), &default).unwrap(),
            Trust::CertFile(other.to_owned())
        );
        assert!(matches!(
            resolve_trust(Some(FP), Some(other), &default).unwrap(),
            Trust::Fingerprint(fp) if fp[0] == 0x3f
        ));
        assert!(resolve_trust(Some("12ab"), None, &default).is_err());
    }

    #[test]
    fn defaults_match_the_readme_run_command() {
        let args = Args::parse_from(["client-demo", "--name", "Ada", "--fingerprint", FP]);
        assert_eq!(args.server, DEFAULT_SERVER.parse().unwrap());
        assert_eq!(args.token_path(), Path::new("client-demo-data/ada.token"));
        let config = args.client_config().unwrap();
        assert_eq!(config.token_file, Some(args.token_path()));
        assert_eq!(args.exit_after().unwrap(), None);
        let args = Args::parse_from([
            "client-demo",
            "--exit-after-secs",
            "2.5",
            "--token-file",
            "t",
        ]);
        assert_eq!(
            args.exit_after().unwrap(),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(args.token_path(), Path::new("t"));
        assert_eq!(parse_point("2048, 2050.5"), Ok((2048.0, 2050.5)));
        assert!(
            parse_point("2048").is_err()
                && parse_point("x,1").is_err()
                && parse_point("inf,1").is_err()
        );
        assert!(
            Args::try_parse_from(["client-demo", "--fingerprint", FP, "--cert", "c"]).is_err(),
            "one way to trust"
        );
    }
}
