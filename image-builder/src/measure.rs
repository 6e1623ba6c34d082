//! SNP launch digest of a `-bios` firmware image (DESIGN §7).
//!
//! The digest is the MEASUREMENT field of the attestation report (SNP ABI spec #56860, Table 23
//! ATTESTATION_REPORT offset 0x90). The firmware computes it as a SHA-384 chain over PAGE_INFO
//! structures (SNP ABI, "PAGE_INFO Structure" table, §8.17 SNP_LAUNCH_UPDATE): every firmware page
//! as NORMAL from low to high GPA, then the `ASEV` metadata sections in table order, then one VMSA
//! page per vCPU (SNP_LAUNCH_FINISH). The chain, the PAGE_INFO encoding and the QEMU VMSA template
//! are those of the `sev` crate's `measurement::snp` module; nothing of it is re-implemented here.
//!
//! What this module adds:
//! - [`crate::layout::parse`] first checks the image with bounds-checked code and clear errors. The
//!   crate's own OVMF parser indexes slices directly and would panic on a truncated or corrupt table.
//! - `sev` 8.0.0 only measures a *file* (`SnpMeasurementArgs::ovmf_file: PathBuf`) and keeps the
//!   in-memory `Gctx` digest accessor crate-private, so [`snp_launch_digest`] writes the checked
//!   bytes to a private temporary file (`tempfile`, mode 0600, removed on drop) and measures that.
//!   The bytes checked and the bytes measured are therefore the same.

use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use sev::measurement::{
    snp::{SnpMeasurementArgs, calc_snp_ovmf_hash, snp_calc_launch_digest},
    vcpu_types::CpuType,
    vmsa::{GuestFeatures, VMMType},
};
use sev::parser::ByteParser;
use thiserror::Error;

use crate::layout::{self, LayoutError};

/// Length of an SNP launch digest (SHA-384).
pub const DIGEST_LEN: usize = 48;

/// A launch digest, as it appears in the report's MEASUREMENT field.
pub type LaunchDigest = [u8; DIGEST_LEN];

/// VMSA SEV_FEATURES used by upstream QEMU >= 9.1 (`KVM_SEV_INIT2`, `vmsa_features = 0`, plus
/// SNPActive): reference §1.4.
pub const DEFAULT_GUEST_FEATURES: u64 = 0x1;

/// Most vCPUs accepted (QEMU's q35 limit is far lower in practice; this only bounds memory).
pub const MAX_VCPUS: u32 = 4096;

/// QEMU vCPU models whose CPUID(1).EAX signature enters the VMSA (RDX at reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VcpuType {
    /// `EPYC`, `EPYC-v1`..`EPYC-v4` (Naples signature 0x800f12).
    #[serde(rename = "EPYC-v4")]
    EpycV4,
    /// `EPYC-Rome` (0x830f10).
    #[serde(rename = "EPYC-Rome")]
    EpycRome,
    /// `EPYC-Milan` (0xa00f11).
    #[serde(rename = "EPYC-Milan")]
    EpycMilan,
    /// `EPYC-Genoa` (0xa10f10).
    #[serde(rename = "EPYC-Genoa")]
    EpycGenoa,
    /// `EPYC-Turin` (0xb00f00).
    #[serde(rename = "EPYC-Turin")]
    EpycTurin,
}

impl VcpuType {
    /// All supported types.
    pub const ALL: [VcpuType; 5] = [
        VcpuType::EpycV4,
        VcpuType::EpycRome,
        VcpuType::EpycMilan,
        VcpuType::EpycGenoa,
        VcpuType::EpycTurin,
    ];

    /// The QEMU `-cpu` model name (also `sev-snp-measure --vcpu-type`).
    pub fn qemu_name(self) -> &'static str {
        match self {
            VcpuType::EpycV4 => "EPYC-v4",
            VcpuType::EpycRome => "EPYC-Rome",
            VcpuType::EpycMilan => "EPYC-Milan",
            VcpuType::EpycGenoa => "EPYC-Genoa",
            VcpuType::EpycTurin => "EPYC-Turin",
        }
    }

    fn sev(self) -> CpuType {
        match self {
            VcpuType::EpycV4 => CpuType::EpycV4,
            VcpuType::EpycRome => CpuType::EpycRome,
            VcpuType::EpycMilan => CpuType::EpycMilan,
            VcpuType::EpycGenoa => CpuType::EpycGenoa,
            VcpuType::EpycTurin => CpuType::EpycTurin,
        }
    }

    /// CPUID(1).EAX signature placed in the VMSA.
    pub fn signature(self) -> u32 {
        self.sev().sig().cast_unsigned()
    }
}

impl std::fmt::Display for VcpuType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.qemu_name())
    }
}

impl FromStr for VcpuType {
    type Err = MeasureError;

    /// Accepts QEMU model names, case-insensitively; versioned aliases map to the same signature.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "epyc" | "epyc-v1" | "epyc-v2" | "epyc-v3" | "epyc-v4" | "epyc-ibpb" => Self::EpycV4,
            "epyc-rome" | "epyc-rome-v1" | "epyc-rome-v2" | "epyc-rome-v3" => Self::EpycRome,
            "epyc-milan" | "epyc-milan-v1" | "epyc-milan-v2" => Self::EpycMilan,
            "epyc-genoa" | "epyc-genoa-v1" => Self::EpycGenoa,
            "epyc-turin" | "epyc-turin-v1" | "epyc-turin-v2" => Self::EpycTurin,
            _ => return Err(MeasureError::UnknownVcpuType(s.to_owned())),
        })
    }
}

/// Launch parameters that enter the digest besides the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchParams {
    /// `-smp N`: one VMSA page per vCPU.
    pub vcpus: u32,
    /// `-cpu MODEL`.
    pub vcpu_type: VcpuType,
    /// VMSA SEV_FEATURES (default [`DEFAULT_GUEST_FEATURES`]).
    pub guest_features: u64,
}

impl LaunchParams {
    /// `vcpus` of `vcpu_type` with the default guest features.
    pub fn new(vcpus: u32, vcpu_type: VcpuType) -> Self {
        Self {
            vcpus,
            vcpu_type,
            guest_features: DEFAULT_GUEST_FEATURES,
        }
    }
}

/// Why no digest could be computed.
#[derive(Debug, Error)]
pub enum MeasureError {
    /// The image layout is not what an SNP launch needs.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// `--vcpus` out of range.
    #[error("vCPU count {0} is out of range (1..={MAX_VCPUS})")]
    BadVcpus(u32),
    /// Unknown `--vcpu-type`.
    #[error(
        "unknown vCPU type {0:?}: use one of EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin"
    )]
    UnknownVcpuType(String),
    /// Reading the image or writing the scratch copy failed.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause (shown in the message, not chained, so it is printed once).
        cause: std::io::Error,
    },
    /// The `sev` crate refused the image or parameters.
    #[error("SNP measurement (sev crate) failed: {0}")]
    Sev(String),
}

/// Writes `image` to a private temporary file that `sev` can measure.
fn scratch_copy(image: &[u8]) -> Result<tempfile::NamedTempFile, MeasureError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| MeasureError::Io {
            what,
            cause: source,
        }
    };
    let mut f = tempfile::Builder::new()
        .prefix("ukvtpm-measure-")
        .tempfile()
        .map_err(io("creating a scratch copy of the image for the sev crate"))?;
    f.write_all(image)
        .and_then(|()| f.flush())
        .map_err(io("writing the scratch copy of the image"))?;
    Ok(f)
}

fn to_digest(ld: sev::measurement::snp::SnpLaunchDigest) -> Result<LaunchDigest, MeasureError> {
    let v: Vec<u8> = ld
        .try_into()
        .map_err(|e: sev::error::MeasurementError| MeasureError::Sev(e.to_string()))?;
    v.try_into()
        .map_err(|_| MeasureError::Sev("launch digest is not 48 bytes".into()))
}

/// Computes the SNP launch digest (report MEASUREMENT) of `image` launched with `params`.
///
/// # Errors
/// [`MeasureError::Layout`] when the image lacks or has a malformed footer table, reset block or
/// `ASEV` metadata; [`MeasureError::BadVcpus`]; I/O errors of the scratch copy.
pub fn snp_launch_digest(
    image: &[u8],
    params: &LaunchParams,
) -> Result<LaunchDigest, MeasureError> {
    if params.vcpus == 0 || params.vcpus > MAX_VCPUS {
        return Err(MeasureError::BadVcpus(params.vcpus));
    }
    layout::parse(image)?;
    let scratch = scratch_copy(image)?;
    let features = GuestFeatures::from_bytes(&params.guest_features.to_le_bytes())
        .map_err(|e| MeasureError::Sev(format!("guest features: {e}")))?;
    let ld = snp_calc_launch_digest(SnpMeasurementArgs {
        vcpus: params.vcpus,
        vcpu_type: params.vcpu_type.sev(),
        ovmf_file: scratch.path().to_path_buf(),
        guest_features: features,
        kernel_file: None,
        initrd_file: None,
        append: None,
        ovmf_hash_str: None,
        vmm_type: Some(VMMType::QEMU),
    })
    .map_err(|e| MeasureError::Sev(e.to_string()))?;
    to_digest(ld)
}

/// The digest after the firmware pages only (`sev-snp-measure --mode snp:ovmf-hash`).
///
/// # Errors
/// As [`snp_launch_digest`].
pub fn firmware_pages_digest(image: &[u8]) -> Result<LaunchDigest, MeasureError> {
    layout::parse(image)?;
    let scratch = scratch_copy(image)?;
    let ld = calc_snp_ovmf_hash(scratch.path().to_path_buf())
        .map_err(|e| MeasureError::Sev(e.to_string()))?;
    to_digest(ld)
}

/// Reads `path` and computes its launch digest.
///
/// # Errors
/// As [`snp_launch_digest`], plus a read error naming the file.
pub fn snp_launch_digest_file(
    path: &Path,
    params: &LaunchParams,
) -> Result<LaunchDigest, MeasureError> {
    let image = std::fs::read(path).map_err(|cause| MeasureError::Io {
        what: format!("reading image {}", path.display()),
        cause,
    })?;
    snp_launch_digest(&image, params)
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    // Golden values: reference/snp-launch-and-attestation.md §2, computed by sev-snp-measure 0.0.13
    // on the image of snp-synthetic-image.py (reproduced by `synthetic::build`).
    const N1: &str = "6ef2c4dd2a68d8c10399777a7ef31fc2fe6ef471b807934ef6bc6962e045989fd55034cac94b40d8f210650a496817da";
    const N2: &str = "a39ebb332cfd4e574bf09989b0a85b8a90d51f0d0f2774ad25e44dcfe996c2861dbcf955f7ef881838eab716779e5571";
    const N4: &str = "dd29ebae5807b4beabe14335bed0610a7f853aaa1390a5250b8f2e18b97d3c3e7933964cb0a77fe71876e0419a17bbc9";
    const N1_F21: &str = "38171e3079ad40dc0ea9a62b0cf547b19124aba6259822b1cbd913479dddd15bc07cfd6bbbe12214a9c9f871f464eaab";
    const N1_MILAN: &str = "91787ab5189b540b53c445ae250f7bc598ca978f7a96bd11c736724afa83b48b6ad8f650e69bb2907db56c380b7c7ced";
    const N1_GENOA: &str = "5ce6a1890d50c78fb528b6a9a60c3c13e1c9c4abd52314e05c4e92f902f08057902fbb20ab7f6bb4733aacfa8cd36b7d";
    const OVMF_HASH: &str = "96315ca18a8f1b35534814b40dd3d4e47e1a156c8c70f201bb9caa42f4d31db1ae682fafe6d8749bb9e1af213568a448";

    fn digest(vcpus: u32, t: VcpuType, features: u64) -> String {
        let img = synthetic::build(&synthetic::Params::default());
        let p = LaunchParams {
            vcpus,
            vcpu_type: t,
            guest_features: features,
        };
        to_hex(&snp_launch_digest(&img, &p).expect("synthetic image measures"))
    }

    #[test]
    fn golden_epyc_v4_1_2_4_vcpus() {
        assert_eq!(digest(1, VcpuType::EpycV4, 0x1), N1);
        assert_eq!(digest(2, VcpuType::EpycV4, 0x1), N2);
        assert_eq!(digest(4, VcpuType::EpycV4, 0x1), N4);
    }

    #[test]
    fn golden_guest_features_0x21() {
        assert_eq!(digest(1, VcpuType::EpycV4, 0x21), N1_F21);
    }

    #[test]
    fn golden_milan_genoa() {
        assert_eq!(digest(1, VcpuType::EpycMilan, 0x1), N1_MILAN);
        assert_eq!(digest(1, VcpuType::EpycGenoa, 0x1), N1_GENOA);
    }

    #[test]
    fn golden_firmware_pages_only() {
        let img = synthetic::build(&synthetic::Params::default());
        assert_eq!(
            to_hex(&firmware_pages_digest(&img).expect("measures")),
            OVMF_HASH
        );
    }

    #[test]
    fn one_byte_changes_digest() {
        let mut img = synthetic::build(&synthetic::Params::default());
        let p = LaunchParams::new(1, VcpuType::EpycV4);
        let a = snp_launch_digest(&img, &p).expect("measures");
        img[0x1234] ^= 0x01;
        let b = snp_launch_digest(&img, &p).expect("measures");
        assert_ne!(a, b);
    }

    #[test]
    fn vcpu_type_names() {
        assert_eq!("EPYC-v4".parse::<VcpuType>().ok(), Some(VcpuType::EpycV4));
        assert_eq!(
            "epyc-milan".parse::<VcpuType>().ok(),
            Some(VcpuType::EpycMilan)
        );
        assert_eq!(VcpuType::EpycV4.signature(), 0x0080_0f12);
        assert_eq!(VcpuType::EpycMilan.signature(), 0x00a0_0f11);
        assert_eq!(VcpuType::EpycGenoa.signature(), 0x00a1_0f10);
        assert_eq!(VcpuType::EpycTurin.signature(), 0x00b0_0f00);
        assert!("pentium".parse::<VcpuType>().is_err());
        for t in VcpuType::ALL {
            assert_eq!(t.qemu_name().parse::<VcpuType>().ok(), Some(t));
        }
    }

    #[test]
    fn refuses_bad_input_with_clear_errors() {
        let img = synthetic::build(&synthetic::Params::default());
        let e = snp_launch_digest(&img, &LaunchParams::new(0, VcpuType::EpycV4)).unwrap_err();
        assert!(matches!(e, MeasureError::BadVcpus(0)));
        let no_meta = synthetic::build(&synthetic::Params {
            with_metadata: false,
            ..Default::default()
        });
        let e = snp_launch_digest(&no_meta, &LaunchParams::new(1, VcpuType::EpycV4)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image has no SEV metadata (ASEV) table: was it built for SNP?"
        );
    }
}
