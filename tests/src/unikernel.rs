//! The unikernel as a test server: the release image (built once per test process, or
//! `$UKVTPM_IMAGE`) booted in QEMU through the `ukvtpm-qemu` launcher, one fresh guest per
//! server, KVM when a probe boot works and TCG otherwise (decided once and printed).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ukvtpm_qemu::args::{Accel, DEFAULT_QEMU};
use ukvtpm_qemu::backend::{self, Backend, Options};

use crate::raw::{Client, Framing};

#[allow(dead_code)]
#[path = "../../xtask/src/image.rs"]
mod image;

/// How long a guest gets to print its ready line (TCG boots in ≈ 0.2 s; generous for a loaded
/// machine running many guests at once).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The image under test: `$UKVTPM_IMAGE`, else a release build made once per test process in
/// `<target>/unikernel-image` (its own target directory, so the build never waits on the lock
/// of the cargo that runs the tests).
pub fn image() -> Result<PathBuf> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| build_image().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build_image() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(backend::IMAGE_ENV) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("{}={} does not exist", backend::IMAGE_ENV, p.display());
        }
        return Ok(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("unikernel-image");
    image::build(true, &target).context("building the unikernel image")
}

/// KVM if a probe boot reaches the ready line, else TCG (decided once per process, printed).
pub fn accel() -> Result<Accel> {
    static ACCEL: OnceLock<Accel> = OnceLock::new();
    let image = image()?;
    Ok(*ACCEL.get_or_init(|| {
        let choice = ukvtpm_qemu::accel::choose(
            None,
            &PathBuf::from(DEFAULT_QEMU),
            &image,
            ukvtpm_qemu::accel::PROBE_TIMEOUT,
        );
        eprintln!(
            "unikernel tests run under {}{}",
            choice.accel,
            choice
                .warning
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        );
        choice.accel
    }))
}

/// Boots a fresh guest with host `port` forwarded to its TPM port and `port + 1` to its control
/// port, waits for the ready line, and sends Startup(CLEAR) (as `ukvtpm serve` and swtpm with
/// `startup-clear` do by themselves).
pub fn boot(port: u16) -> Result<Backend> {
    boot_with(port, 16)
}

/// [`boot`] with `memory_mib` of guest RAM (the boot benchmark bisects it).
pub fn boot_with(port: u16, memory_mib: u32) -> Result<Backend> {
    let image = image()?;
    let accel = accel()?;
    let opts = Options {
        port,
        memory_mib,
        accel: Some(accel),
        image: Some(image.clone()),
        ready_timeout: READY_TIMEOUT,
        ..Options::default()
    };
    let cmd = backend::command(&opts, &image, accel);
    let backend = backend::spawn(&cmd, opts.ready_timeout)
        .with_context(|| format!("booting {}", cmd.display()))?;
    startup_clear(port).context("Startup(CLEAR) after boot")?;
    Ok(backend)
}

fn startup_clear(port: u16) -> Result<()> {
    const STARTUP_CLEAR: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, 0];
    let mut client = Client::connect(port, Framing::Plain)?;
    client.execute(&STARTUP_CLEAR)?.success()?;
    Ok(())
}
