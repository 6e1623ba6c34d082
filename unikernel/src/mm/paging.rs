//! Finer protection for the first 2 MiB after boot: the boot stub maps RAM with 2 MiB pages;
//! here the first one is split into 4 KiB pages so that page 0 (null pointers) and the guard
//! page below each stack (layout.ld) are not present.

use alloc::alloc::{Layout, alloc_zeroed};

use x86_64::registers::control::Cr3;

unsafe extern "C" {
    static __boot_pt_start: u8;
    static __stack_guard: u8;
    static __ist_df_guard: u8;
    static __ist_nmi_guard: u8;
    static __ist_mc_guard: u8;
}

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;
/// Bits of a 2 MiB entry that carry over to its 4 KiB entries: PWT, PCD, the address bits
/// above 2 MiB (zero for the first frame, so only an encryption bit such as SEV's C-bit can be
/// set there) and the high attribute bits (NX).
const INHERITED: u64 = (1 << 3) | (1 << 4) | 0x000f_ffff_ffe0_0000 | 0xfff0_0000_0000_0000;

/// Why the first 2 MiB could not be split.
#[derive(Debug, Clone, Copy)]
pub enum PagingError {
    /// The boot page tables do not map the first 2 MiB with one large page.
    UnexpectedLayout,
    /// No heap for the page table.
    OutOfMemory,
}

/// Unmaps page 0 and the stack guard pages; returns how many pages were unmapped.
///
/// # Errors
/// [`PagingError`] if the boot mapping is not the one boot.s builds or the heap is empty.
pub fn protect_low_memory() -> Result<usize, PagingError> {
    let guards = [
        0,
        (&raw const __stack_guard) as u64,
        (&raw const __ist_df_guard) as u64,
        (&raw const __ist_nmi_guard) as u64,
        (&raw const __ist_mc_guard) as u64,
    ];
    // PD0 is the third page of the boot tables (PML4, PDPT, PD0, ...; boot.s).
    let pd0 = ((&raw const __boot_pt_start) as u64 + 0x2000) as *mut u64;
    // SAFETY: boot.s built PD0 at this address and it stays identity-mapped and in use; reading
    // an entry has no side effect.
    let pde = unsafe { pd0.read_volatile() };
    if pde & (PRESENT | HUGE) != PRESENT | HUGE || pde & 0x000f_ffff_ffe0_0000 & !INHERITED != 0 {
        return Err(PagingError::UnexpectedLayout);
    }
    let layout = Layout::from_size_align(4096, 4096).map_err(|_| PagingError::OutOfMemory)?;
    // SAFETY: the layout has a non-zero size.
    let table = unsafe { alloc_zeroed(layout) }.cast::<u64>();
    if table.is_null() {
        return Err(PagingError::OutOfMemory);
    }
    let mut unmapped = 0;
    for i in 0..512u64 {
        let addr = i * 4096;
        let entry = if guards.contains(&addr) {
            unmapped += 1;
            0
        } else {
            addr | (pde & INHERITED) | PRESENT | WRITABLE
        };
        // SAFETY: `table` is a fresh, exclusively owned, page-aligned 4 KiB allocation (512
        // entries) that is never freed: it becomes a live page table below.
        unsafe { table.add(i as usize).write(entry) };
    }
    let new_pde = table as u64 | (pde & INHERITED & !0x000f_ffff_ffe0_0000) | PRESENT | WRITABLE;
    // SAFETY: the new table maps every page of the first 2 MiB to the same frame with the same
    // attributes as before, except the guard pages and page 0, which nothing may touch; the
    // heap (where the table lives) is identity-mapped. Reloading CR3 flushes the old large page.
    unsafe {
        pd0.write_volatile(new_pde);
        let (frame, flags) = Cr3::read();
        Cr3::write(frame, flags);
    }
    Ok(unmapped)
}
