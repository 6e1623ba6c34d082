//! The measured firmware image: the unikernel ELF laid out as the flat `-bios` ROM QEMU maps
//! below 4 GiB, with the SNP firmware layout written into the footer area `layout.ld` reserves.
//!
//! Flattening: the image ends at 4 GiB, starts at the lowest load address of the file-backed
//! `PT_LOAD` segments rounded down to 64 KiB (QEMU's `-bios` rule), and holds each segment's bytes
//! at `p_paddr - base`; gaps are zero. Segments without file bytes (`.bss`, stacks) are RAM only.
//!
//! Footer (`[__footer_start, __footer_end)`, the last 4 KiB below the reset vector; format in
//! [`crate::layout`] and reference/snp-launch-and-attestation.md §1.1-1.2, §3.2):
//!
//! ```text
//!   __footer_start + 0x00   AP park loop: cli; hlt; jmp $-1         <- SEV-ES reset block EIP
//!   __footer_start + 0x10   ASEV header + descriptors:
//!                             SNP_SEC_MEM [__snp_sec_mem_start, __snp_sec_mem_end)
//!                             SNP_SECRETS  __snp_secrets_page (one page)
//!                             CPUID        __snp_cpuid_page   (one page)
//!   ... zero ...
//!   __footer_end - 62       [u32 ASEV offset from the end][u16 22][SEV metadata GUID]
//!                           [u32 AP reset EIP][u16 22][SEV-ES reset block GUID]
//!                           [u16 total = 62][table footer GUID]      (ends at 4 GiB - 32)
//!   4 GiB - 16              reset vector (from the ELF)
//! ```
//!
//! Every address comes from a linker symbol of `unikernel/layout.ld`, so the layout has one
//! source. The AP reset address: the unikernel never starts application processors, but QEMU
//! refuses an SEV-ES/SNP launch without a non-zero one and measures one VMSA per vCPU with it as
//! CS:IP. It points at a `cli; hlt; jmp $-1` loop in the footer (real mode, CS.base 0xFFFF0000,
//! IP 0xF000), so an AP that is ever released parks instead of re-running the boot stub.
//!
//! [`from_elf`] checks its result with [`crate::layout::parse`], the same parser `measure` uses.

use object::elf::PT_LOAD;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{LittleEndian, Object, ObjectSymbol};
use thiserror::Error;

use crate::layout::{
    self, BIOS_ALIGN, FOUR_GIB, GuidLe, LayoutError, MetadataSection, PAGE_SIZE,
    SEV_ES_RESET_BLOCK_GUID, SEV_METADATA_GUID, SectionType, TABLE_FOOTER_GUID,
};

/// The largest image accepted: the boot stub maps one 2 MiB ROM frame (`layout.ld`).
pub const IMAGE_MAX: u64 = 2 << 20;

/// `cli; hlt; jmp $-1` (the `jmp` goes back to the `hlt`).
const AP_PARK: [u8; 4] = [0xFA, 0xF4, 0xEB, 0xFD];
/// Offset of the `ASEV` block from the start of the footer area (after the park loop).
const ASEV_AT: u64 = 0x10;
/// The footer table ends this far below 4 GiB (reset vector and padding above it).
const TABLE_END_BELOW_4G: u64 = 32;

/// Linker symbols the layout is read from.
pub mod symbols {
    /// First byte of the reserved footer area.
    pub const FOOTER_START: &str = "__footer_start";
    /// One past the last byte of the footer area: the table ends here, 32 bytes below 4 GiB.
    pub const FOOTER_END: &str = "__footer_end";
    /// First byte of the RAM the boot stub uses before it can PVALIDATE (page tables, stacks,
    /// `.data`, `.bss`).
    pub const SEC_MEM_START: &str = "__snp_sec_mem_start";
    /// One past the last byte of that RAM (the heap start).
    pub const SEC_MEM_END: &str = "__snp_sec_mem_end";
    /// The SNP secrets page.
    pub const SECRETS_PAGE: &str = "__snp_secrets_page";
    /// The SNP CPUID page.
    pub const CPUID_PAGE: &str = "__snp_cpuid_page";
}

/// Why an ELF cannot become a measured image.
#[derive(Debug, Error)]
pub enum ImageError {
    /// Not a parseable little-endian ELF64 file.
    #[error("not a little-endian ELF64 file: {0}")]
    Elf(#[from] object::Error),
    /// A `PT_LOAD` segment's bytes lie outside the file.
    #[error("PT_LOAD segment at {paddr:#x} points outside the ELF file")]
    SegmentData {
        /// Load address.
        paddr: u64,
    },
    /// No file-backed load segments.
    #[error("the ELF has no file-backed PT_LOAD segments")]
    NoSegments,
    /// A segment above or across 4 GiB.
    #[error("PT_LOAD segment {paddr:#x}+{size:#x} does not end below 4 GiB")]
    AboveFourGib {
        /// Load address.
        paddr: u64,
        /// File size.
        size: u64,
    },
    /// The image would be too large.
    #[error("image would be {size:#x} bytes, more than {IMAGE_MAX:#x}: check layout.ld ROM_SIZE")]
    TooLarge {
        /// Image size.
        size: u64,
    },
    /// A required linker symbol is missing.
    #[error(
        "linker symbol {0} is missing from the ELF (defined in unikernel/layout.ld; was the \
         binary stripped?)"
    )]
    MissingSymbol(&'static str),
    /// The symbols describe an impossible layout.
    #[error("unikernel layout: {0}")]
    BadLayout(String),
    /// Something was linked into the reserved footer area.
    #[error(
        "image bytes at {gpa:#x} inside the reserved footer area are not zero: layout.ld must keep \
         [__footer_start, __footer_end) free"
    )]
    FooterNotEmpty {
        /// GPA of the first non-zero byte.
        gpa: u64,
    },
    /// The written image does not parse back (a bug here).
    #[error("the image does not parse back: {0}")]
    Layout(#[from] LayoutError),
}

/// The SNP firmware layout the footer describes, in guest-physical addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpLayout {
    /// First byte of the reserved footer area.
    pub footer_start: u64,
    /// One past its last byte; must be 4 GiB - 32.
    pub footer_end: u64,
    /// AP reset address (SEV-ES reset block); the park loop written at `footer_start`.
    pub ap_reset_eip: u32,
    /// `ASEV` descriptors in table (= measurement) order.
    pub sections: Vec<MetadataSection>,
}

impl SnpLayout {
    /// Reads the layout from the linker symbols listed in [`symbols`].
    ///
    /// # Errors
    /// [`ImageError::MissingSymbol`], [`ImageError::BadLayout`], or an unparseable ELF.
    pub fn from_elf(elf: &[u8]) -> Result<Self, ImageError> {
        let file = ElfFile64::<LittleEndian>::parse(elf)?;
        let sym = |name: &'static str| -> Result<u64, ImageError> {
            file.symbols()
                .find(|s| s.name() == Ok(name))
                .map(|s| s.address())
                .ok_or(ImageError::MissingSymbol(name))
        };
        let footer_start = sym(symbols::FOOTER_START)?;
        let footer_end = sym(symbols::FOOTER_END)?;
        let sec_start = sym(symbols::SEC_MEM_START)?;
        let sec_end = sym(symbols::SEC_MEM_END)?;
        let secrets = sym(symbols::SECRETS_PAGE)?;
        let cpuid = sym(symbols::CPUID_PAGE)?;
        let gpa = |v: u64, what: &str| {
            u32::try_from(v)
                .map_err(|_| ImageError::BadLayout(format!("{what} {v:#x} above 4 GiB")))
        };
        let sec_size = sec_end.checked_sub(sec_start).ok_or_else(|| {
            ImageError::BadLayout(format!(
                "SNP_SEC_MEM end {sec_end:#x} below its start {sec_start:#x}"
            ))
        })?;
        Ok(Self {
            footer_start,
            footer_end,
            ap_reset_eip: gpa(footer_start, symbols::FOOTER_START)?,
            sections: vec![
                MetadataSection {
                    gpa: gpa(sec_start, symbols::SEC_MEM_START)?,
                    size: gpa(sec_size, "SNP_SEC_MEM size")?,
                    kind: SectionType::SnpSecMem,
                },
                MetadataSection {
                    gpa: gpa(secrets, symbols::SECRETS_PAGE)?,
                    size: PAGE_SIZE as u32,
                    kind: SectionType::SnpSecrets,
                },
                MetadataSection {
                    gpa: gpa(cpuid, symbols::CPUID_PAGE)?,
                    size: PAGE_SIZE as u32,
                    kind: SectionType::Cpuid,
                },
            ],
        })
    }

    /// Checks the layout against an image mapped at `[gpa_base, 4 GiB)`: the footer sits at the
    /// end of the image, sections are page aligned, non-empty, pairwise disjoint, and lie in RAM
    /// below the image.
    fn check(&self, gpa_base: u64) -> Result<(), ImageError> {
        let bad = |m: String| Err(ImageError::BadLayout(m));
        if self.footer_end != FOUR_GIB - TABLE_END_BELOW_4G {
            return bad(format!(
                "__footer_end is {:#x}; the GUIDed table must end at 4 GiB - 32",
                self.footer_end
            ));
        }
        if self.footer_start < gpa_base || self.footer_start + 0x100 > self.footer_end {
            return bad(format!(
                "footer area {:#x}..{:#x} is not inside the image or too small",
                self.footer_start, self.footer_end
            ));
        }
        let page = PAGE_SIZE as u64;
        for (i, s) in self.sections.iter().enumerate() {
            let (start, end) = (u64::from(s.gpa), u64::from(s.gpa) + u64::from(s.size));
            if !start.is_multiple_of(page) || s.size == 0 || !u64::from(s.size).is_multiple_of(page)
            {
                return bad(format!(
                    "{:?} {start:#x}..{end:#x} is empty or not page aligned",
                    s.kind
                ));
            }
            if end > gpa_base {
                return bad(format!(
                    "{:?} {start:#x}..{end:#x} overlaps the firmware at {gpa_base:#x}",
                    s.kind
                ));
            }
            for t in &self.sections[..i] {
                let (a, b) = (u64::from(t.gpa), u64::from(t.gpa) + u64::from(t.size));
                if start < b && a < end {
                    return bad(format!(
                        "{:?} {start:#x}..{end:#x} overlaps {:?} {a:#x}..{b:#x}: QEMU would \
                         launch-update those pages twice",
                        s.kind, t.kind
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The file-backed load segments laid out as a ROM ending at 4 GiB; returns the image.
///
/// # Errors
/// Malformed ELF, no segments, a segment above 4 GiB, or an image over [`IMAGE_MAX`].
pub fn flatten(elf: &[u8]) -> Result<Vec<u8>, ImageError> {
    let file = ElfFile64::<LittleEndian>::parse(elf)?;
    let e = file.endian();
    let mut loads = Vec::new();
    for ph in file.elf_program_headers() {
        if ph.p_type(e) != PT_LOAD || ph.p_filesz(e) == 0 {
            continue;
        }
        let paddr = ph.p_paddr(e);
        let data = ph
            .data(e, elf)
            .map_err(|()| ImageError::SegmentData { paddr })?;
        let size = data.len() as u64;
        if paddr.checked_add(size).is_none_or(|end| end > FOUR_GIB) {
            return Err(ImageError::AboveFourGib { paddr, size });
        }
        loads.push((paddr, data));
    }
    let lowest = loads
        .iter()
        .map(|(p, _)| *p)
        .min()
        .ok_or(ImageError::NoSegments)?;
    let base = lowest - lowest % BIOS_ALIGN as u64;
    let size = FOUR_GIB - base;
    if size > IMAGE_MAX {
        return Err(ImageError::TooLarge { size });
    }
    // `size <= IMAGE_MAX`, so these conversions cannot truncate.
    let mut image = vec![0u8; size as usize];
    for (paddr, data) in loads {
        let at = (paddr - base) as usize;
        image[at..at + data.len()].copy_from_slice(data);
    }
    Ok(image)
}

/// `[data][u16 len][GUID]`, `len = data.len() + 18` (reference §1.1).
fn entry(guid: &GuidLe, data: &[u8]) -> Vec<u8> {
    let mut e = data.to_vec();
    // Entries here are a few bytes long.
    e.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
    e.extend_from_slice(guid);
    e
}

/// The `ASEV` block for `sections`.
fn asev(sections: &[MetadataSection]) -> Vec<u8> {
    let mut b = b"ASEV".to_vec();
    let len = 16 + 12 * sections.len();
    b.extend_from_slice(&(len as u32).to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for s in sections {
        let kind: u32 = match s.kind {
            SectionType::SnpSecMem => 1,
            SectionType::SnpSecrets => 2,
            SectionType::Cpuid => 3,
            SectionType::SvsmCaa => 4,
            SectionType::SnpKernelHashes => 0x10,
        };
        for v in [s.gpa, s.size, kind] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    b
}

/// Writes the AP park loop, the `ASEV` block and the GUIDed footer table for `l` into `image`
/// (mapped so that it ends at 4 GiB). The footer area must be zero.
///
/// # Errors
/// [`ImageError::BadLayout`] or [`ImageError::FooterNotEmpty`].
pub fn write_footer(image: &mut [u8], l: &SnpLayout) -> Result<(), ImageError> {
    let gpa_base = FOUR_GIB - image.len() as u64;
    l.check(gpa_base)?;
    let off = |gpa: u64| (gpa - gpa_base) as usize;
    let area = off(l.footer_start)..off(l.footer_end);
    if let Some(i) = image[area.clone()].iter().position(|&b| b != 0) {
        return Err(ImageError::FooterNotEmpty {
            gpa: l.footer_start + i as u64,
        });
    }
    if u64::from(l.ap_reset_eip) != l.footer_start {
        return Err(ImageError::BadLayout(format!(
            "AP reset address {:#x} is not the park loop at {:#x}",
            l.ap_reset_eip, l.footer_start
        )));
    }
    let park = off(l.footer_start);
    image[park..park + AP_PARK.len()].copy_from_slice(&AP_PARK);

    let asev_gpa = l.footer_start + ASEV_AT;
    let block = asev(&l.sections);
    let at = off(asev_gpa);
    image[at..at + block.len()].copy_from_slice(&block);

    let from_end = (FOUR_GIB - asev_gpa) as u32;
    let mut table = entry(&SEV_METADATA_GUID, &from_end.to_le_bytes());
    table.extend(entry(
        &SEV_ES_RESET_BLOCK_GUID,
        &l.ap_reset_eip.to_le_bytes(),
    ));
    table.extend_from_slice(&((table.len() + 18) as u16).to_le_bytes());
    table.extend_from_slice(&TABLE_FOOTER_GUID);
    let end = area.end;
    if end - table.len() < at + block.len() {
        return Err(ImageError::BadLayout(
            "footer area too small for the ASEV block and the GUIDed table".into(),
        ));
    }
    image[end - table.len()..end].copy_from_slice(&table);
    Ok(())
}

/// The measured image for a unikernel ELF: [`flatten`], then [`write_footer`] with the layout
/// from [`SnpLayout::from_elf`], checked by parsing it back with [`layout::parse`].
///
/// # Errors
/// Any [`ImageError`]; each names the ELF or layout problem.
pub fn from_elf(elf: &[u8]) -> Result<Vec<u8>, ImageError> {
    let l = SnpLayout::from_elf(elf)?;
    let mut image = flatten(elf)?;
    write_footer(&mut image, &l)?;
    let parsed = layout::parse(&image)?;
    if parsed.ap_reset_eip != l.ap_reset_eip || parsed.sections != l.sections {
        return Err(ImageError::BadLayout(format!(
            "wrote {l:?} but parsed back {parsed:?}"
        )));
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal static ELF64: `segments` as PT_LOAD `(paddr, bytes)`, `syms` as absolute global
    /// symbols, with `.symtab`, `.strtab` and `.shstrtab` sections.
    fn elf(segments: &[(u64, &[u8])], syms: &[(&str, u64)]) -> Vec<u8> {
        fn put(b: &mut [u8], at: usize, v: &[u8]) {
            b[at..at + v.len()].copy_from_slice(v);
        }
        let mut data = Vec::new();
        let phoff = 64;
        let mut out = vec![0u8; phoff + 56 * segments.len()];
        let mut ph = Vec::new();
        for (paddr, bytes) in segments {
            ph.push((out.len() as u64, *paddr, bytes.len() as u64));
            out.extend_from_slice(bytes);
        }
        // .strtab and .symtab
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24];
        for (name, value) in syms {
            let mut s = [0u8; 24];
            put(&mut s, 0, &(strtab.len() as u32).to_le_bytes());
            s[4] = 0x10; // STB_GLOBAL, STT_NOTYPE
            put(&mut s, 6, &0xfff1u16.to_le_bytes()); // SHN_ABS
            put(&mut s, 8, &value.to_le_bytes());
            symtab.extend_from_slice(&s);
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
        }
        let shstrtab = b"\0.symtab\0.strtab\0.shstrtab\0".to_vec();
        for part in [&symtab, &strtab, &shstrtab] {
            out.resize(out.len().next_multiple_of(8), 0);
            data.push((out.len() as u64, part.len() as u64));
            out.extend_from_slice(part);
        }
        out.resize(out.len().next_multiple_of(8), 0);
        let shoff = out.len();
        out.extend_from_slice(&[0u8; 64 * 4]);
        // (name, type, link, info, entsize) for .symtab, .strtab, .shstrtab
        let shdrs = [
            (1u32, 2u32, 2u32, 1u32, 24u64),
            (9, 3, 0, 0, 0),
            (17, 3, 0, 0, 0),
        ];
        for (i, ((name, ty, link, info, entsize), (off, size))) in
            shdrs.iter().zip(&data).enumerate()
        {
            let at = shoff + 64 * (i + 1);
            put(&mut out, at, &name.to_le_bytes());
            put(&mut out, at + 4, &ty.to_le_bytes());
            put(&mut out, at + 24, &off.to_le_bytes());
            put(&mut out, at + 32, &size.to_le_bytes());
            put(&mut out, at + 40, &link.to_le_bytes());
            put(&mut out, at + 44, &info.to_le_bytes());
            put(&mut out, at + 48, &1u64.to_le_bytes());
            put(&mut out, at + 56, &entsize.to_le_bytes());
        }
        put(&mut out, 0, b"\x7fELF\x02\x01\x01");
        put(&mut out, 16, &2u16.to_le_bytes());
        put(&mut out, 18, &0x3eu16.to_le_bytes());
        put(&mut out, 20, &1u32.to_le_bytes());
        put(&mut out, 32, &(phoff as u64).to_le_bytes());
        put(&mut out, 40, &(shoff as u64).to_le_bytes());
        put(&mut out, 52, &64u16.to_le_bytes());
        put(&mut out, 54, &56u16.to_le_bytes());
        put(&mut out, 56, &(segments.len() as u16).to_le_bytes());
        put(&mut out, 58, &64u16.to_le_bytes());
        put(&mut out, 60, &4u16.to_le_bytes());
        put(&mut out, 62, &3u16.to_le_bytes());
        for (i, (offset, paddr, filesz)) in ph.iter().enumerate() {
            let at = phoff + 56 * i;
            put(&mut out, at, &1u32.to_le_bytes());
            put(&mut out, at + 8, &offset.to_le_bytes());
            put(&mut out, at + 16, &paddr.to_le_bytes());
            put(&mut out, at + 24, &paddr.to_le_bytes());
            put(&mut out, at + 32, &filesz.to_le_bytes());
            put(&mut out, at + 40, &filesz.to_le_bytes());
        }
        out
    }

    /// The symbols of today's layout.ld (1 MiB image, SNP pages at 1 MiB).
    fn layout_syms() -> Vec<(&'static str, u64)> {
        vec![
            (symbols::FOOTER_START, 0xFFFF_F000),
            (symbols::FOOTER_END, 0xFFFF_FFE0),
            (symbols::SECRETS_PAGE, 0x10_0000),
            (symbols::CPUID_PAGE, 0x10_1000),
            (symbols::SEC_MEM_START, 0x10_2000),
            (symbols::SEC_MEM_END, 0x15_0000),
        ]
    }

    const RESET: &[u8] = b"\xe9\x00\x00";

    #[test]
    fn flattens_to_a_rom_ending_at_4gib() {
        let e = elf(&[(0xfff0_0000, b"code"), (0xffff_fff0, RESET)], &[]);
        let image = flatten(&e).unwrap();
        assert_eq!(image.len(), 1 << 20);
        assert_eq!(&image[0..4], b"code");
        assert_eq!(&image[image.len() - 16..image.len() - 13], RESET);
        // An unaligned base rounds down to 64 KiB.
        assert_eq!(
            flatten(&elf(&[(0xffff_8000, b"x")], &[])).unwrap().len(),
            64 << 10
        );
    }

    #[test]
    fn flatten_refuses_bad_segments() {
        assert!(matches!(
            flatten(&elf(&[(0x1_0000_0000, b"x")], &[])),
            Err(ImageError::AboveFourGib { .. })
        ));
        assert!(matches!(
            flatten(&elf(&[(0xf000_0000, b"x")], &[])),
            Err(ImageError::TooLarge { .. })
        ));
        assert!(matches!(
            flatten(&elf(&[], &[])),
            Err(ImageError::NoSegments)
        ));
        assert!(matches!(flatten(b"not an elf"), Err(ImageError::Elf(_))));
    }

    #[test]
    fn footer_parses_back_with_the_linker_layout() {
        let e = elf(
            &[(0xfff0_0000, b"code"), (0xffff_fff0, RESET)],
            &layout_syms(),
        );
        let image = from_elf(&e).unwrap();
        let s = image.len();
        let l = layout::parse(&image).unwrap();
        assert_eq!(l.gpa_base, 0xFFF0_0000);
        assert_eq!(l.ap_reset_eip, 0xFFFF_F000);
        assert_eq!(l.metadata_offset, s - 0x1000 + 0x10);
        let kinds: Vec<_> = l.sections.iter().map(|x| (x.gpa, x.size, x.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (0x10_2000, 0x4_E000, SectionType::SnpSecMem),
                (0x10_0000, 0x1000, SectionType::SnpSecrets),
                (0x10_1000, 0x1000, SectionType::Cpuid),
            ]
        );
        // The park loop at the AP reset address, the table just below the reset vector.
        assert_eq!(&image[s - 0x1000..s - 0x1000 + 4], &AP_PARK);
        assert_eq!(&image[s - 48..s - 32], &TABLE_FOOTER_GUID);
        assert_eq!(&image[s - 50..s - 48], &62u16.to_le_bytes());
        assert_eq!(&image[s - 16..s - 13], RESET);
        // Everything between the ASEV block and the table stays zero.
        assert!(
            image[s - 0x1000 + 0x10 + 52..s - 32 - 62]
                .iter()
                .all(|&b| b == 0)
        );
    }

    #[test]
    fn refuses_bad_layouts() {
        let seg: &[(u64, &[u8])] = &[(0xfff0_0000, b"code")];
        // The layout with symbol `name` set to `v` (or removed).
        let with = |name: &'static str, v: Option<u64>| {
            let mut syms: Vec<_> = layout_syms()
                .into_iter()
                .filter(|(n, _)| *n != name)
                .collect();
            syms.extend(v.map(|v| (name, v)));
            from_elf(&elf(seg, &syms))
        };
        assert!(matches!(
            with(symbols::CPUID_PAGE, None),
            Err(ImageError::MissingSymbol("__snp_cpuid_page"))
        ));
        let err = |r: Result<Vec<u8>, ImageError>| r.unwrap_err().to_string();
        assert!(err(with(symbols::FOOTER_END, Some(0xFFFF_FFF0))).contains("4 GiB - 32"));
        assert!(err(with(symbols::CPUID_PAGE, Some(0x10_2000))).contains("twice"));
        assert!(err(with(symbols::SECRETS_PAGE, Some(0x10_0800))).contains("page aligned"));
        assert!(err(with(symbols::SEC_MEM_END, Some(0x10_2000))).contains("empty"));
        assert!(err(with(symbols::SEC_MEM_END, Some(0x10_1000))).contains("below its start"));
        assert!(
            err(with(symbols::CPUID_PAGE, Some(0xFFF0_0000))).contains("overlaps the firmware")
        );

        // Something linked into the footer area.
        let e = elf(
            &[(0xfff0_0000, b"code"), (0xffff_f800, b"x")],
            &layout_syms(),
        );
        assert!(matches!(
            from_elf(&e),
            Err(ImageError::FooterNotEmpty { gpa: 0xffff_f800 })
        ));
    }
}
