//! Validating guest memory and moving pages between private and shared.
//!
//! - PVALIDATE: AMD64 APM vol. 3 (#24594), "PVALIDATE" (F2 0F 01 FF): RAX = virtual address,
//!   ECX = page size (0 = 4 KiB, 1 = 2 MiB), EDX = 1 validate / 0 rescind; EAX returns
//!   0 success, 1 FAIL_INPUT, 6 FAIL_SIZEMISMATCH; RFLAGS.CF = 1 when the RMP entry already
//!   had the requested state (nothing changed).
//! - Page-state change: GHCB #56421 §2.3.1 (MSR protocol, one page) and §4.1.6 "SNP Page State
//!   Change" (NAE 0x8000_0010): the shared buffer holds a header {CUR_ENTRY u16, END_ENTRY u16,
//!   reserved u32} and up to 253 entries {bits 11:0 CUR_PAGE, 51:12 GFN, 55:52 OPERATION,
//!   56 PAGE_SIZE}; the hypervisor advances CUR_ENTRY and may stop early.
//!
//! Under SNP only the firmware pages and the image's metadata ranges are validated at launch
//! (reference/snp-launch-and-attestation.md §3.2); all other RAM must be PVALIDATEd before
//! use: [`unvalidated_ranges`] + [`validate_range`].
//!
//! Sharing (for virtio DMA): [`make_shared`] rescinds validation, asks the hypervisor to make
//! the pages shared, then clears the C-bit; [`make_private`] does the reverse in the reverse
//! order. PVALIDATE always runs on a private (C-bit set) mapping. Contents are lost both ways:
//! share only whole pages that hold nothing but the buffer (a bounce pool), never pages of the
//! general heap, or the neighbours' bytes leak to the host.

use core::ops::Range;

use super::ghcb::{self, GhcbError, Hypervisor, MsrRequest, PageState};

/// 4 KiB.
pub const PAGE_4K: u64 = 0x1000;
/// 2 MiB.
pub const PAGE_2M: u64 = 0x20_0000;

/// PVALIDATE page size (ECX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum PageSize {
    /// 4 KiB.
    Size4K = 0,
    /// 2 MiB.
    Size2M = 1,
}

impl PageSize {
    /// Bytes.
    pub fn bytes(self) -> u64 {
        match self {
            Self::Size4K => PAGE_4K,
            Self::Size2M => PAGE_2M,
        }
    }
}

/// PVALIDATE failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvalidateError {
    /// EAX = 1: bad input (unaligned address, not guest-owned...).
    FailInput,
    /// EAX = 6: the RMP entry has the other page size.
    SizeMismatch,
    /// CF = 1: the page already had the requested validation state. For validation that is
    /// a red flag (a hypervisor trying to make the guest validate a page twice, which would let
    /// it swap contents), so it is an error here.
    NoUpdate,
    /// Any other EAX value.
    Other(u32),
}

/// Interprets PVALIDATE's EAX and CF.
pub fn pvalidate_result(eax: u32, cf: bool) -> Result<(), PvalidateError> {
    match (eax, cf) {
        (0, false) => Ok(()),
        (0, true) => Err(PvalidateError::NoUpdate),
        (1, _) => Err(PvalidateError::FailInput),
        (6, _) => Err(PvalidateError::SizeMismatch),
        (e, _) => Err(PvalidateError::Other(e)),
    }
}

/// PVALIDATE one page.
///
/// # Safety
/// Only in an SNP guest (elsewhere the opcode raises #UD). `vaddr` must be mapped private
/// (C-bit set) and aligned to `size`. Validating makes the page's old contents garbage and
/// rescinding makes further private accesses fault (#VC), so no live Rust object may sit in
/// the page unless the caller is done with it (APM vol. 3, "PVALIDATE").
#[cfg(target_arch = "x86_64")]
pub unsafe fn pvalidate(vaddr: u64, size: PageSize, validate: bool) -> Result<(), PvalidateError> {
    let eax: u64;
    let cf: u8;
    // SAFETY: the caller guarantees SNP, alignment and that nothing live is in the page.
    // PVALIDATE reads RAX/ECX/EDX, writes EAX and RFLAGS; it changes the page's RMP state,
    // which is why memory is not declared untouched.
    unsafe {
        core::arch::asm!(
            ".byte 0xf2, 0x0f, 0x01, 0xff",
            "setc {cf}",
            inout("rax") vaddr => eax,
            in("ecx") size as u32,
            in("edx") u32::from(validate),
            cf = out(reg_byte) cf,
            options(nostack),
        );
    }
    pvalidate_result(eax as u32, cf != 0)
}

/// Splits `range` (4 KiB aligned) into the largest pages PVALIDATE accepts: 2 MiB where the
/// range covers a whole aligned 2 MiB frame, else 4 KiB.
pub fn page_plan(range: Range<u64>) -> impl Iterator<Item = (u64, PageSize)> {
    let mut at = range.start & !(PAGE_4K - 1);
    let end = range.end;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let size = if at.is_multiple_of(PAGE_2M) && end - at >= PAGE_2M {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        };
        let page = (at, size);
        at += size.bytes();
        Some(page)
    })
}

/// Validates (or rescinds) every page of `range` through `op` (PVALIDATE on hardware, a model
/// in tests); a 2 MiB page the RMP holds as 4 KiB pages is retried as 512 small ones, as the
/// APM suggests for FAIL_SIZEMISMATCH.
///
/// # Errors
/// The first failure; pages before it stay in their new state.
pub fn validate_range(
    range: Range<u64>,
    validate: bool,
    mut op: impl FnMut(u64, PageSize, bool) -> Result<(), PvalidateError>,
) -> Result<(), PvalidateError> {
    for (addr, size) in page_plan(range) {
        match op(addr, size, validate) {
            Err(PvalidateError::SizeMismatch) if size == PageSize::Size2M => {
                for small in (addr..addr + PAGE_2M).step_by(PAGE_4K as usize) {
                    op(small, PageSize::Size4K, validate)?;
                }
            }
            r => r?,
        }
    }
    Ok(())
}

/// The parts of `ram` outside every range of `prevalidated` (sorted or not): what must be
/// PVALIDATEd before use. Yields at most `prevalidated.len() + 1` ranges.
pub fn unvalidated_ranges<'a>(
    ram: Range<u64>,
    prevalidated: &'a [Range<u64>],
) -> impl Iterator<Item = Range<u64>> + 'a {
    let mut at = ram.start;
    let end = ram.end;
    core::iter::from_fn(move || {
        while at < end {
            // A pre-validated range covering `at`: skip past it.
            if let Some(r) = prevalidated.iter().find(|r| r.start <= at && at < r.end) {
                at = r.end;
                continue;
            }
            // Otherwise run up to the next pre-validated range (or the end).
            let stop = prevalidated
                .iter()
                .filter(|r| r.start > at)
                .map(|r| r.start)
                .min()
                .unwrap_or(end)
                .min(end);
            let out = at..stop;
            at = stop;
            return Some(out);
        }
        None
    })
}

// ---------------------------------------------------------------------------------------------
// Page-state change

/// Most entries in one GHCB PSC request: (2032 - 8) / 8.
pub const PSC_MAX_ENTRIES: usize = 253;
/// Size of the PSC header.
pub const PSC_HEADER_SIZE: usize = 8;

/// One PSC entry (§4.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PscEntry {
    /// CUR_PAGE: 4 KiB pages of a 2 MiB entry already done (hypervisor-updated).
    pub cur_page: u16,
    /// Guest frame number.
    pub gfn: u64,
    /// Requested state.
    pub state: PageState,
    /// 2 MiB page.
    pub large: bool,
}

impl PscEntry {
    /// The 64-bit encoding.
    pub fn encode(&self) -> u64 {
        u64::from(self.cur_page & 0xfff)
            | ((self.gfn & ((1 << 40) - 1)) << 12)
            | ((self.state as u64) << 52)
            | (u64::from(self.large) << 56)
    }
}

/// Writes the PSC header and entries for `range` into `buf` (the GHCB shared buffer), at most
/// [`PSC_MAX_ENTRIES`]; returns the address after the last page covered.
pub fn encode_psc(range: Range<u64>, state: PageState, buf: &mut [u8]) -> u64 {
    let mut n = 0usize;
    let mut next = range.start;
    for (addr, size) in page_plan(range).take(PSC_MAX_ENTRIES) {
        let e = PscEntry {
            cur_page: 0,
            gfn: addr >> 12,
            state,
            large: size == PageSize::Size2M,
        };
        let at = PSC_HEADER_SIZE + 8 * n;
        buf[at..at + 8].copy_from_slice(&e.encode().to_le_bytes());
        n += 1;
        next = addr + size.bytes();
    }
    // CUR_ENTRY 0, END_ENTRY = last index.
    buf[0..2].copy_from_slice(&0u16.to_le_bytes());
    buf[2..4].copy_from_slice(&(n.saturating_sub(1) as u16).to_le_bytes());
    buf[4..8].fill(0);
    next
}

/// (CUR_ENTRY, END_ENTRY) of a PSC buffer.
pub fn psc_progress(buf: &[u8]) -> (u16, u16) {
    (
        u16::from_le_bytes([buf[0], buf[1]]),
        u16::from_le_bytes([buf[2], buf[3]]),
    )
}

/// Changes the state of `range` with GHCB PSC requests, re-issuing while the hypervisor
/// processes a request only partly, and refusing a hypervisor that makes no progress.
///
/// # Errors
/// [`GhcbError`] from the exit, SW_EXITINFO2 != 0, or a stalled request.
pub fn page_state_change<H: Hypervisor + ?Sized>(
    hv: &mut H,
    range: Range<u64>,
    state: PageState,
) -> Result<(), GhcbError> {
    let mut at = range.start;
    while at < range.end {
        let mut next = at;
        let mut first = true;
        loop {
            let mut prev_cur = 0u16;
            ghcb::ghcb_call(hv, ghcb::exit::SNP_PSC, 0, 0, |g, gpa| {
                if first {
                    next = encode_psc(at..range.end, state, g.shared_buffer_mut());
                }
                prev_cur = psc_progress(g.shared_buffer()).0;
                g.set_qword(
                    ghcb::field::SW_SCRATCH,
                    gpa + ghcb::field::SHARED_BUFFER as u64,
                );
            })?;
            first = false;
            let page = hv.ghcb().ok_or(GhcbError::MissingRegister(0))?;
            let info2 = page.qword(ghcb::field::SW_EXIT_INFO_2);
            if info2 != 0 {
                return Err(GhcbError::PageStateChange(info2));
            }
            let (cur, end) = psc_progress(page.shared_buffer());
            if cur > end {
                break;
            }
            if cur <= prev_cur {
                return Err(GhcbError::PageStateChange(u64::from(cur)));
            }
        }
        at = next;
    }
    Ok(())
}

/// Changes one 4 KiB page's state with the MSR protocol (no GHCB page needed: used to share
/// the GHCB page itself).
///
/// # Errors
/// As [`ghcb::decode_psc`].
pub fn page_state_change_msr<H: Hypervisor + ?Sized>(
    hv: &mut H,
    gpa: u64,
    state: PageState,
) -> Result<(), GhcbError> {
    ghcb::decode_psc(
        hv.msr_protocol(
            MsrRequest::PageStateChange {
                gfn: gpa >> 12,
                state,
            }
            .encode(),
        ),
    )
}

/// What sharing needs from the memory manager: the page tables (C-bit) and PVALIDATE.
/// Memory is identity-mapped, so virtual and guest-physical addresses are equal.
pub trait SnpMemory {
    /// Sets (`true`) or clears the C-bit of every 4 KiB mapping of `range` and flushes the TLB
    /// for it (splitting large pages as needed).
    fn set_encrypted(&mut self, range: Range<u64>, encrypted: bool);
    /// PVALIDATE one page ([`pvalidate`] on hardware).
    ///
    /// # Errors
    /// As [`pvalidate`].
    fn pvalidate(
        &mut self,
        addr: u64,
        size: PageSize,
        validate: bool,
    ) -> Result<(), PvalidateError>;
}

/// Why sharing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareError {
    /// Range not 4 KiB aligned or empty.
    Alignment,
    /// PVALIDATE failed.
    Pvalidate(PvalidateError),
    /// The page-state change failed.
    Ghcb(GhcbError),
}

fn check_range(range: &Range<u64>) -> Result<(), ShareError> {
    if range.start >= range.end
        || !range.start.is_multiple_of(PAGE_4K)
        || !range.end.is_multiple_of(PAGE_4K)
    {
        Err(ShareError::Alignment)
    } else {
        Ok(())
    }
}

/// Private → shared: rescind validation (on the private mapping), page-state change to
/// shared, then clear the C-bit. The contents are lost.
///
/// # Errors
/// [`ShareError`]; a failure leaves the range unusable (neither validated nor mapped shared).
pub fn make_shared<H: Hypervisor + ?Sized>(
    hv: &mut H,
    mem: &mut dyn SnpMemory,
    range: Range<u64>,
) -> Result<(), ShareError> {
    check_range(&range)?;
    rescind_range(hv, mem, range.clone())?;
    page_state_change(hv, range.clone(), PageState::Shared).map_err(ShareError::Ghcb)?;
    mem.set_encrypted(range, false);
    Ok(())
}

/// Rescinds validation of every page of `range` (2 MiB pages where the range allows). The
/// RMP page size must match PVALIDATE's (APM vol. 3, "PVALIDATE": FAIL_SIZEMISMATCH):
/// - a 2 MiB request on 4 KiB RMP entries is retried as 512 small ones ([`validate_range`]);
/// - a 4 KiB request inside a frame validated as one 2 MiB entry (accepted heap RAM) needs the
///   hypervisor to PSMASH that entry first (GHCB #56421 §4.1.6, operation 3), then is retried.
///
/// # Errors
/// [`ShareError`].
pub fn rescind_range<H: Hypervisor + ?Sized>(
    hv: &mut H,
    mem: &mut dyn SnpMemory,
    range: Range<u64>,
) -> Result<(), ShareError> {
    for (addr, size) in page_plan(range) {
        match size {
            PageSize::Size2M => validate_range(addr..addr + PAGE_2M, false, |a, s, v| {
                mem.pvalidate(a, s, v)
            })
            .map_err(ShareError::Pvalidate)?,
            PageSize::Size4K => match mem.pvalidate(addr, PageSize::Size4K, false) {
                Err(PvalidateError::SizeMismatch) => {
                    let frame = addr & !(PAGE_2M - 1);
                    page_state_change(hv, frame..frame + PAGE_2M, PageState::Psmash)
                        .map_err(ShareError::Ghcb)?;
                    mem.pvalidate(addr, PageSize::Size4K, false)
                        .map_err(ShareError::Pvalidate)?;
                }
                r => r.map_err(ShareError::Pvalidate)?,
            },
        }
    }
    Ok(())
}

/// Shared → private: set the C-bit, page-state change to private, then validate. The
/// contents are garbage until written.
///
/// # Errors
/// [`ShareError`].
pub fn make_private<H: Hypervisor + ?Sized>(
    hv: &mut H,
    mem: &mut dyn SnpMemory,
    range: Range<u64>,
) -> Result<(), ShareError> {
    check_range(&range)?;
    mem.set_encrypted(range.clone(), true);
    page_state_change(hv, range.clone(), PageState::Private).map_err(ShareError::Ghcb)?;
    validate_range(range, true, |a, s, v| mem.pvalidate(a, s, v)).map_err(ShareError::Pvalidate)
}

/// Accepts RAM that is mapped private but was not validated at launch (the heap: everything
/// outside the SEV metadata ranges): page-state change to private, then PVALIDATE in 2 MiB
/// pages where the range allows, else 4 KiB (reference/snp-launch-and-attestation.md §3.2;
/// GHCB #56421 §4.1.6). Unlike [`make_private`] it leaves the page tables alone: the boot
/// mapping already carries the C-bit, and changing it could need a page-table allocation
/// before there is a heap.
///
/// # Errors
/// [`ShareError`]; a page validated twice (`NoUpdate`) is an error (the hypervisor may be
/// replaying a page).
pub fn accept_memory<H: Hypervisor + ?Sized>(
    hv: &mut H,
    mem: &mut dyn SnpMemory,
    range: Range<u64>,
) -> Result<(), ShareError> {
    check_range(&range)?;
    page_state_change(hv, range.clone(), PageState::Private).map_err(ShareError::Ghcb)?;
    validate_range(range, true, |a, s, v| mem.pvalidate(a, s, v)).map_err(ShareError::Pvalidate)
}

/// The page-table entry with the C-bit set or cleared (`c_bit_mask` from
/// [`super::SnpState::c_bit_mask`]; 0 leaves the entry alone on plain boots).
pub fn pte_with_c_bit(pte: u64, c_bit_mask: u64, encrypted: bool) -> u64 {
    if encrypted {
        pte | c_bit_mask
    } else {
        pte & !c_bit_mask
    }
}

#[cfg(test)]
mod tests;
