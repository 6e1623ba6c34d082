//! [`SnpMemory`] over the boot page tables: the C-bit of identity-mapped RAM below 1 GiB (PD0,
//! boot.s), splitting a 2 MiB page into 4 KiB pages when a range covers it only in part, and
//! PVALIDATE through `snp::hw`. The entry arithmetic is `snp::pagetable` (host-tested).
//!
//! Contract (from `snp::pvalidate`): ranges are 4 KiB aligned and below 1 GiB. A split needs
//! a 4 KiB table from the heap; only the first 2 MiB (already split by `mm::paging`) may be
//! changed before the heap exists. A broken contract halts: a half-changed mapping of a
//! confidential guest must not run on.

use alloc::alloc::{Layout, alloc_zeroed};
use core::ops::Range;

use x86_64::VirtAddr;
use x86_64::instructions::tlb;

use crate::arch::cpu;
use crate::snp::pagetable::{self, HUGE, PAGE_2M, PAGE_4K, PRESENT, Step};
use crate::snp::pvalidate::{PageSize, PvalidateError, SnpMemory, pte_with_c_bit};

/// Highest address PD0 maps.
const PD0_END: u64 = 1 << 30;

/// The kernel's page tables as seen by the SNP sharing code.
#[derive(Debug, Clone, Copy)]
pub struct PageTables {
    c_bit: u64,
}

impl PageTables {
    /// Uses the C-bit `snp::detect` found (0 on plain boots; `snp::hw::init_ghcb` checks it
    /// against the CPUID page before anything is changed).
    pub fn new() -> Self {
        Self {
            c_bit: crate::snp::state().c_bit_mask(),
        }
    }

    /// The 4 KiB table for the 2 MiB frame holding `addr`, splitting the large page first.
    fn table_for(&self, addr: u64) -> *mut u64 {
        let pde_ptr = pd_entry(addr);
        // SAFETY: `pd_entry` points into PD0 (boot.s), live and identity-mapped.
        let pde = unsafe { pde_ptr.read_volatile() };
        if pde & PRESENT == 0 {
            cpu::halt_forever();
        }
        if pde & HUGE == 0 {
            return pagetable::table_addr(pde, self.c_bit) as *mut u64;
        }
        let Ok(layout) = Layout::from_size_align(4096, 4096) else {
            cpu::halt_forever()
        };
        // SAFETY: the layout has a non-zero size.
        let table = unsafe { alloc_zeroed(layout) }.cast::<u64>();
        if table.is_null() {
            // No heap (yet) or out of memory: cannot split, cannot continue.
            cpu::halt_forever();
        }
        for i in 0..512u64 {
            // SAFETY: `table` is a fresh, exclusively owned, page-aligned 4 KiB allocation that
            // is never freed: it becomes a live page table below.
            unsafe {
                table
                    .add(i as usize)
                    .write(pagetable::split_entry(pde, self.c_bit, i))
            };
        }
        // SAFETY: the table maps the frame exactly as the large page did (same frames, flags
        // and C-bit), so the switch is invisible; the flush drops the cached large page.
        unsafe { pde_ptr.write_volatile(pagetable::table_pde(pde, table as u64, self.c_bit)) };
        tlb::flush(VirtAddr::new(addr & !(PAGE_2M - 1)));
        table
    }

    fn set_small(&self, range: Range<u64>, encrypted: bool) {
        let table = self.table_for(range.start);
        for addr in range.step_by(PAGE_4K as usize) {
            // SAFETY: `table` is the live 4 KiB table of this frame and the index is < 512.
            unsafe {
                let pte = table.add(pagetable::pt_index(addr));
                let old = pte.read_volatile();
                if old & PRESENT != 0 {
                    pte.write_volatile(pte_with_c_bit(old, self.c_bit, encrypted));
                }
            }
            tlb::flush(VirtAddr::new(addr));
        }
    }
}

impl Default for PageTables {
    fn default() -> Self {
        Self::new()
    }
}

fn pd_entry(addr: u64) -> *mut u64 {
    // SAFETY: the index is < 512, inside the PD0 page.
    unsafe { super::paging::pd0().add(pagetable::pd_index(addr)) }
}

impl SnpMemory for PageTables {
    fn set_encrypted(&mut self, range: Range<u64>, encrypted: bool) {
        if self.c_bit == 0 {
            return;
        }
        if range.end > PD0_END {
            cpu::halt_forever();
        }
        for step in pagetable::steps(range) {
            match step {
                Step::Frame(addr) => {
                    let pde_ptr = pd_entry(addr);
                    // SAFETY: a live PD0 entry (boot.s), identity-mapped.
                    let pde = unsafe { pde_ptr.read_volatile() };
                    if pde & HUGE != 0 {
                        // SAFETY: only the C-bit of a data frame the caller owns changes.
                        unsafe {
                            pde_ptr.write_volatile(pte_with_c_bit(pde, self.c_bit, encrypted));
                        }
                        tlb::flush(VirtAddr::new(addr));
                    } else {
                        self.set_small(addr..addr + PAGE_2M, encrypted);
                    }
                }
                Step::Pages(r) => self.set_small(r, encrypted),
            }
        }
    }

    fn pvalidate(
        &mut self,
        addr: u64,
        size: PageSize,
        validate: bool,
    ) -> Result<(), PvalidateError> {
        crate::snp::hw::pvalidate_page(addr, size, validate)
    }
}
