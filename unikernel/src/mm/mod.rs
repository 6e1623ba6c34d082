//! Memory: the kernel heap over the RAM that `layout.ld` leaves free, and the symbols that
//! describe the static layout.

pub mod paging;
pub mod snp;

use core::ops::Range;

use talc::{ErrOnOom, Span, Talc, Talck};

#[global_allocator]
static ALLOCATOR: Talck<spin::Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();

unsafe extern "C" {
    static __heap_start: u8;
    static __stack_top: u8;
    static __ist_df_top: u8;
    static __ist_nmi_top: u8;
    static __ist_mc_top: u8;
}

/// Heap is capped here: the boot page tables identity-map RAM only in the first GiB.
const RAM_LIMIT: u64 = 1 << 30;
/// Same as `HEAP_MIN` in layout.ld.
pub const HEAP_MIN: usize = 2 << 20;

/// Tops of the kernel stack and the IST stacks (#DF, NMI, #MC) from layout.ld.
pub fn stack_tops() -> (u64, [u64; 3]) {
    // Only the addresses of linker-defined symbols are taken, never the bytes behind them.
    let main = (&raw const __stack_top) as u64;
    let df = (&raw const __ist_df_top) as u64;
    let nmi = (&raw const __ist_nmi_top) as u64;
    let mc = (&raw const __ist_mc_top) as u64;
    (main, [df, nmi, mc])
}

/// Why the heap could not be set up.
#[derive(Debug, Clone, Copy)]
pub struct HeapTooSmall {
    /// Bytes available.
    pub available: u64,
}

/// The heap: `[__heap_start, min(ram_top, 1 GiB))`. Under SNP it lies outside the
/// pre-validated SNP_SEC_MEM, so it must be accepted (`snp::hw::accept_memory`) before
/// [`init_heap`] hands it to the allocator.
///
/// # Errors
/// [`HeapTooSmall`] when less than [`HEAP_MIN`] is left (QEMU `-m` too small).
pub fn heap_range(ram_top: u64) -> Result<Range<u64>, HeapTooSmall> {
    let start = (&raw const __heap_start) as u64;
    let end = ram_top.min(RAM_LIMIT) & !0xfff;
    let available = end.saturating_sub(start);
    if available < HEAP_MIN as u64 {
        return Err(HeapTooSmall { available });
    }
    Ok(start..end)
}

/// Hands `range` (from [`heap_range`]) to the allocator; returns the heap size.
///
/// # Errors
/// [`HeapTooSmall`] if the allocator refuses the span.
pub fn init_heap(range: Range<u64>) -> Result<u64, HeapTooSmall> {
    let available = range.end - range.start;
    let span = Span::new(range.start as *mut u8, range.end as *mut u8);
    // SAFETY: [start, end) is RAM (CMOS says so), identity-mapped writable by the boot page
    // tables (and accepted under SNP), and layout.ld puts nothing at or after __heap_start;
    // `heap_range` is the only source of the range and the kernel claims it exactly once.
    unsafe { ALLOCATOR.lock().claim(span) }.map_err(|()| HeapTooSmall { available })?;
    Ok(available)
}
