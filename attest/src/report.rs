//! The SNP ATTESTATION_REPORT, `no_std` and without `unsafe`.
//!
//! SEV-SNP Firmware ABI Specification #56860, "ATTESTATION_REPORT Structure" (Table 23 in
//! revision 1.57/1.58, Table 21 in revision 1.51), returned in MSG_REPORT_RSP (§7.3). 0x4A0 bytes,
//! little-endian; the signature covers bytes 0x000..0x2A0. Versions: 2 (base), 3 (adds the CPUID
//! family/model/stepping bytes), 5 (adds the mitigation vectors); fields a version lacks read as
//! zero there, so one layout serves all of them.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x000 | 4 | VERSION |
//! | 0x004 | 4 | GUEST_SVN |
//! | 0x008 | 8 | POLICY ([`GuestPolicy`]) |
//! | 0x010 | 16 | FAMILY_ID |
//! | 0x020 | 16 | IMAGE_ID |
//! | 0x030 | 4 | VMPL |
//! | 0x034 | 4 | SIGNATURE_ALGO (1 = ECDSA P-384 with SHA-384) |
//! | 0x038 | 8 | CURRENT_TCB ([`TcbVersion`]) |
//! | 0x040 | 8 | PLATFORM_INFO |
//! | 0x048 | 4 | KEY_INFO: bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY |
//! | 0x04C | 4 | reserved |
//! | 0x050 | 64 | REPORT_DATA |
//! | 0x090 | 48 | MEASUREMENT |
//! | 0x0C0 | 32 | HOST_DATA |
//! | 0x0E0 | 48 | ID_KEY_DIGEST |
//! | 0x110 | 48 | AUTHOR_KEY_DIGEST |
//! | 0x140 | 32 | REPORT_ID |
//! | 0x160 | 32 | REPORT_ID_MA |
//! | 0x180 | 8 | REPORTED_TCB |
//! | 0x188 | 1 | CPUID_FAM_ID (v3+) |
//! | 0x189 | 1 | CPUID_MOD_ID (v3+) |
//! | 0x18A | 1 | CPUID_STEP (v3+) |
//! | 0x18B | 21 | reserved |
//! | 0x1A0 | 64 | CHIP_ID |
//! | 0x1E0 | 8 | COMMITTED_TCB |
//! | 0x1E8 | 3+1 | CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR, reserved |
//! | 0x1EC | 3+1 | COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR, reserved |
//! | 0x1F0 | 8 | LAUNCH_TCB |
//! | 0x1F8 | 8 | LAUNCH_MIT_VECTOR (v5) |
//! | 0x200 | 8 | CURRENT_MIT_VECTOR (v5) |
//! | 0x208 | 0x98 | reserved |
//! | 0x2A0 | 0x200 | SIGNATURE: R (72, LE, zero-extended), S (72), reserved |

use core::ops::Range;

use crate::policy::GuestPolicy;
use crate::tcb::{TcbLayout, TcbVersion};

/// Size of ATTESTATION_REPORT.
pub const REPORT_SIZE: usize = 0x4A0;
/// Bytes covered by the signature: `[0, SIGNED_LEN)`.
pub const SIGNED_LEN: usize = 0x2A0;
/// SIGNATURE_ALGO value for ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// Byte ranges of every field (smoltcp style: offsets are written down once).
pub mod field {
    use core::ops::Range;
    /// VERSION.
    pub const VERSION: Range<usize> = 0x000..0x004;
    /// GUEST_SVN.
    pub const GUEST_SVN: Range<usize> = 0x004..0x008;
    /// POLICY.
    pub const POLICY: Range<usize> = 0x008..0x010;
    /// FAMILY_ID.
    pub const FAMILY_ID: Range<usize> = 0x010..0x020;
    /// IMAGE_ID.
    pub const IMAGE_ID: Range<usize> = 0x020..0x030;
    /// VMPL.
    pub const VMPL: Range<usize> = 0x030..0x034;
    /// SIGNATURE_ALGO.
    pub const SIGNATURE_ALGO: Range<usize> = 0x034..0x038;
    /// CURRENT_TCB.
    pub const CURRENT_TCB: Range<usize> = 0x038..0x040;
    /// PLATFORM_INFO.
    pub const PLATFORM_INFO: Range<usize> = 0x040..0x048;
    /// KEY_INFO.
    pub const KEY_INFO: Range<usize> = 0x048..0x04C;
    /// reserved.
    pub const RESERVED0: Range<usize> = 0x04C..0x050;
    /// REPORT_DATA.
    pub const REPORT_DATA: Range<usize> = 0x050..0x090;
    /// MEASUREMENT.
    pub const MEASUREMENT: Range<usize> = 0x090..0x0C0;
    /// HOST_DATA.
    pub const HOST_DATA: Range<usize> = 0x0C0..0x0E0;
    /// ID_KEY_DIGEST.
    pub const ID_KEY_DIGEST: Range<usize> = 0x0E0..0x110;
    /// AUTHOR_KEY_DIGEST.
    pub const AUTHOR_KEY_DIGEST: Range<usize> = 0x110..0x140;
    /// REPORT_ID.
    pub const REPORT_ID: Range<usize> = 0x140..0x160;
    /// REPORT_ID_MA.
    pub const REPORT_ID_MA: Range<usize> = 0x160..0x180;
    /// REPORTED_TCB.
    pub const REPORTED_TCB: Range<usize> = 0x180..0x188;
    /// CPUID_FAM_ID.
    pub const CPUID_FAM_ID: usize = 0x188;
    /// CPUID_MOD_ID.
    pub const CPUID_MOD_ID: usize = 0x189;
    /// CPUID_STEP.
    pub const CPUID_STEP: usize = 0x18A;
    /// reserved.
    pub const RESERVED1: Range<usize> = 0x18B..0x1A0;
    /// CHIP_ID.
    pub const CHIP_ID: Range<usize> = 0x1A0..0x1E0;
    /// COMMITTED_TCB.
    pub const COMMITTED_TCB: Range<usize> = 0x1E0..0x1E8;
    /// CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR.
    pub const CURRENT_VERSION: Range<usize> = 0x1E8..0x1EB;
    /// reserved.
    pub const RESERVED2: usize = 0x1EB;
    /// COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR.
    pub const COMMITTED_VERSION: Range<usize> = 0x1EC..0x1EF;
    /// reserved.
    pub const RESERVED3: usize = 0x1EF;
    /// LAUNCH_TCB.
    pub const LAUNCH_TCB: Range<usize> = 0x1F0..0x1F8;
    /// LAUNCH_MIT_VECTOR.
    pub const LAUNCH_MIT_VECTOR: Range<usize> = 0x1F8..0x200;
    /// CURRENT_MIT_VECTOR.
    pub const CURRENT_MIT_VECTOR: Range<usize> = 0x200..0x208;
    /// reserved.
    pub const RESERVED4: Range<usize> = 0x208..0x2A0;
    /// SIGNATURE.R.
    pub const SIG_R: Range<usize> = 0x2A0..0x2E8;
    /// SIGNATURE.S.
    pub const SIG_S: Range<usize> = 0x2E8..0x330;
    /// SIGNATURE reserved tail.
    pub const SIG_RESERVED: Range<usize> = 0x330..0x4A0;
}

// The layout is contiguous and ends exactly at the report size.
const _: () = assert!(field::RESERVED4.end == SIGNED_LEN);
const _: () = assert!(field::SIG_RESERVED.end == REPORT_SIZE);
const _: () = assert!(REPORT_SIZE == 1184);

/// Why bytes are not an attestation report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Wrong length.
    #[error("attestation report is {0} bytes; an SNP ATTESTATION_REPORT is exactly 1184 bytes")]
    Length(usize),
}

/// KEY_INFO.SIGNING_KEY values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// 0: VCEK.
    Vcek,
    /// 1: VLEK.
    Vlek,
    /// 7: not signed.
    None,
    /// Reserved value.
    Reserved(u8),
}

/// SNP processor generation, as far as the report tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Family 19h, models 00h-0Fh.
    Milan,
    /// Family 19h, models 10h-1Fh, A0h-AFh.
    Genoa,
    /// Family 1Ah, models 00h-11h.
    Turin,
    /// Family 1Ah, later models.
    Venice,
}

impl Generation {
    /// From CPUID family and model (the report's v3+ CPUID fields).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Self::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Self::Genoa),
            (0x1A, 0x00..=0x11) => Some(Self::Turin),
            (0x1A, 0x50..=0x57 | 0x90..=0x9F | 0xA0..=0xAF | 0xC0..=0xC7) => Some(Self::Venice),
            _ => None,
        }
    }

    /// The TCB_VERSION layout this generation uses.
    pub fn tcb_layout(self) -> TcbLayout {
        match self {
            Self::Milan | Self::Genoa => TcbLayout::Legacy,
            Self::Turin | Self::Venice => TcbLayout::Turin,
        }
    }
}

/// ECDSA P-384 signature as stored in the report: little-endian, zero-extended to 72 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// R.
    pub r: [u8; 72],
    /// S.
    pub s: [u8; 72],
}

/// A parsed ATTESTATION_REPORT. Reserved bytes are not kept; [`AttestationReport::to_bytes`]
/// writes them as zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationReport {
    /// VERSION.
    pub version: u32,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// POLICY.
    pub policy: GuestPolicy,
    /// FAMILY_ID.
    pub family_id: [u8; 16],
    /// IMAGE_ID.
    pub image_id: [u8; 16],
    /// VMPL the report was requested for.
    pub vmpl: u32,
    /// SIGNATURE_ALGO.
    pub signature_algo: u32,
    /// CURRENT_TCB (raw; decode with [`AttestationReport::tcb_layout`]).
    pub current_tcb: u64,
    /// PLATFORM_INFO.
    pub platform_info: u64,
    /// KEY_INFO.
    pub key_info: u32,
    /// REPORT_DATA (guest supplied).
    pub report_data: [u8; 64],
    /// MEASUREMENT (launch digest).
    pub measurement: [u8; 48],
    /// HOST_DATA (set by the hypervisor at launch).
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: [u8; 48],
    /// REPORT_ID.
    pub report_id: [u8; 32],
    /// REPORT_ID_MA.
    pub report_id_ma: [u8; 32],
    /// REPORTED_TCB (raw): the TCB the VCEK that signed this report was derived for.
    pub reported_tcb: u64,
    /// CPUID_FAM_ID (v3+, else 0).
    pub cpuid_fam_id: u8,
    /// CPUID_MOD_ID (v3+, else 0).
    pub cpuid_mod_id: u8,
    /// CPUID_STEP (v3+, else 0).
    pub cpuid_step: u8,
    /// CHIP_ID (zero when MASK_CHIP_ID is set).
    pub chip_id: [u8; 64],
    /// COMMITTED_TCB (raw).
    pub committed_tcb: u64,
    /// CURRENT build, minor, major.
    pub current_version: [u8; 3],
    /// COMMITTED build, minor, major.
    pub committed_version: [u8; 3],
    /// LAUNCH_TCB (raw).
    pub launch_tcb: u64,
    /// LAUNCH_MIT_VECTOR (v5, else 0).
    pub launch_mit_vector: u64,
    /// CURRENT_MIT_VECTOR (v5, else 0).
    pub current_mit_vector: u64,
    /// SIGNATURE.
    pub signature: Signature,
}

fn arr<const N: usize>(b: &[u8; REPORT_SIZE], r: Range<usize>) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[r]);
    out
}

fn u32_at(b: &[u8; REPORT_SIZE], r: Range<usize>) -> u32 {
    u32::from_le_bytes(arr(b, r))
}

fn u64_at(b: &[u8; REPORT_SIZE], r: Range<usize>) -> u64 {
    u64::from_le_bytes(arr(b, r))
}

impl AttestationReport {
    /// Parses a report. Only the length is checked here; what the fields must contain is the
    /// verifier's business.
    ///
    /// # Errors
    /// [`ReportError::Length`] unless `bytes` is exactly [`REPORT_SIZE`] long.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReportError> {
        let b: &[u8; REPORT_SIZE] = bytes
            .try_into()
            .map_err(|_| ReportError::Length(bytes.len()))?;
        Ok(Self::from_array(b))
    }

    /// Parses a report from an array of the right size (infallible).
    pub fn from_array(b: &[u8; REPORT_SIZE]) -> Self {
        use field as f;
        Self {
            version: u32_at(b, f::VERSION),
            guest_svn: u32_at(b, f::GUEST_SVN),
            policy: GuestPolicy(u64_at(b, f::POLICY)),
            family_id: arr(b, f::FAMILY_ID),
            image_id: arr(b, f::IMAGE_ID),
            vmpl: u32_at(b, f::VMPL),
            signature_algo: u32_at(b, f::SIGNATURE_ALGO),
            current_tcb: u64_at(b, f::CURRENT_TCB),
            platform_info: u64_at(b, f::PLATFORM_INFO),
            key_info: u32_at(b, f::KEY_INFO),
            report_data: arr(b, f::REPORT_DATA),
            measurement: arr(b, f::MEASUREMENT),
            host_data: arr(b, f::HOST_DATA),
            id_key_digest: arr(b, f::ID_KEY_DIGEST),
            author_key_digest: arr(b, f::AUTHOR_KEY_DIGEST),
            report_id: arr(b, f::REPORT_ID),
            report_id_ma: arr(b, f::REPORT_ID_MA),
            reported_tcb: u64_at(b, f::REPORTED_TCB),
            cpuid_fam_id: b[f::CPUID_FAM_ID],
            cpuid_mod_id: b[f::CPUID_MOD_ID],
            cpuid_step: b[f::CPUID_STEP],
            chip_id: arr(b, f::CHIP_ID),
            committed_tcb: u64_at(b, f::COMMITTED_TCB),
            current_version: arr(b, f::CURRENT_VERSION),
            committed_version: arr(b, f::COMMITTED_VERSION),
            launch_tcb: u64_at(b, f::LAUNCH_TCB),
            launch_mit_vector: u64_at(b, f::LAUNCH_MIT_VECTOR),
            current_mit_vector: u64_at(b, f::CURRENT_MIT_VECTOR),
            signature: Signature {
                r: arr(b, f::SIG_R),
                s: arr(b, f::SIG_S),
            },
        }
    }

    /// Serializes the report; reserved bytes are zero.
    pub fn to_bytes(&self) -> [u8; REPORT_SIZE] {
        use field as f;
        let mut b = [0u8; REPORT_SIZE];
        b[f::VERSION].copy_from_slice(&self.version.to_le_bytes());
        b[f::GUEST_SVN].copy_from_slice(&self.guest_svn.to_le_bytes());
        b[f::POLICY].copy_from_slice(&self.policy.0.to_le_bytes());
        b[f::FAMILY_ID].copy_from_slice(&self.family_id);
        b[f::IMAGE_ID].copy_from_slice(&self.image_id);
        b[f::VMPL].copy_from_slice(&self.vmpl.to_le_bytes());
        b[f::SIGNATURE_ALGO].copy_from_slice(&self.signature_algo.to_le_bytes());
        b[f::CURRENT_TCB].copy_from_slice(&self.current_tcb.to_le_bytes());
        b[f::PLATFORM_INFO].copy_from_slice(&self.platform_info.to_le_bytes());
        b[f::KEY_INFO].copy_from_slice(&self.key_info.to_le_bytes());
        b[f::REPORT_DATA].copy_from_slice(&self.report_data);
        b[f::MEASUREMENT].copy_from_slice(&self.measurement);
        b[f::HOST_DATA].copy_from_slice(&self.host_data);
        b[f::ID_KEY_DIGEST].copy_from_slice(&self.id_key_digest);
        b[f::AUTHOR_KEY_DIGEST].copy_from_slice(&self.author_key_digest);
        b[f::REPORT_ID].copy_from_slice(&self.report_id);
        b[f::REPORT_ID_MA].copy_from_slice(&self.report_id_ma);
        b[f::REPORTED_TCB].copy_from_slice(&self.reported_tcb.to_le_bytes());
        b[f::CPUID_FAM_ID] = self.cpuid_fam_id;
        b[f::CPUID_MOD_ID] = self.cpuid_mod_id;
        b[f::CPUID_STEP] = self.cpuid_step;
        b[f::CHIP_ID].copy_from_slice(&self.chip_id);
        b[f::COMMITTED_TCB].copy_from_slice(&self.committed_tcb.to_le_bytes());
        b[f::CURRENT_VERSION].copy_from_slice(&self.current_version);
        b[f::COMMITTED_VERSION].copy_from_slice(&self.committed_version);
        b[f::LAUNCH_TCB].copy_from_slice(&self.launch_tcb.to_le_bytes());
        b[f::LAUNCH_MIT_VECTOR].copy_from_slice(&self.launch_mit_vector.to_le_bytes());
        b[f::CURRENT_MIT_VECTOR].copy_from_slice(&self.current_mit_vector.to_le_bytes());
        b[f::SIG_R].copy_from_slice(&self.signature.r);
        b[f::SIG_S].copy_from_slice(&self.signature.s);
        b
    }

    /// True when every reserved byte of `bytes` (a full report) is zero, i.e. the bytes are
    /// exactly what [`AttestationReport::to_bytes`] gives back for the parsed report.
    pub fn is_canonical(bytes: &[u8; REPORT_SIZE]) -> bool {
        Self::from_array(bytes).to_bytes() == *bytes
    }

    /// KEY_INFO.SIGNING_KEY.
    pub fn signing_key(&self) -> SigningKey {
        match (self.key_info >> 2) & 0x7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            // Masked to 3 bits, so the value fits.
            v => SigningKey::Reserved(v as u8),
        }
    }

    /// KEY_INFO.MASK_CHIP_KEY: the firmware did not sign the report.
    pub fn mask_chip_key(&self) -> bool {
        self.key_info & 0b10 != 0
    }

    /// The processor generation: from the CPUID bytes for v3+, else from the CHIP_ID shape
    /// (Turin and later report an 8-byte chip id); `None` when it cannot be told.
    pub fn generation(&self) -> Option<Generation> {
        if self.version >= 3 {
            return Generation::from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id);
        }
        if self.chip_id == [0u8; 64] {
            None
        } else if self.chip_id[8..] == [0u8; 56] {
            Some(Generation::Turin)
        } else {
            // Milan and Genoa share the TCB layout; the difference does not matter here.
            Some(Generation::Genoa)
        }
    }

    /// TCB layout, defaulting to the Milan/Genoa one when the generation is unknown.
    pub fn tcb_layout(&self) -> TcbLayout {
        self.generation()
            .map_or(TcbLayout::Legacy, Generation::tcb_layout)
    }

    /// REPORTED_TCB, decoded.
    pub fn reported_tcb(&self) -> TcbVersion {
        TcbVersion::from_raw(self.reported_tcb, self.tcb_layout())
    }

    /// CURRENT_TCB, decoded.
    pub fn current_tcb(&self) -> TcbVersion {
        TcbVersion::from_raw(self.current_tcb, self.tcb_layout())
    }

    /// COMMITTED_TCB, decoded.
    pub fn committed_tcb(&self) -> TcbVersion {
        TcbVersion::from_raw(self.committed_tcb, self.tcb_layout())
    }

    /// LAUNCH_TCB, decoded.
    pub fn launch_tcb(&self) -> TcbVersion {
        TcbVersion::from_raw(self.launch_tcb, self.tcb_layout())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report with every non-reserved byte set to a position-dependent value.
    pub(crate) fn patterned(version: u32, fam: u8, model: u8) -> [u8; REPORT_SIZE] {
        let mut b = [0u8; REPORT_SIZE];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(31).wrapping_add(7);
        }
        for r in [
            field::RESERVED0,
            field::RESERVED1,
            field::RESERVED4,
            field::SIG_RESERVED,
        ] {
            b[r].fill(0);
        }
        b[field::RESERVED2] = 0;
        b[field::RESERVED3] = 0;
        b[field::VERSION].copy_from_slice(&version.to_le_bytes());
        b[field::CPUID_FAM_ID] = fam;
        b[field::CPUID_MOD_ID] = model;
        b
    }

    #[test]
    fn size_and_offsets() {
        assert_eq!(REPORT_SIZE, 0x4A0);
        assert_eq!(field::MEASUREMENT.start, 0x90);
        assert_eq!(field::HOST_DATA.start, 0xC0);
        assert_eq!(field::CHIP_ID.start, 0x1A0);
        assert_eq!(field::SIG_R.start, SIGNED_LEN);
    }

    #[test]
    fn round_trip_is_byte_exact() {
        let b = patterned(3, 0x19, 0x11);
        let r = AttestationReport::from_array(&b);
        assert_eq!(r.to_bytes(), b);
        assert!(AttestationReport::is_canonical(&b));
        let mut dirty = b;
        dirty[field::RESERVED0.start] = 1;
        assert!(!AttestationReport::is_canonical(&dirty));
        assert_eq!(
            AttestationReport::parse(&b[..100]),
            Err(ReportError::Length(100))
        );
    }

    #[test]
    fn generation_and_tcb_layout() {
        let r = AttestationReport::from_array(&patterned(3, 0x19, 0x01));
        assert_eq!(r.generation(), Some(Generation::Milan));
        let r = AttestationReport::from_array(&patterned(3, 0x1A, 0x02));
        assert_eq!(r.generation(), Some(Generation::Turin));
        assert_eq!(r.tcb_layout(), TcbLayout::Turin);
        let mut b = patterned(2, 0, 0);
        b[field::CHIP_ID].fill(0);
        b[field::CHIP_ID.start] = 1;
        assert_eq!(
            AttestationReport::from_array(&b).generation(),
            Some(Generation::Turin)
        );
    }
}
