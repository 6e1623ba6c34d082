//! The OVMF-compatible firmware layout that SNP QEMU and `sev-snp-measure` read from a `-bios`
//! image: the GUIDed footer table just below the reset vector and the SEV metadata (`ASEV`)
//! block it points to.
//!
//! Format (reference/snp-launch-and-attestation.md §1.1, §1.2; QEMU `pc_system_parse_ovmf_flash`,
//! `pc_system_parse_sev_metadata`; edk2 `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`):
//! - the image of size `S` is mapped so that it ends at 4 GiB;
//! - the last 32 bytes hold the reset vector (0xFFFF_FFF0) and padding;
//! - `[S-48, S-32)` holds the table-footer GUID, `[S-50, S-48)` the `u16` total table length
//!   (all entries plus this 18-byte footer);
//! - entries are walked backwards from the footer, each `[data][u16 len][GUID]` with
//!   `len = data.len() + 18`;
//! - the SEV metadata entry holds a `u32` offset *from the end of the image* to the `ASEV`
//!   header `{sig "ASEV", u32 len, u32 version = 1, u32 num_items}` followed by `num_items`
//!   descriptors `{u32 gpa, u32 size, u32 type}`.
//!
//! This parser only reads; it checks every length and offset and never panics on a malformed
//! image. It is stricter than both consumers where they disagree or stay silent (duplicate
//! GUIDs, unknown section types, a missing metadata entry), so an image we accept is measured the
//! same way by QEMU, `sev-snp-measure` and the `sev` crate.

use thiserror::Error;

/// Size of a guest page; the launch digest is computed per 4 KiB page (SNP ABI, PAGE_INFO).
pub const PAGE_SIZE: usize = 4096;

/// QEMU loads `-bios` images only in multiples of 64 KiB (`x86_bios_rom_init`).
pub const BIOS_ALIGN: usize = 64 * 1024;

/// Largest image accepted: keeps clear of the IOAPIC/HPET/LAPIC MMIO at 0xFEC0_0000 (reference §3.1).
pub const MAX_IMAGE_SIZE: usize = 8 * 1024 * 1024;

/// GPA one past the end of the firmware: `-bios` images end at 4 GiB.
pub const FOUR_GIB: u64 = 1 << 32;

/// Bytes between the footer GUID and the end of the image (reset vector + padding).
const FOOTER_TAIL: usize = 32;
/// `u16` length + 16-byte GUID, the trailer of every table entry and of the footer.
const ENTRY_HEADER: usize = 18;

/// An EFI GUID in its stored (mixed-endian, `bytes_le`) form.
pub type GuidLe = [u8; 16];

/// Converts the textual fields of a GUID into its EFI mixed-endian byte order.
const fn guid_le(a: u32, b: u16, c: u16, d: [u8; 8]) -> GuidLe {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// `96b582de-1fb2-45f7-baea-a366c55a082d`: OVMF table footer.
pub const TABLE_FOOTER_GUID: GuidLe = guid_le(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// `00f771de-1a7e-4fcb-890e-68c77e2fb44e`: SEV-ES reset block (AP reset EIP).
pub const SEV_ES_RESET_BLOCK_GUID: GuidLe = guid_le(
    0x00f7_71de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);
/// `dc886566-984a-4798-a75e-5585a7bf67cc`: OVMF SEV metadata (offset of `ASEV` from the end).
pub const SEV_METADATA_GUID: GuidLe = guid_le(
    0xdc88_6566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);

/// `ASEV` header signature.
pub const ASEV_SIGNATURE: [u8; 4] = *b"ASEV";
const ASEV_HEADER_LEN: usize = 16;
const ASEV_DESC_LEN: usize = 12;

/// SEV metadata section types (edk2 `OvmfSevMetadata.asm`) and how the launch measures them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionType {
    /// 1: pre-validated RAM, measured as ZERO pages.
    SnpSecMem,
    /// 2: the SNP secrets page, measured as one SECRETS page.
    SnpSecrets,
    /// 3: the CPUID page, measured as one CPUID page.
    Cpuid,
    /// 4: SVSM calling area, measured as ZERO pages.
    SvsmCaa,
    /// 0x10: kernel hashes; without `-kernel` measured as ZERO pages.
    SnpKernelHashes,
}

impl SectionType {
    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::SnpSecMem,
            2 => Self::SnpSecrets,
            3 => Self::Cpuid,
            4 => Self::SvsmCaa,
            0x10 => Self::SnpKernelHashes,
            _ => return None,
        })
    }
}

/// One `ASEV` descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataSection {
    /// Guest-physical address (absolute, in guest RAM).
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
    /// What the range is.
    pub kind: SectionType,
}

/// The parsed SNP-relevant layout of a firmware image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareLayout {
    /// Image size in bytes.
    pub size: usize,
    /// GPA of the first image byte (`4 GiB - size`).
    pub gpa_base: u64,
    /// AP reset address from the SEV-ES reset block.
    pub ap_reset_eip: u32,
    /// Image offset of the `ASEV` header.
    pub metadata_offset: usize,
    /// Metadata sections in table order (the order in which they are measured).
    pub sections: Vec<MetadataSection>,
}

/// Why an image cannot be measured for an SNP launch.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// Empty or oversized image.
    #[error("image is {size} bytes: an SNP -bios image must be between 64 KiB and 8 MiB")]
    BadSize {
        /// Image size.
        size: usize,
    },
    /// Not a multiple of 64 KiB.
    #[error("image is {size} bytes, not a multiple of 64 KiB: QEMU refuses such a -bios image")]
    Unaligned {
        /// Image size.
        size: usize,
    },
    /// No footer GUID at `size - 48`.
    #[error(
        "image has no OVMF GUIDed footer table (GUID 96b582de-… expected 48 bytes before the end): \
         was it built for SNP?"
    )]
    NoFooterTable,
    /// The footer's total length does not fit.
    #[error("OVMF footer table length {len} is invalid (must be 18..={max})")]
    BadTableLength {
        /// Length field.
        len: usize,
        /// Largest length that fits in the image.
        max: usize,
    },
    /// An entry's length is below 18 or runs past the table start.
    #[error("OVMF footer table entry at image offset {offset:#x} has invalid length {len}")]
    BadEntryLength {
        /// Image offset of the entry's trailer.
        offset: usize,
        /// Length field.
        len: usize,
    },
    /// The same GUID appears twice; QEMU and the tools would disagree on which one counts.
    #[error("OVMF footer table has GUID {guid} twice")]
    DuplicateEntry {
        /// GUID in text form.
        guid: String,
    },
    /// No SEV-ES reset block entry.
    #[error(
        "image has no SEV-ES reset block (GUID 00f771de-1a7e-4fcb-890e-68c77e2fb44e): QEMU refuses \
         an SNP launch without the AP reset address"
    )]
    NoResetBlock,
    /// Reset block too short or zero.
    #[error("SEV-ES reset block is invalid: {0}")]
    BadResetBlock(&'static str),
    /// No SEV metadata entry.
    #[error("image has no SEV metadata (ASEV) table: was it built for SNP?")]
    NoMetadata,
    /// The metadata offset points outside the image.
    #[error("SEV metadata offset {offset:#x} (from the end) points outside the {size}-byte image")]
    MetadataOutOfRange {
        /// Offset from the end of the image.
        offset: u64,
        /// Image size.
        size: usize,
    },
    /// Header signature is not `ASEV`.
    #[error("SEV metadata header at image offset {offset:#x} does not start with \"ASEV\"")]
    BadMetadataSignature {
        /// Image offset.
        offset: usize,
    },
    /// Version is not 1.
    #[error("SEV metadata version {0} is not supported (expected 1)")]
    BadMetadataVersion(u32),
    /// Header length inconsistent with the item count or the image.
    #[error(
        "SEV metadata length {len} does not match {items} descriptors or runs past the image end"
    )]
    BadMetadataLength {
        /// `len` field.
        len: u32,
        /// `num_items` field.
        items: u32,
    },
    /// A section of unknown type.
    #[error("SEV metadata section {index} has unknown type {kind:#x}")]
    UnknownSectionType {
        /// Descriptor index.
        index: usize,
        /// Type field.
        kind: u32,
    },
    /// A section not page aligned / empty / wrapping.
    #[error(
        "SEV metadata section {index} (gpa {gpa:#x}, size {size:#x}) is not page aligned or empty"
    )]
    BadSection {
        /// Descriptor index.
        index: usize,
        /// GPA.
        gpa: u32,
        /// Size.
        size: u32,
    },
}

/// Formats a stored (mixed-endian) GUID as text.
pub fn guid_to_string(g: &GuidLe) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10],
        g[11],
        g[12],
        g[13],
        g[14],
        g[15]
    )
}

fn read_u16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn read_guid(b: &[u8], off: usize) -> Option<GuidLe> {
    let s = b.get(off..off.checked_add(16)?)?;
    let mut g = [0u8; 16];
    g.copy_from_slice(s);
    Some(g)
}

/// The footer GUID table as `(guid, data)` pairs, nearest to the footer first.
///
/// # Errors
/// [`LayoutError`] when the image has no footer table or it is malformed.
pub fn footer_table(image: &[u8]) -> Result<Vec<(GuidLe, &[u8])>, LayoutError> {
    let size = image.len();
    let footer = size
        .checked_sub(FOOTER_TAIL + ENTRY_HEADER)
        .ok_or(LayoutError::NoFooterTable)?;
    if read_guid(image, footer + 2) != Some(TABLE_FOOTER_GUID) {
        return Err(LayoutError::NoFooterTable);
    }
    let total = usize::from(read_u16(image, footer).ok_or(LayoutError::NoFooterTable)?);
    let max = footer + ENTRY_HEADER;
    if total < ENTRY_HEADER || total > max {
        return Err(LayoutError::BadTableLength { len: total, max });
    }
    let table_start = footer + ENTRY_HEADER - total;
    let mut entries: Vec<(GuidLe, &[u8])> = Vec::new();
    // `end` is one past the current entry's trailer, walking down towards `table_start`.
    let mut end = footer;
    while end - table_start >= ENTRY_HEADER {
        let trailer = end - ENTRY_HEADER;
        let len = usize::from(read_u16(image, trailer).ok_or(LayoutError::NoFooterTable)?);
        let guid = read_guid(image, trailer + 2).ok_or(LayoutError::NoFooterTable)?;
        if len < ENTRY_HEADER || len > end - table_start {
            return Err(LayoutError::BadEntryLength {
                offset: trailer,
                len,
            });
        }
        if entries.iter().any(|(g, _)| *g == guid) {
            return Err(LayoutError::DuplicateEntry {
                guid: guid_to_string(&guid),
            });
        }
        entries.push((guid, &image[end - len..trailer]));
        end -= len;
    }
    Ok(entries)
}

/// Parses and checks the SNP layout of a firmware image.
///
/// # Errors
/// [`LayoutError`] naming the first problem found.
pub fn parse(image: &[u8]) -> Result<FirmwareLayout, LayoutError> {
    let size = image.len();
    if size == 0 || size > MAX_IMAGE_SIZE {
        return Err(LayoutError::BadSize { size });
    }
    if !size.is_multiple_of(BIOS_ALIGN) {
        return Err(LayoutError::Unaligned { size });
    }
    let table = footer_table(image)?;
    let find = |g: GuidLe| table.iter().find(|(guid, _)| *guid == g).map(|(_, d)| *d);

    let reset = find(SEV_ES_RESET_BLOCK_GUID).ok_or(LayoutError::NoResetBlock)?;
    let ap_reset_eip = read_u32(reset, 0).ok_or(LayoutError::BadResetBlock(
        "shorter than 4 bytes (u32 AP reset address expected)",
    ))?;
    if ap_reset_eip == 0 {
        return Err(LayoutError::BadResetBlock(
            "AP reset address is zero: QEMU refuses to launch",
        ));
    }

    let meta = find(SEV_METADATA_GUID).ok_or(LayoutError::NoMetadata)?;
    let offset = read_u32(meta, 0).ok_or(LayoutError::NoMetadata)?;
    let out_of_range = LayoutError::MetadataOutOfRange {
        offset: u64::from(offset),
        size,
    };
    let offset = usize::try_from(offset).map_err(|_| out_of_range.clone())?;
    let hdr = size.checked_sub(offset).ok_or(out_of_range.clone())?;
    let header = image
        .get(hdr..hdr + ASEV_HEADER_LEN)
        .ok_or(out_of_range.clone())?;
    if header[0..4] != ASEV_SIGNATURE {
        return Err(LayoutError::BadMetadataSignature { offset: hdr });
    }
    let len = read_u32(header, 4).ok_or(out_of_range.clone())?;
    let version = read_u32(header, 8).ok_or(out_of_range.clone())?;
    let items = read_u32(header, 12).ok_or(out_of_range)?;
    if version != 1 {
        return Err(LayoutError::BadMetadataVersion(version));
    }
    let bad_len = LayoutError::BadMetadataLength { len, items };
    let expected = u64::from(items) * ASEV_DESC_LEN as u64 + ASEV_HEADER_LEN as u64;
    // QEMU ignores the header if `len > size - offset`; we refuse instead.
    if u64::from(len) < expected || u64::from(len) > offset as u64 {
        return Err(bad_len);
    }
    let mut sections = Vec::new();
    for index in 0..items as usize {
        let at = hdr + ASEV_HEADER_LEN + index * ASEV_DESC_LEN;
        let (Some(gpa), Some(sz), Some(kind)) = (
            read_u32(image, at),
            read_u32(image, at + 4),
            read_u32(image, at + 8),
        ) else {
            return Err(bad_len);
        };
        let kind_enum =
            SectionType::from_u32(kind).ok_or(LayoutError::UnknownSectionType { index, kind })?;
        let page = PAGE_SIZE as u32;
        if gpa % page != 0 || sz == 0 || sz % page != 0 || u64::from(gpa) + u64::from(sz) > FOUR_GIB
        {
            return Err(LayoutError::BadSection {
                index,
                gpa,
                size: sz,
            });
        }
        sections.push(MetadataSection {
            gpa,
            size: sz,
            kind: kind_enum,
        });
    }
    Ok(FirmwareLayout {
        size,
        gpa_base: FOUR_GIB - size as u64,
        ap_reset_eip,
        metadata_offset: hdr,
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    #[test]
    fn guids_match_their_text_form() {
        assert_eq!(
            guid_to_string(&TABLE_FOOTER_GUID),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
        assert_eq!(
            guid_to_string(&SEV_ES_RESET_BLOCK_GUID),
            "00f771de-1a7e-4fcb-890e-68c77e2fb44e"
        );
        assert_eq!(
            guid_to_string(&SEV_METADATA_GUID),
            "dc886566-984a-4798-a75e-5585a7bf67cc"
        );
    }

    #[test]
    fn parses_synthetic_image() {
        let img = synthetic::build(&synthetic::Params::default());
        let l = parse(&img).expect("synthetic image parses");
        assert_eq!(l.size, 128 * 1024);
        assert_eq!(l.gpa_base, 0xFFFE_0000);
        assert_eq!(l.ap_reset_eip, 0xFFFF_E800);
        assert_eq!(l.metadata_offset, 128 * 1024 - 0x1000);
        assert_eq!(
            l.sections,
            vec![
                MetadataSection {
                    gpa: 0x80_0000,
                    size: 0x9000,
                    kind: SectionType::SnpSecMem
                },
                MetadataSection {
                    gpa: 0x80_9000,
                    size: 0x1000,
                    kind: SectionType::SnpSecrets
                },
                MetadataSection {
                    gpa: 0x80_A000,
                    size: 0x1000,
                    kind: SectionType::Cpuid
                },
            ]
        );
    }

    #[test]
    fn refuses_broken_images() {
        let good = synthetic::build(&synthetic::Params::default());
        let s = good.len();

        assert_eq!(parse(&[]), Err(LayoutError::BadSize { size: 0 }));
        assert_eq!(
            parse(&good[..s - 4096]),
            Err(LayoutError::Unaligned { size: s - 4096 })
        );

        let mut no_footer = good.clone();
        no_footer[s - 48] ^= 1;
        assert_eq!(parse(&no_footer), Err(LayoutError::NoFooterTable));

        let mut bad_total = good.clone();
        bad_total[s - 50..s - 48].copy_from_slice(&17u16.to_le_bytes());
        assert!(matches!(
            parse(&bad_total),
            Err(LayoutError::BadTableLength { .. })
        ));

        let no_meta = synthetic::build(&synthetic::Params {
            with_metadata: false,
            ..Default::default()
        });
        let e = parse(&no_meta).unwrap_err();
        assert_eq!(e, LayoutError::NoMetadata);
        assert_eq!(
            e.to_string(),
            "image has no SEV metadata (ASEV) table: was it built for SNP?"
        );

        let no_reset = synthetic::build(&synthetic::Params {
            with_reset_block: false,
            ..Default::default()
        });
        assert_eq!(parse(&no_reset), Err(LayoutError::NoResetBlock));

        let zero_reset = synthetic::build(&synthetic::Params {
            ap_reset_eip: 0,
            ..Default::default()
        });
        assert!(matches!(
            parse(&zero_reset),
            Err(LayoutError::BadResetBlock(_))
        ));

        let mut bad_sig = good.clone();
        bad_sig[s - 0x1000] = b'X';
        assert!(matches!(
            parse(&bad_sig),
            Err(LayoutError::BadMetadataSignature { .. })
        ));

        let mut bad_type = good.clone();
        bad_type[s - 0x1000 + 16 + 8] = 7;
        assert_eq!(
            parse(&bad_type),
            Err(LayoutError::UnknownSectionType { index: 0, kind: 7 })
        );

        let mut unaligned_sec = good.clone();
        unaligned_sec[s - 0x1000 + 16] = 1;
        assert!(matches!(
            parse(&unaligned_sec),
            Err(LayoutError::BadSection { index: 0, .. })
        ));
    }

    #[test]
    fn never_panics_on_garbage_tables() {
        // Walk every plausible total-length and entry-length value through the parser.
        let good = synthetic::build(&synthetic::Params::default());
        let s = good.len();
        for total in [0u16, 1, 17, 18, 19, 0x3e, 0x3f, 0x1000, 0xFFFF] {
            for entry_len in [0u16, 17, 18, 22, 0x40, 0xFFFF] {
                let mut img = good.clone();
                img[s - 50..s - 48].copy_from_slice(&total.to_le_bytes());
                img[s - 68..s - 66].copy_from_slice(&entry_len.to_le_bytes());
                let _ = parse(&img);
            }
        }
        for off in [0u32, 1, 16, 0x1000, 0x2_0000, 0x2_0001, u32::MAX] {
            let mut img = good.clone();
            // The metadata entry is the second one from the footer: data at s-32-18-22-18-4.
            let at = s - 32 - 18 - 22 - 22;
            img[at..at + 4].copy_from_slice(&off.to_le_bytes());
            let _ = parse(&img);
        }
    }
}
