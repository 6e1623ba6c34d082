//! The SNP CPUID page: CPUID results the hypervisor proposed and the PSP checked at launch
//! (metadata section type CPUID, measured as page type CPUID). Under SNP the #VC handler
//! answers CPUID from here, never from the hypervisor.
//!
//! Layout: SEV-SNP Firmware ABI #56860, "CPUID_FUNCTION" (Table 14 in rev. 1.51) and the
//! CPUID page (Table 69 in rev. 1.51), little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x00 | 4 | COUNT (≤ 64) |
//! | 0x04 | 12 | reserved |
//! | 0x10 | 48 × 64 | CPUID_FUNCTION entries |
//!
//! CPUID_FUNCTION (48 bytes): EAX_IN u32 @0x00, ECX_IN u32 @0x04, XCR0_IN u64 @0x08,
//! XSS_IN u64 @0x10, EAX u32 @0x18, EBX @0x1C, ECX @0x20, EDX @0x24, reserved u64 @0x28.
#![forbid(unsafe_code)]

/// Size of the CPUID page.
pub const CPUID_PAGE_SIZE: usize = 4096;
/// Most entries a page holds.
pub const CPUID_COUNT_MAX: usize = 64;
/// Offset of the first entry.
pub const ENTRIES_OFFSET: usize = 0x10;
/// Size of one CPUID_FUNCTION.
pub const ENTRY_SIZE: usize = 48;

/// Offsets inside one CPUID_FUNCTION.
pub mod entry {
    /// EAX_IN.
    pub const EAX_IN: usize = 0x00;
    /// ECX_IN.
    pub const ECX_IN: usize = 0x04;
    /// XCR0_IN.
    pub const XCR0_IN: usize = 0x08;
    /// XSS_IN.
    pub const XSS_IN: usize = 0x10;
    /// EAX.
    pub const EAX: usize = 0x18;
    /// EBX.
    pub const EBX: usize = 0x1C;
    /// ECX.
    pub const ECX: usize = 0x20;
    /// EDX.
    pub const EDX: usize = 0x24;
    /// reserved.
    pub const RESERVED: usize = 0x28;
}

const _: () = assert!(ENTRIES_OFFSET + CPUID_COUNT_MAX * ENTRY_SIZE <= CPUID_PAGE_SIZE);

/// Why a CPUID page is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuidPageError {
    /// COUNT above 64.
    Count(u32),
    /// COUNT is 0: no table (e.g. plain boot, zeroed RAM).
    Empty,
}

/// One CPUID_FUNCTION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidFunction {
    /// EAX_IN (leaf).
    pub eax_in: u32,
    /// ECX_IN (sub-leaf).
    pub ecx_in: u32,
    /// XCR0_IN (leaf 0xD only).
    pub xcr0_in: u64,
    /// XSS_IN (leaf 0xD only).
    pub xss_in: u64,
    /// Output EAX, EBX, ECX, EDX.
    pub regs: [u32; 4],
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

impl CpuidFunction {
    /// Decodes one 48-byte entry.
    pub fn parse(b: &[u8; ENTRY_SIZE]) -> Self {
        Self {
            eax_in: u32_at(b, entry::EAX_IN),
            ecx_in: u32_at(b, entry::ECX_IN),
            xcr0_in: u64_at(b, entry::XCR0_IN),
            xss_in: u64_at(b, entry::XSS_IN),
            regs: [
                u32_at(b, entry::EAX),
                u32_at(b, entry::EBX),
                u32_at(b, entry::ECX),
                u32_at(b, entry::EDX),
            ],
        }
    }

    /// Encodes one entry (tests and the firmware model).
    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[entry::EAX_IN..][..4].copy_from_slice(&self.eax_in.to_le_bytes());
        b[entry::ECX_IN..][..4].copy_from_slice(&self.ecx_in.to_le_bytes());
        b[entry::XCR0_IN..][..8].copy_from_slice(&self.xcr0_in.to_le_bytes());
        b[entry::XSS_IN..][..8].copy_from_slice(&self.xss_in.to_le_bytes());
        for (i, r) in self.regs.iter().enumerate() {
            b[entry::EAX + 4 * i..][..4].copy_from_slice(&r.to_le_bytes());
        }
        b
    }
}

/// Leaves whose output depends on ECX (the sub-leaf), as the APM defines them; for all others
/// ECX_IN is ignored when matching.
pub fn is_indexed(leaf: u32) -> bool {
    matches!(
        leaf,
        0x4 | 0x7
            | 0xB
            | 0xD
            | 0xF
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1D
            | 0x1F
            | 0x20
            | 0x23
            | 0x24
            | 0x8000_001D
            | 0x8000_0020
            | 0x8000_0026
    )
}

/// A validated CPUID page, copied out of guest memory (so later changes cannot race lookups).
#[derive(Debug, Clone)]
pub struct CpuidTable {
    count: usize,
    entries: [CpuidFunction; CPUID_COUNT_MAX],
}

impl CpuidTable {
    /// Parses the page.
    ///
    /// # Errors
    /// [`CpuidPageError`] for a count of 0 or above 64.
    pub fn parse(page: &[u8; CPUID_PAGE_SIZE]) -> Result<Self, CpuidPageError> {
        let count = u32_at(page, 0);
        if count == 0 {
            return Err(CpuidPageError::Empty);
        }
        let n = usize::try_from(count)
            .ok()
            .filter(|&n| n <= CPUID_COUNT_MAX)
            .ok_or(CpuidPageError::Count(count))?;
        let mut entries = [CpuidFunction::default(); CPUID_COUNT_MAX];
        for (i, e) in entries.iter_mut().take(n).enumerate() {
            let at = ENTRIES_OFFSET + i * ENTRY_SIZE;
            let mut raw = [0u8; ENTRY_SIZE];
            raw.copy_from_slice(&page[at..at + ENTRY_SIZE]);
            *e = CpuidFunction::parse(&raw);
        }
        Ok(Self { count: n, entries })
    }

    /// The entries.
    pub fn entries(&self) -> &[CpuidFunction] {
        &self.entries[..self.count]
    }

    /// Looks up CPUID(`leaf`, `subleaf`): ECX_IN must match for indexed leaves, and for leaf
    /// 0xD sub-leaves 0 and 1 XCR0_IN/XSS_IN must match too (their sizes depend on them).
    pub fn lookup(&self, leaf: u32, subleaf: u32, xcr0: u64, xss: u64) -> Option<[u32; 4]> {
        self.entries()
            .iter()
            .find(|e| {
                e.eax_in == leaf
                    && (!is_indexed(leaf) || e.ecx_in == subleaf)
                    && (leaf != 0xD || subleaf > 1 || (e.xcr0_in == xcr0 && e.xss_in == xss))
            })
            .map(|e| e.regs)
    }

    /// The answer the #VC handler gives: the entry, or all zeros for a leaf the PSP-checked
    /// table does not list (what AMD CPUs return for unsupported leaves; never the
    /// hypervisor's word).
    pub fn answer(&self, leaf: u32, subleaf: u32, xcr0: u64, xss: u64) -> [u32; 4] {
        self.lookup(leaf, subleaf, xcr0, xss).unwrap_or([0; 4])
    }
}

/// Writes a CPUID page (tests and the firmware model).
pub fn build_page(functions: &[CpuidFunction]) -> [u8; CPUID_PAGE_SIZE] {
    let mut page = [0u8; CPUID_PAGE_SIZE];
    let n = functions.len().min(CPUID_COUNT_MAX);
    page[0..4].copy_from_slice(&(n as u32).to_le_bytes());
    for (i, f) in functions.iter().take(n).enumerate() {
        let at = ENTRIES_OFFSET + i * ENTRY_SIZE;
        page[at..at + ENTRY_SIZE].copy_from_slice(&f.to_bytes());
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(eax_in: u32, ecx_in: u32, xcr0_in: u64, regs: [u32; 4]) -> CpuidFunction {
        CpuidFunction {
            eax_in,
            ecx_in,
            xcr0_in,
            xss_in: 0,
            regs,
        }
    }

    #[test]
    fn layout_matches_the_abi_tables() {
        assert_eq!(ENTRY_SIZE, 48);
        assert_eq!(
            [entry::EAX_IN, entry::ECX_IN, entry::XCR0_IN, entry::XSS_IN],
            [0x00, 0x04, 0x08, 0x10]
        );
        assert_eq!(
            [
                entry::EAX,
                entry::EBX,
                entry::ECX,
                entry::EDX,
                entry::RESERVED
            ],
            [0x18, 0x1C, 0x20, 0x24, 0x28]
        );
        assert_eq!(ENTRIES_OFFSET, 0x10);
        assert_eq!(ENTRIES_OFFSET + 64 * 48, 0xC10);
        let e = f(0x8000_001F, 0, 0, [1, 2, 3, 4]);
        let b = e.to_bytes();
        assert_eq!(&b[0..4], &0x8000_001Fu32.to_le_bytes());
        assert_eq!(&b[0x18..0x1C], &1u32.to_le_bytes());
        assert_eq!(&b[0x24..0x28], &4u32.to_le_bytes());
        assert_eq!(CpuidFunction::parse(&b), e);
    }

    #[test]
    fn lookup_rules() {
        let page = build_page(&[
            f(0, 0, 0, [0x10, 0x6874_7541, 0x444d_4163, 0x6974_6e65]),
            f(1, 0, 0, [0x00a0_0f11, 0, 0x8000_0000, 0]),
            f(7, 0, 0, [1, 0x219c_97a9, 0, 0]),
            f(7, 1, 0, [0, 0, 0, 0x10]),
            f(0xD, 0, 1, [1, 0x240, 0x240, 0]),
            f(0xD, 0, 7, [7, 0x340, 0x340, 0]),
            f(0x8000_001F, 0, 0, [0x0101_fd3f, 0x4073, 0x1fd, 1]),
        ]);
        let t = CpuidTable::parse(&page).unwrap();
        assert_eq!(t.entries().len(), 7);
        // Non-indexed leaf: ECX ignored.
        assert_eq!(t.lookup(1, 5, 1, 0), Some([0x00a0_0f11, 0, 0x8000_0000, 0]));
        // Indexed: sub-leaf selects.
        assert_eq!(t.lookup(7, 1, 1, 0), Some([0, 0, 0, 0x10]));
        assert_eq!(t.lookup(7, 2, 1, 0), None);
        // Leaf 0xD sub-leaf 0 depends on XCR0.
        assert_eq!(t.lookup(0xD, 0, 1, 0).map(|r| r[1]), Some(0x240));
        assert_eq!(t.lookup(0xD, 0, 7, 0).map(|r| r[1]), Some(0x340));
        assert_eq!(t.lookup(0xD, 0, 3, 0), None);
        // Missing leaves read as zero, never as the hypervisor's value.
        assert_eq!(t.answer(0x4000_0000, 0, 1, 0), [0; 4]);
        assert_eq!(t.answer(0x8000_001F, 0, 1, 0)[1] & 0x3f, 51);
    }

    #[test]
    fn bad_pages() {
        assert_eq!(
            CpuidTable::parse(&[0; CPUID_PAGE_SIZE]).err(),
            Some(CpuidPageError::Empty)
        );
        let mut p = [0u8; CPUID_PAGE_SIZE];
        p[0] = 65;
        assert_eq!(CpuidTable::parse(&p).err(), Some(CpuidPageError::Count(65)));
    }
}
