//! Library side of `ukvtpm measure` and `ukvtpm verify` (DESIGN §9): each returns the text to
//! print, so `cli/src/main.rs` only parses flags.

use std::path::{Path, PathBuf};

use ukvtpm_attest::verify::{Certs, VerifyError, hex, parse_certificate, verify};

use crate::manifest::{BuildInputs, Manifest, ManifestError, ManifestOptions, MinTcb, parse_hex};
use crate::measure::{LaunchParams, MeasureError, VcpuType, snp_launch_digest_file, to_hex};

/// Errors of the CLI functions; each message says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Measuring failed.
    #[error(transparent)]
    Measure(#[from] MeasureError),
    /// Manifest problem.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Verification refused the report.
    #[error("report REFUSED: {0}")]
    Verify(VerifyError),
    /// File I/O.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause (shown in the message, not chained, so it is printed once).
        cause: std::io::Error,
    },
    /// No VCEK certificate available.
    #[error(
        "no VCEK certificate: pass --certs DIR containing vcek.pem or vcek.der (for example from \
         `snpguest fetch vcek` on the host, or the extended report's certificate table); \
         ark/ask files are optional, the AMD roots for Milan, Genoa and Turin are built in"
    )]
    NoVcek,
    /// A hex argument of the wrong shape.
    #[error("{what} must be {len} hex digits")]
    BadHex {
        /// Argument name.
        what: &'static str,
        /// Expected digits.
        len: usize,
    },
}

impl From<VerifyError> for CliError {
    fn from(e: VerifyError) -> Self {
        CliError::Verify(e)
    }
}

/// `ukvtpm measure IMG --vcpus N --vcpu-type T [--guest-features F]`: the launch digest in hex.
///
/// # Errors
/// Unknown vCPU type, unreadable or non-SNP image.
pub fn measure(
    image: &Path,
    vcpus: u32,
    vcpu_type: &str,
    guest_features: u64,
) -> Result<String, CliError> {
    let vcpu_type: VcpuType = vcpu_type.parse()?;
    let d = snp_launch_digest_file(
        image,
        &LaunchParams {
            vcpus,
            vcpu_type,
            guest_features,
        },
    )?;
    Ok(to_hex(&d))
}

/// Measures `image` and writes `manifest.json` to `out` (for `ukvtpm build`), with build inputs
/// from `workspace_root`, default options (see [`ManifestOptions::new`]) and `min_tcb`. Returns
/// the JSON.
///
/// # Errors
/// Unreadable or non-SNP image, missing workspace files, write errors.
pub fn write_manifest(
    image: &Path,
    out: &Path,
    workspace_root: &Path,
    min_tcb: MinTcb,
) -> Result<String, CliError> {
    let bytes = read(image, "image")?;
    let mut opts = ManifestOptions::new(BuildInputs::from_workspace(workspace_root)?);
    opts.min_tcb = min_tcb;
    let m = Manifest::for_image(&bytes, &opts)?;
    m.write(out)?;
    Ok(m.to_json()?)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|cause| CliError::Io {
        what: format!("reading {what} {}", path.display()),
        cause,
    })
}

/// First existing `dir/stem.{pem,der,crt,cer}`.
fn find_cert(dir: &Path, stem: &str) -> Option<PathBuf> {
    ["pem", "der", "crt", "cer"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
}

/// Loads `vcek`, and optionally `ask` and `ark`, from `dir` (PEM or DER; names as written by
/// `snpguest fetch`).
///
/// # Errors
/// [`CliError::NoVcek`], read and parse errors.
pub fn load_certs(dir: &Path) -> Result<Certs, CliError> {
    let vcek_path = find_cert(dir, "vcek")
        .or_else(|| find_cert(dir, "vlek"))
        .ok_or(CliError::NoVcek)?;
    let vcek = parse_certificate("VCEK", &read(&vcek_path, "VCEK certificate")?)?;
    let opt = |stem: &str, what: &'static str| -> Result<_, CliError> {
        match find_cert(dir, stem) {
            Some(p) => Ok(Some(parse_certificate(what, &read(&p, what)?)?)),
            None => Ok(None),
        }
    };
    Ok(Certs {
        vcek,
        ask: opt("ask", "ASK")?,
        ark: opt("ark", "ARK")?,
    })
}

/// `ukvtpm verify --manifest M --report R [--certs DIR] [--host-data HEX] [--report-data HEX]`.
/// Returns a summary on success.
///
/// # Errors
/// [`CliError::Verify`] with the reason the report was refused, or input errors.
pub fn verify_report(
    manifest: &Path,
    report: &Path,
    certs_dir: Option<&Path>,
    host_data: Option<&str>,
    report_data: Option<&str>,
) -> Result<String, CliError> {
    let m = Manifest::read(manifest)?;
    let mut pin = m.pin()?;
    if let Some(h) = host_data {
        pin.host_data = Some(parse_hex::<32>(h).ok_or(CliError::BadHex {
            what: "--host-data",
            len: 64,
        })?);
    }
    if let Some(r) = report_data {
        pin.report_data = Some(parse_hex::<64>(r).ok_or(CliError::BadHex {
            what: "--report-data",
            len: 128,
        })?);
    }
    let report_bytes = read(report, "attestation report")?;
    let certs = load_certs(certs_dir.ok_or(CliError::NoVcek)?)?;
    let v = verify(&report_bytes, &pin, &certs)?;
    let which = m
        .measurements
        .iter()
        .filter(|x| x.digest == hex(&v.report.measurement))
        .map(|x| format!("{} vCPU {}", x.vcpus, x.vcpu_type))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "report OK\n  chain:       AMD {} ARK -> ASK -> VCEK\n  measurement: {} ({which})\n  \
         policy:      {:#x}\n  vmpl:        {}\n  tcb:         {:?}\n  host_data:   {}\n  \
         report_data: {}",
        v.anchor,
        hex(&v.report.measurement),
        v.report.policy.0,
        v.report.vmpl,
        v.tcb,
        hex(&v.report.host_data),
        hex(&v.report.report_data),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    #[test]
    fn measure_prints_golden_hex() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("img.bin");
        std::fs::write(&p, synthetic::build(&synthetic::Params::default())).expect("write");
        assert_eq!(
            measure(&p, 2, "EPYC-v4", 0x1).expect("measure"),
            "a39ebb332cfd4e574bf09989b0a85b8a90d51f0d0f2774ad25e44dcfe996c2861dbcf955f7ef881838eab716779e5571"
        );
        let e = measure(&p, 1, "i486", 0x1).unwrap_err();
        assert!(e.to_string().contains("unknown vCPU type"));
        let e = measure(&dir.path().join("missing"), 1, "EPYC-v4", 0x1).unwrap_err();
        assert!(e.to_string().contains("reading image"));
    }

    #[test]
    fn writes_manifest_for_an_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("img.bin");
        std::fs::write(&img, synthetic::build(&synthetic::Params::default())).expect("write");
        let out = dir.path().join("manifest.json");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let json = write_manifest(&img, &out, &root, MinTcb::default()).expect("manifest");
        assert_eq!(std::fs::read_to_string(&out).expect("read back"), json);
        assert!(Manifest::from_json(&json).is_ok());
    }

    #[test]
    fn verify_needs_certs_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = synthetic::build(&synthetic::Params::default());
        let m = Manifest::for_image(
            &img,
            &crate::manifest::ManifestOptions::new(crate::manifest::BuildInputs {
                cargo_lock_sha256: String::new(),
                toolchain: "x".into(),
            }),
        )
        .expect("manifest");
        let mp = dir.path().join("manifest.json");
        m.write(&mp).expect("write manifest");
        let rp = dir.path().join("report.bin");
        std::fs::write(&rp, [0u8; 1184]).expect("write report");
        let e = verify_report(&mp, &rp, None, None, None).unwrap_err();
        assert!(matches!(e, CliError::NoVcek), "{e}");
        let e = verify_report(&mp, &rp, Some(dir.path()), Some("zz"), None).unwrap_err();
        assert!(matches!(e, CliError::BadHex { .. }), "{e}");
    }
}
