//! Page-table arithmetic for the C-bit (AMD64 APM vol. 2 (#24593) §5.3 long-mode paging,
//! §15.34.5 "Page Table Support" for SEV): the encryption bit is one of the physical-address
//! bits of every entry, at the position CPUID Fn8000_001F EBX[5:0] gives. Pure functions, used
//! by `mm::snp` on hardware and mirrored by the boot stub (`asm/boot.s`); tested on the host.
//!
//! Boot mapping (boot.s): PD0 maps 0..1 GiB with 2 MiB pages `P|RW|PS` plus the C-bit under
//! SNP; PD2/PD3 map 2..4 GiB uncached (`P|RW|PWT|PCD|PS`) without it (MMIO), except the ROM
//! frame. Splitting one 2 MiB page into 512 4 KiB pages keeps frame, attributes and C-bit.
#![forbid(unsafe_code)]

use core::ops::Range;

use super::cpuid::{CPUID_COUNT_MAX, CPUID_PAGE_SIZE, ENTRIES_OFFSET, ENTRY_SIZE, entry};

/// Present.
pub const PRESENT: u64 = 1 << 0;
/// Writable.
pub const WRITABLE: u64 = 1 << 1;
/// PS in a PDE: 2 MiB page.
pub const HUGE: u64 = 1 << 7;
/// No-execute.
pub const NX: u64 = 1 << 63;
/// Physical-address bits of an entry (4 KiB granular), C-bit included.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Physical-address bits of a 2 MiB page entry, C-bit included.
pub const ADDR_MASK_2M: u64 = 0x000f_ffff_ffe0_0000;
/// Flags a 4 KiB entry inherits from the 2 MiB one it replaces: P, RW, US, PWT, PCD, G (not
/// the CPU-set A and D; bit 7 is PS in the PDE and PAT in the PTE; boot.s never sets PAT).
const INHERITED_FLAGS: u64 = 0x11f;
/// 2 MiB.
pub const PAGE_2M: u64 = 0x20_0000;
/// 4 KiB.
pub const PAGE_4K: u64 = 0x1000;

/// The C-bit mask the boot stub derives from the CPUID page: the EBX[5:0] of the first
/// Fn8000_001F entry, accepted only in 32..=51 (boot.s keeps it in an entry's high dword, and
/// bit 51 is the top physical-address bit). `None` makes the stub halt.
pub fn boot_c_bit_mask(page: &[u8; CPUID_PAGE_SIZE]) -> Option<u64> {
    let word = |at: usize| u32::from_le_bytes([page[at], page[at + 1], page[at + 2], page[at + 3]]);
    let count = word(0) as usize;
    if count > CPUID_COUNT_MAX {
        return None;
    }
    let e = (0..count)
        .map(|i| ENTRIES_OFFSET + i * ENTRY_SIZE)
        .find(|&e| word(e + entry::EAX_IN) == super::status::CPUID_ENC_MEM_LEAF)?;
    let bit = word(e + entry::EBX) & 0x3f;
    (32..=51).contains(&bit).then(|| 1u64 << bit)
}

/// PD0 entry `i` (identity 2 MiB RAM page) as boot.s writes it.
pub fn boot_ram_pde(i: u64, c_bit_mask: u64) -> u64 {
    (i * PAGE_2M) | 0x83 | c_bit_mask
}

/// A PD2/PD3 entry (identity 2 MiB MMIO page at `addr`, uncached) as boot.s writes it: never
/// the C-bit, whatever the platform.
pub fn boot_mmio_pde(addr: u64) -> u64 {
    addr | 0x9b
}

/// The frame a 2 MiB entry maps (C-bit removed).
pub fn frame_2m(pde: u64, c_bit_mask: u64) -> u64 {
    pde & ADDR_MASK_2M & !c_bit_mask
}

/// The table a non-leaf entry points to (C-bit removed).
pub fn table_addr(entry: u64, c_bit_mask: u64) -> u64 {
    entry & ADDR_MASK & !c_bit_mask
}

/// Entry `i` of the 4 KiB table that replaces the 2 MiB page `pde`: same frame, flags, NX and
/// C-bit.
pub fn split_entry(pde: u64, c_bit_mask: u64, i: u64) -> u64 {
    (frame_2m(pde, c_bit_mask) + i * PAGE_4K)
        | (pde & INHERITED_FLAGS)
        | (pde & NX)
        | (pde & c_bit_mask)
}

/// The PDE pointing at a new 4 KiB table at `table` in place of the 2 MiB page `pde`. The table
/// is private RAM, so it carries the C-bit whenever there is one (like boot.s's own tables).
pub fn table_pde(pde: u64, table: u64, c_bit_mask: u64) -> u64 {
    table | (pde & (PRESENT | WRITABLE | (1 << 2))) | c_bit_mask
}

/// One step of a C-bit change over a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The whole 2 MiB frame at this address: change the PDE (if still a large page).
    Frame(u64),
    /// Part of one 2 MiB frame: change these 4 KiB pages (splitting the frame first).
    Pages(Range<u64>),
}

/// Splits a 4 KiB-aligned range into whole 2 MiB frames and partial ones, in address order.
pub fn steps(range: Range<u64>) -> impl Iterator<Item = Step> {
    let mut at = range.start & !(PAGE_4K - 1);
    let end = range.end;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let frame_end = (at & !(PAGE_2M - 1)) + PAGE_2M;
        let step = if at.is_multiple_of(PAGE_2M) && end >= frame_end {
            Step::Frame(at)
        } else {
            Step::Pages(at..end.min(frame_end))
        };
        at = frame_end.min(end);
        Some(step)
    })
}

/// Index of the PD0 entry covering `addr` (below 1 GiB).
pub fn pd_index(addr: u64) -> usize {
    ((addr >> 21) & 0x1ff) as usize
}

/// Index of the 4 KiB entry covering `addr` inside its table.
pub fn pt_index(addr: u64) -> usize {
    ((addr >> 12) & 0x1ff) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snp::pvalidate::pte_with_c_bit;

    const C51: u64 = 1 << 51;

    fn cpuid_page(entries: &[(u32, u32)]) -> [u8; CPUID_PAGE_SIZE] {
        let mut p = [0u8; CPUID_PAGE_SIZE];
        p[0..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        for (i, &(leaf, ebx)) in entries.iter().enumerate() {
            let e = ENTRIES_OFFSET + i * ENTRY_SIZE;
            p[e..e + 4].copy_from_slice(&leaf.to_le_bytes());
            p[e + entry::EBX..e + entry::EBX + 4].copy_from_slice(&ebx.to_le_bytes());
        }
        p
    }

    #[test]
    fn boot_stub_offsets_match_the_cpuid_page_table() {
        // boot.s reads EAX_IN at entry + 0x10 - 0x10 and EBX at 0x10 + 0x1c from an entry
        // pointer that starts at the page (it adds the 0x10 header itself): check the numbers.
        assert_eq!(ENTRIES_OFFSET, 0x10);
        assert_eq!(ENTRY_SIZE, 48);
        assert_eq!(entry::EAX_IN, 0);
        assert_eq!(ENTRIES_OFFSET + entry::EBX, 0x2c);
        assert_eq!(CPUID_COUNT_MAX, 64);
    }

    #[test]
    fn c_bit_from_cpuid_page() {
        // EBX of Fn8000_001F on Milan/Genoa: C-bit 51, 1 bit of address reduction, 16 VMPLs...
        let p = cpuid_page(&[(0x1, 0), (0x8000_0000, 0), (0x8000_001f, 0x0001_0073)]);
        assert_eq!(boot_c_bit_mask(&p), Some(C51));
        let p = cpuid_page(&[(0x8000_001f, 47)]);
        assert_eq!(boot_c_bit_mask(&p), Some(1 << 47));
    }

    #[test]
    fn c_bit_refusals() {
        assert_eq!(boot_c_bit_mask(&cpuid_page(&[])), None);
        assert_eq!(boot_c_bit_mask(&cpuid_page(&[(0x1, 51)])), None);
        assert_eq!(boot_c_bit_mask(&cpuid_page(&[(0x8000_001f, 31)])), None);
        assert_eq!(boot_c_bit_mask(&cpuid_page(&[(0x8000_001f, 52)])), None);
        let mut p = cpuid_page(&[(0x8000_001f, 51)]);
        p[0..4].copy_from_slice(&65u32.to_le_bytes());
        assert_eq!(boot_c_bit_mask(&p), None);
    }

    #[test]
    fn boot_entries_carry_the_c_bit_only_for_ram() {
        assert_eq!(boot_ram_pde(0, 0), 0x83);
        assert_eq!(boot_ram_pde(3, 0), 0x60_0083);
        assert_eq!(boot_ram_pde(3, C51), 0x0008_0000_0060_0083);
        assert_eq!(frame_2m(boot_ram_pde(511, C51), C51), 511 * PAGE_2M);
        assert_eq!(boot_mmio_pde(0xfee0_0000), 0xfee0_009b);
        assert_eq!(boot_mmio_pde(0xfee0_0000) & C51, 0);
    }

    #[test]
    fn split_keeps_frame_flags_and_c_bit() {
        let pde = boot_ram_pde(5, C51) | NX | 0x60; // A and D set by the CPU
        for i in [0u64, 1, 511] {
            let pte = split_entry(pde, C51, i);
            assert_eq!(pte & ADDR_MASK & !C51, 5 * PAGE_2M + i * PAGE_4K);
            assert_eq!(pte & 0xfff, PRESENT | WRITABLE, "PS must not leak into PAT");
            assert_eq!(pte & C51, C51);
            assert_eq!(pte & NX, NX);
        }
        let plain = split_entry(boot_ram_pde(5, 0), 0, 2);
        assert_eq!(plain, (5 * PAGE_2M + 2 * PAGE_4K) | PRESENT | WRITABLE);
        // Uncached stays uncached.
        assert_eq!(split_entry(boot_mmio_pde(0x8000_0000), 0, 0) & 0x18, 0x18);
    }

    #[test]
    fn table_pde_points_at_private_table() {
        let pde = boot_ram_pde(1, C51);
        let t = table_pde(pde, 0x30_0000, C51);
        assert_eq!(t & HUGE, 0);
        assert_eq!(table_addr(t, C51), 0x30_0000);
        assert_eq!(t & C51, C51);
        assert_eq!(table_pde(boot_ram_pde(1, 0), 0x30_0000, 0), 0x30_0003);
    }

    #[test]
    fn c_bit_flip_on_entries() {
        let pte = split_entry(boot_ram_pde(2, C51), C51, 7);
        let shared = pte_with_c_bit(pte, C51, false);
        assert_eq!(shared & C51, 0);
        assert_eq!(shared & ADDR_MASK, 2 * PAGE_2M + 7 * PAGE_4K);
        assert_eq!(pte_with_c_bit(shared, C51, true), pte);
    }

    #[test]
    fn steps_split_ranges_at_2m_frames() {
        let v: Vec<Step> = steps(0x40_0000..0x80_0000).collect();
        assert_eq!(v, [Step::Frame(0x40_0000), Step::Frame(0x60_0000)]);
        let v: Vec<Step> = steps(0x3f_f000..0x60_1000).collect();
        assert_eq!(
            v,
            [
                Step::Pages(0x3f_f000..0x40_0000),
                Step::Frame(0x40_0000),
                Step::Pages(0x60_0000..0x60_1000),
            ]
        );
        let v: Vec<Step> = steps(0x10_0000..0x10_3000).collect();
        assert_eq!(v, [Step::Pages(0x10_0000..0x10_3000)]);
        assert_eq!(steps(0x1000..0x1000).count(), 0);
    }

    #[test]
    fn indices() {
        assert_eq!(pd_index(0x3fff_ffff), 511);
        assert_eq!(pd_index(0x60_1000), 3);
        assert_eq!(pt_index(0x60_1000), 1);
        assert_eq!(pt_index(0x7f_f000), 511);
    }
}
