//! `manifest.json`: what a tenant pins (DESIGN §7).
//!
//! It records the image hash, the SNP launch digest for 1, 2 and 4 vCPUs per vCPU type, the
//! guest policy and the minimum TCB the verifier requires, the VMSA guest features the digests
//! assume, and the build inputs (Cargo.lock hash, toolchain) so a rebuild can be compared.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ukvtpm_attest::verify::Pin;
use ukvtpm_attest::{GuestPolicy, TcbVersion};

use crate::measure::{
    DEFAULT_GUEST_FEATURES, LaunchParams, MeasureError, VcpuType, snp_launch_digest, to_hex,
};

/// Current manifest format.
pub const FORMAT: u32 = 1;

/// vCPU counts the manifest pins.
pub const VCPU_COUNTS: [u32; 3] = [1, 2, 4];

/// vCPU types measured by default.
pub const DEFAULT_VCPU_TYPES: [VcpuType; 3] =
    [VcpuType::EpycV4, VcpuType::EpycMilan, VcpuType::EpycGenoa];

/// One pinned launch digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    /// `-smp`.
    pub vcpus: u32,
    /// `-cpu`.
    pub vcpu_type: VcpuType,
    /// Launch digest, 96 hex digits.
    pub digest: String,
}

/// Minimum platform TCB (per-component SVNs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MinTcb {
    /// PSP bootloader SVN.
    pub bootloader: u8,
    /// PSP OS SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode patch level.
    pub microcode: u8,
    /// FMC SVN (Turin), when required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}

impl MinTcb {
    /// True when every component is zero: the pin then accepts any platform TCB.
    pub fn is_zero(&self) -> bool {
        *self == MinTcb::default()
    }
}

/// Parses `bootloader=N,tee=N,snp=N,microcode=N[,fmc=N]` (any order; components left out are
/// zero), the form `ukvtpm build --min-tcb` takes. The SVNs are those of an AMD security
/// bulletin or of `snpguest display report` on an up-to-date host (REPORTED_TCB).
impl core::str::FromStr for MinTcb {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut tcb = MinTcb::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected COMPONENT=SVN"))?;
            let svn: u8 = value
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the SVN must be a number 0..=255"))?;
            match name.trim() {
                "bootloader" | "bl" => tcb.bootloader = svn,
                "tee" => tcb.tee = svn,
                "snp" => tcb.snp = svn,
                "microcode" | "ucode" => tcb.microcode = svn,
                "fmc" => tcb.fmc = Some(svn),
                other => {
                    return Err(format!(
                        "unknown TCB component `{other}` (bootloader, tee, snp, microcode, fmc)"
                    ));
                }
            }
        }
        Ok(tcb)
    }
}

impl From<MinTcb> for TcbVersion {
    fn from(m: MinTcb) -> Self {
        TcbVersion {
            fmc: m.fmc,
            bootloader: m.bootloader,
            tee: m.tee,
            snp: m.snp,
            microcode: m.microcode,
        }
    }
}

/// Inputs that determine the image bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInputs {
    /// SHA-256 of the workspace Cargo.lock.
    pub cargo_lock_sha256: String,
    /// Toolchain channel from rust-toolchain.toml.
    pub toolchain: String,
}

impl BuildInputs {
    /// Reads `Cargo.lock` and `rust-toolchain.toml` in `workspace_root`.
    ///
    /// # Errors
    /// When either file cannot be read or has no `channel`.
    pub fn from_workspace(workspace_root: &Path) -> Result<Self, ManifestError> {
        let read = |name: &str| {
            let p = workspace_root.join(name);
            std::fs::read(&p).map_err(|cause| ManifestError::Io {
                what: format!("reading {}", p.display()),
                cause,
            })
        };
        let lock = read("Cargo.lock")?;
        let tc = String::from_utf8_lossy(&read("rust-toolchain.toml")?).into_owned();
        let toolchain = tc
            .lines()
            .filter_map(|l| l.trim().strip_prefix("channel"))
            .filter_map(|rest| rest.trim().strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .next()
            .ok_or(ManifestError::NoToolchain)?;
        Ok(Self {
            cargo_lock_sha256: to_hex(&Sha256::digest(&lock)),
            toolchain,
        })
    }
}

/// The pinned description of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// SHA-256 of the image, hex.
    pub image_sha256: String,
    /// Image size in bytes.
    pub image_size: u64,
    /// VMSA SEV_FEATURES the digests assume.
    pub guest_features: u64,
    /// Launch digests.
    pub measurements: Vec<Measurement>,
    /// Guest policy the launcher uses and the verifier requires.
    pub guest_policy: u64,
    /// VMPL the backend requests its reports at.
    pub vmpl: u32,
    /// Minimum REPORTED_TCB.
    pub min_tcb: MinTcb,
    /// Build inputs.
    pub build: BuildInputs,
}

/// Choices that enter the manifest besides the image.
#[derive(Debug, Clone)]
pub struct ManifestOptions {
    /// vCPU types to measure.
    pub vcpu_types: Vec<VcpuType>,
    /// Guest features.
    pub guest_features: u64,
    /// Guest policy.
    pub guest_policy: GuestPolicy,
    /// Minimum TCB.
    pub min_tcb: MinTcb,
    /// Build inputs.
    pub build: BuildInputs,
}

impl ManifestOptions {
    /// Defaults: EPYC-v4/Milan/Genoa, features 0x1, policy 0x30000, TCB minimum all zero (the
    /// tenant raises it to the current AMD security bulletin level), given build inputs.
    pub fn new(build: BuildInputs) -> Self {
        Self {
            vcpu_types: DEFAULT_VCPU_TYPES.to_vec(),
            guest_features: DEFAULT_GUEST_FEATURES,
            guest_policy: GuestPolicy::UKVTPM_DEFAULT,
            min_tcb: MinTcb::default(),
            build,
        }
    }
}

/// Manifest errors.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Measuring failed.
    #[error(transparent)]
    Measure(#[from] MeasureError),
    /// File I/O.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause (shown in the message, not chained, so it is printed once).
        cause: std::io::Error,
    },
    /// JSON.
    #[error("manifest JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// rust-toolchain.toml without a channel.
    #[error("rust-toolchain.toml has no `channel = \"…\"` line")]
    NoToolchain,
    /// Unsupported format.
    #[error("manifest format {0} is not supported (expected {FORMAT})")]
    Format(u32),
    /// A digest that is not 96 hex digits.
    #[error("manifest digest {0:?} is not 96 hex digits")]
    BadDigest(String),
    /// Policy allows debugging.
    #[error("manifest guest_policy {0:#x} allows debugging; refusing to pin it")]
    DebugPolicy(u64),
}

impl Manifest {
    /// Measures `image` for [`VCPU_COUNTS`] × `opts.vcpu_types`.
    ///
    /// # Errors
    /// [`ManifestError::Measure`] when the image cannot be measured.
    pub fn for_image(image: &[u8], opts: &ManifestOptions) -> Result<Self, ManifestError> {
        let mut measurements = Vec::new();
        for &vcpu_type in &opts.vcpu_types {
            for vcpus in VCPU_COUNTS {
                let p = LaunchParams {
                    vcpus,
                    vcpu_type,
                    guest_features: opts.guest_features,
                };
                measurements.push(Measurement {
                    vcpus,
                    vcpu_type,
                    digest: to_hex(&snp_launch_digest(image, &p)?),
                });
            }
        }
        Ok(Self {
            format: FORMAT,
            image_sha256: to_hex(&Sha256::digest(image)),
            image_size: image.len() as u64,
            guest_features: opts.guest_features,
            measurements,
            guest_policy: opts.guest_policy.0,
            vmpl: 0,
            min_tcb: opts.min_tcb,
            build: opts.build.clone(),
        })
    }

    /// Pretty JSON with a trailing newline.
    ///
    /// # Errors
    /// Serialization errors (not expected).
    pub fn to_json(&self) -> Result<String, ManifestError> {
        let mut s = serde_json::to_string_pretty(self)?;
        s.push('\n');
        Ok(s)
    }

    /// Parses and checks a manifest.
    ///
    /// # Errors
    /// Invalid JSON, unknown format, malformed digests, debug policy.
    pub fn from_json(s: &str) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_str(s)?;
        if m.format != FORMAT {
            return Err(ManifestError::Format(m.format));
        }
        for d in &m.measurements {
            parse_digest(&d.digest)?;
        }
        if GuestPolicy(m.guest_policy).debug_allowed() {
            return Err(ManifestError::DebugPolicy(m.guest_policy));
        }
        Ok(m)
    }

    /// Writes pretty JSON to `path`.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn write(&self, path: &Path) -> Result<(), ManifestError> {
        std::fs::write(path, self.to_json()?).map_err(|cause| ManifestError::Io {
            what: format!("writing {}", path.display()),
            cause,
        })
    }

    /// Reads and checks `path`.
    ///
    /// # Errors
    /// As [`Manifest::from_json`], plus read errors.
    pub fn read(path: &Path) -> Result<Self, ManifestError> {
        let s = std::fs::read_to_string(path).map_err(|cause| ManifestError::Io {
            what: format!("reading manifest {}", path.display()),
            cause,
        })?;
        Self::from_json(&s)
    }

    /// The verifier pin: any pinned digest, the policy, VMPL and minimum TCB; report/host data
    /// are left to the caller.
    ///
    /// # Errors
    /// [`ManifestError::BadDigest`].
    pub fn pin(&self) -> Result<Pin, ManifestError> {
        let mut measurements = Vec::new();
        for m in &self.measurements {
            let d = parse_digest(&m.digest)?;
            if !measurements.contains(&d) {
                measurements.push(d);
            }
        }
        Ok(Pin {
            measurements,
            policy: GuestPolicy(self.guest_policy),
            vmpl: self.vmpl,
            min_tcb: self.min_tcb.into(),
            report_data: None,
            host_data: None,
        })
    }
}

/// Decodes hex into a fixed-size array.
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn parse_digest(s: &str) -> Result<[u8; 48], ManifestError> {
    parse_hex::<48>(s).ok_or_else(|| ManifestError::BadDigest(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    fn build() -> BuildInputs {
        BuildInputs {
            cargo_lock_sha256: "00".repeat(32),
            toolchain: "1.95.0".into(),
        }
    }

    #[test]
    fn manifest_round_trips_and_pins_golden_digests() {
        let img = synthetic::build(&synthetic::Params::default());
        let m = Manifest::for_image(&img, &ManifestOptions::new(build())).expect("manifest");
        assert_eq!(m.measurements.len(), 9);
        assert_eq!(m.measurements[0].vcpus, 1);
        assert_eq!(m.measurements[0].vcpu_type, VcpuType::EpycV4);
        assert_eq!(
            m.measurements[0].digest,
            "6ef2c4dd2a68d8c10399777a7ef31fc2fe6ef471b807934ef6bc6962e045989fd55034cac94b40d8f210650a496817da"
        );
        assert_eq!(
            m.image_sha256,
            "9c27bd97d6acd5d1f575457de7f10025cf48ef54bc252ba02d8fc80e442e3983"
        );
        let json = m.to_json().expect("json");
        assert!(json.contains("\"vcpu_type\": \"EPYC-Milan\""));
        let back = Manifest::from_json(&json).expect("parse back");
        assert_eq!(back, m);
        let pin = back.pin().expect("pin");
        assert_eq!(pin.measurements.len(), 9);
        assert_eq!(pin.policy, GuestPolicy::UKVTPM_DEFAULT);
    }

    #[test]
    fn refuses_bad_manifests() {
        let img = synthetic::build(&synthetic::Params::default());
        let mut m = Manifest::for_image(&img, &ManifestOptions::new(build())).expect("manifest");
        m.guest_policy |= GuestPolicy::DEBUG;
        let e = Manifest::from_json(&m.to_json().expect("json")).unwrap_err();
        assert!(matches!(e, ManifestError::DebugPolicy(_)));
        m.guest_policy = GuestPolicy::UKVTPM_DEFAULT.0;
        m.measurements[0].digest = "abc".into();
        let e = Manifest::from_json(&m.to_json().expect("json")).unwrap_err();
        assert!(matches!(e, ManifestError::BadDigest(_)));
    }

    #[test]
    fn build_inputs_of_this_workspace() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let b = BuildInputs::from_workspace(&root).expect("workspace files");
        assert_eq!(b.cargo_lock_sha256.len(), 64);
        assert!(!b.toolchain.is_empty());
    }
    #[test]
    fn min_tcb_parses_components_and_refuses_nonsense() {
        let t: MinTcb = "bootloader=9, tee=0,snp=23,microcode=213"
            .parse()
            .expect("parse");
        assert_eq!(
            t,
            MinTcb {
                bootloader: 9,
                tee: 0,
                snp: 23,
                microcode: 213,
                fmc: None
            }
        );
        assert_eq!(
            "fmc=1,bl=2"
                .parse::<MinTcb>()
                .map(|t| (t.fmc, t.bootloader)),
            Ok((Some(1), 2))
        );
        assert!("".parse::<MinTcb>().expect("empty is all zero").is_zero());
        for bad in ["snp", "snp=256", "snp=-1", "psp=3", "snp=x"] {
            assert!(bad.parse::<MinTcb>().is_err(), "{bad} accepted");
        }
    }
}
