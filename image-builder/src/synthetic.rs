//! A synthetic SNP "firmware" image: the Rust twin of `reference/snp-synthetic-image.py`.
//!
//! It carries exactly what the SNP launch measures and reads (OVMF footer GUID table, SEV-ES reset
//! block, `ASEV` metadata) and nothing else, so golden launch digests computed by
//! `sev-snp-measure` on the Python version apply to it byte for byte (reference §2). Used by unit
//! tests, the cross-check test against `sev-snp-measure`, and as a stand-in until the real
//! unikernel image exists.
//!
//! Layout (size `S`, mapped at `[4 GiB - S, 4 GiB)`): filler `0xCC`; the `ASEV` block at `S - 0x1000`;
//! the footer table ending 32 bytes before the end; `cli; hlt; jmp $-1` at the reset vector and a
//! `hlt; jmp $-1` loop at the AP reset address.

use crate::layout::{
    FOUR_GIB, GuidLe, SEV_ES_RESET_BLOCK_GUID, SEV_METADATA_GUID, SectionType, TABLE_FOOTER_GUID,
};

/// What to put into the synthetic image.
#[derive(Debug, Clone)]
pub struct Params {
    /// Image size, a multiple of 64 KiB (128 KiB in the reference).
    pub size: usize,
    /// AP reset address written into the SEV-ES reset block.
    pub ap_reset_eip: u32,
    /// Metadata sections `(gpa, size, type)`.
    pub sections: Vec<(u32, u32, SectionType)>,
    /// Include the SEV metadata GUID entry.
    pub with_metadata: bool,
    /// Include the SEV-ES reset block GUID entry.
    pub with_reset_block: bool,
}

impl Default for Params {
    /// The reference image of `snp-synthetic-image.py`.
    fn default() -> Self {
        Self {
            size: 128 * 1024,
            ap_reset_eip: 0xFFFF_E800,
            sections: vec![
                (0x0080_0000, 0x9000, SectionType::SnpSecMem),
                (0x0080_9000, 0x1000, SectionType::SnpSecrets),
                (0x0080_A000, 0x1000, SectionType::Cpuid),
            ],
            with_metadata: true,
            with_reset_block: true,
        }
    }
}

fn section_code(t: SectionType) -> u32 {
    match t {
        SectionType::SnpSecMem => 1,
        SectionType::SnpSecrets => 2,
        SectionType::Cpuid => 3,
        SectionType::SvsmCaa => 4,
        SectionType::SnpKernelHashes => 0x10,
    }
}

/// `[data][u16 len][GUID]`, `len = data.len() + 18`.
fn entry(guid: &GuidLe, data: &[u8]) -> Vec<u8> {
    let mut e = data.to_vec();
    let len = u16::try_from(data.len() + 18).unwrap_or(u16::MAX);
    e.extend_from_slice(&len.to_le_bytes());
    e.extend_from_slice(guid);
    e
}

/// Builds the image. Panics only on nonsensical `Params` (size below 8 KiB or AP address outside
/// the image), which are programming errors in a test.
pub fn build(p: &Params) -> Vec<u8> {
    assert!(p.size >= 0x2000, "synthetic image needs at least 8 KiB");
    let size = p.size;
    let mut img = vec![0xCCu8; size];
    let gpa_base = FOUR_GIB - size as u64;

    // SEV metadata block, 4 KiB before the end.
    let meta_off = size - 0x1000;
    let mut body = Vec::new();
    for &(gpa, sz, t) in &p.sections {
        body.extend_from_slice(&gpa.to_le_bytes());
        body.extend_from_slice(&sz.to_le_bytes());
        body.extend_from_slice(&section_code(t).to_le_bytes());
    }
    let mut block = b"ASEV".to_vec();
    let n = u32::try_from(p.sections.len()).unwrap_or(u32::MAX);
    let len = u32::try_from(16 + body.len()).unwrap_or(u32::MAX);
    block.extend_from_slice(&len.to_le_bytes());
    block.extend_from_slice(&1u32.to_le_bytes());
    block.extend_from_slice(&n.to_le_bytes());
    block.extend_from_slice(&body);
    img[meta_off..meta_off + block.len()].copy_from_slice(&block);

    // Footer GUID table: metadata entry first (furthest from the footer), then the reset block.
    let mut entries = Vec::new();
    if p.with_metadata {
        let off = u32::try_from(size - meta_off).unwrap_or(u32::MAX);
        entries.extend(entry(&SEV_METADATA_GUID, &off.to_le_bytes()));
    }
    if p.with_reset_block {
        entries.extend(entry(
            &SEV_ES_RESET_BLOCK_GUID,
            &p.ap_reset_eip.to_le_bytes(),
        ));
    }
    let total = u16::try_from(entries.len() + 18).unwrap_or(u16::MAX);
    let mut table = entries;
    table.extend_from_slice(&total.to_le_bytes());
    table.extend_from_slice(&TABLE_FOOTER_GUID);
    let end = size - 32;
    img[end - table.len()..end].copy_from_slice(&table);

    // Reset vector at 0xFFFF_FFF0: cli; hlt; jmp $-1; then NOPs.
    img[size - 16..size - 12].copy_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]);
    img[size - 12..].fill(0x90);

    // hlt; jmp $-1 at the AP reset address (real mode: CS.base = eip & !0xffff, IP = eip & 0xffff).
    if u64::from(p.ap_reset_eip) >= gpa_base {
        let off = usize::try_from(u64::from(p.ap_reset_eip) - gpa_base).unwrap_or(usize::MAX);
        assert!(off + 3 <= size, "AP reset address outside the image");
        img[off..off + 3].copy_from_slice(&[0xF4, 0xEB, 0xFD]);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn reference_bytes() {
        let img = build(&Params::default());
        assert_eq!(img.len(), 131_072);
        let s = img.len();
        // Footer table: total length 0x3e, footer GUID at S-48.
        assert_eq!(&img[s - 50..s - 48], &[0x3e, 0x00]);
        assert_eq!(&img[s - 48..s - 32], &TABLE_FOOTER_GUID);
        assert_eq!(&img[s - 0x1000..s - 0x1000 + 4], b"ASEV");
        assert_eq!(&img[s - 16..s - 12], &[0xFA, 0xF4, 0xEB, 0xFD]);
        // Pinned so a change of the generator is noticed even before the digest tests run.
        let sha = Sha256::digest(&img);
        let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, SYNTHETIC_SHA256);
    }

    /// SHA-256 of the 128 KiB reference image (same bytes as `snp-synthetic-image.py`).
    const SYNTHETIC_SHA256: &str =
        "9c27bd97d6acd5d1f575457de7f10025cf48ef54bc252ba02d8fc80e442e3983";
}
