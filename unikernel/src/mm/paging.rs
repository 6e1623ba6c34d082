//! Finer protection for the first 2 MiB after boot: the boot stub maps RAM with 2 MiB pages;
//! here the first one is split into 4 KiB pages so that page 0 (null pointers) and the guard
//! page below each stack (layout.ld) are not present. It needs no heap (the table is a static),
//! so it runs before the heap: under SNP the GHCB page, also in the first 2 MiB, is then made
//! shared by changing one 4 KiB entry (`snp::hw::init_ghcb`).

use core::cell::UnsafeCell;

use spin::Once;
use x86_64::registers::control::Cr3;

use crate::snp::pagetable::{self, HUGE, PRESENT};

unsafe extern "C" {
    static __boot_pt_start: u8;
    static __stack_guard: u8;
    static __ist_df_guard: u8;
    static __ist_nmi_guard: u8;
    static __ist_mc_guard: u8;
}

/// Why the first 2 MiB could not be split.
#[derive(Debug, Clone, Copy)]
pub enum PagingError {
    /// The boot page tables do not map the first 2 MiB with one large page.
    UnexpectedLayout,
    /// Called twice.
    AlreadyDone,
}

/// The 4 KiB table for the first 2 MiB: a live page table once installed, written only
/// through raw pointers (here once, then by `mm::snp` for C-bit changes).
#[repr(C, align(4096))]
struct LowTable(UnsafeCell<[u64; 512]>);

// SAFETY: the kernel is single-threaded; the table is written once in `protect_low_memory`
// (guarded by a `Once`) and afterwards only by `mm::snp` through the page-table walk.
unsafe impl Sync for LowTable {}

static LOW_TABLE: LowTable = LowTable(UnsafeCell::new([0; 512]));

/// PD0, the boot page directory for 0..1 GiB (third page of the boot tables: PML4, PDPT, PD0;
/// boot.s).
pub fn pd0() -> *mut u64 {
    ((&raw const __boot_pt_start) as u64 + 0x2000) as *mut u64
}

/// Unmaps page 0 and the stack guard pages; returns how many pages were unmapped.
///
/// # Errors
/// [`PagingError`] if the boot mapping is not the one boot.s builds or this ran before.
pub fn protect_low_memory() -> Result<usize, PagingError> {
    static DONE: Once<()> = Once::new();
    if DONE.is_completed() {
        return Err(PagingError::AlreadyDone);
    }
    let c_bit = crate::snp::state().c_bit_mask();
    let guards = [
        0,
        (&raw const __stack_guard) as u64,
        (&raw const __ist_df_guard) as u64,
        (&raw const __ist_nmi_guard) as u64,
        (&raw const __ist_mc_guard) as u64,
    ];
    let pd0 = pd0();
    // SAFETY: boot.s built PD0 at this address and it stays identity-mapped and in use; reading
    // an entry has no side effect.
    let pde = unsafe { pd0.read_volatile() };
    if pde & (PRESENT | HUGE) != PRESENT | HUGE || pagetable::frame_2m(pde, c_bit) != 0 {
        return Err(PagingError::UnexpectedLayout);
    }
    DONE.call_once(|| ());
    let table = LOW_TABLE.0.get().cast::<u64>();
    let mut unmapped = 0;
    for i in 0..512u64 {
        let addr = i * 4096;
        let entry = if guards.contains(&addr) {
            unmapped += 1;
            0
        } else {
            pagetable::split_entry(pde, c_bit, i)
        };
        // SAFETY: `table` is the static, page-aligned 512-entry table, not yet installed and
        // written only here (the `Once` above).
        unsafe { table.add(i as usize).write_volatile(entry) };
    }
    let new_pde = pagetable::table_pde(pde, table as u64, c_bit);
    // SAFETY: the new table maps every page of the first 2 MiB to the same frame with the same
    // attributes (C-bit included) as before, except the guard pages and page 0, which nothing
    // may touch; the table is identity-mapped RAM. Reloading CR3 flushes the old large page.
    unsafe {
        pd0.write_volatile(new_pde);
        let (frame, flags) = Cr3::read();
        Cr3::write(frame, flags);
    }
    Ok(unmapped)
}
