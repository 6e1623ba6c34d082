//! The bare-metal glue (`target_os = "none"` only): the real [`Hypervisor`] (GHCB MSR and
//! VMGEXIT), the #VC entry point, and SNP bring-up (GHCB page, CPUID page, secrets page, guest
//! request pages). Everything it calls is the host-tested logic of the sibling modules.
//!
//! Bring-up is in two steps because of a chicken-and-egg problem: port I/O (serial, CMOS) and
//! most MSRs raise #VC under SNP, and only CPUID can be answered without a GHCB page; the heap
//! size comes from CMOS and the heap must be PVALIDATEd before use. So:
//! 1. [`init_ghcb`] right after `trap::init` and `snp::detect`, before any port I/O: checks the
//!    CPUID page, negotiates the GHCB protocol and shares and registers the GHCB page, which is
//!    a fixed page of the pre-validated SNP_SEC_MEM (`__snp_ghcb_page`, layout.ld), so no heap
//!    is needed. From then on #VC handles CPUID (from the CPUID page), IN/OUT, MMIO and MSRs.
//! 2. [`accept_memory`] on the heap range, then the heap, then [`init`]: the guest-request
//!    pages (heap, shared) and the VMPCK0 channel.
//!
//! `mm::snp` implements [`SnpMemory`]; `virtio::KernelHal` bounces DMA through a pool made
//! shared once with [`make_shared`] (never heap pages in place: their neighbours would leak).

use alloc::boxed::Box;
use core::ops::Range;

use spin::{Mutex, Once};

use super::cpuid::{CPUID_PAGE_SIZE, CpuidTable};
use super::ghcb::{self, GhcbError, GhcbPage, Hypervisor, MsrRequest, PageState};
use super::guest_request::{GhcbTransport, GuestChannel, GuestRequestError, MSG_PAGE_SIZE};
use super::pvalidate::{self, PageSize, ShareError, SnpMemory};
use super::secrets::{SECRETS_PAGE_SIZE, SecretsError, SecretsPage};
use super::vc::{self, MAX_INSN_LEN, Regs, VcError};
use super::{msr, status};

/// GPAs of the SNP metadata pages; they come from the image's SEV metadata (`ASEV`) table.
#[derive(Debug, Clone, Copy)]
pub struct SnpLayout {
    /// SNP_SECRETS section.
    pub secrets_gpa: u64,
    /// CPUID section.
    pub cpuid_gpa: u64,
}

unsafe extern "C" {
    /// One page of SNP_SEC_MEM reserved for the GHCB (layout.ld).
    static __snp_ghcb_page: u8;
    /// SNP_SECRETS section (layout.ld, SEV metadata type 2).
    static __snp_secrets_page: u8;
    /// CPUID section (layout.ld, SEV metadata type 3).
    static __snp_cpuid_page: u8;
}

impl SnpLayout {
    /// The pages the image's SEV metadata declares (layout.ld symbols; only their addresses).
    pub fn from_linker() -> Self {
        Self {
            secrets_gpa: (&raw const __snp_secrets_page) as u64,
            cpuid_gpa: (&raw const __snp_cpuid_page) as u64,
        }
    }
}

/// GPA of the GHCB page.
pub fn ghcb_gpa() -> u64 {
    (&raw const __snp_ghcb_page) as u64
}

/// The guest-request channel after [`init`], for the rest of the kernel.
pub static GUEST: Once<Mutex<SnpGuest>> = Once::new();

/// Asks the hypervisor to terminate the guest (GHCB #56421 §2.3.1 "Termination Request",
/// reason set 1 = this kernel, `code` = which bring-up step failed), for failures before the
/// serial port works; halts if the hypervisor returns.
pub fn terminate(code: u8) -> ! {
    if super::state().is_snp() {
        let mut hv = NoGhcb;
        let _ = hv.msr_protocol(
            MsrRequest::Terminate {
                set: ghcb::terminate::SET_UKVTPM,
                code,
            }
            .encode(),
        );
    }
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// The real hypervisor. The GHCB page has a fixed address (identity mapping: its address is
/// its GPA).
pub struct SnpHypervisor {
    page: &'static mut GhcbPage,
    registered: bool,
}

impl Hypervisor for SnpHypervisor {
    fn msr_protocol(&mut self, request: u64) -> u64 {
        // SAFETY: only constructed after `detect` saw SEV-SNP, where the GHCB MSR exists and
        // VMGEXIT is defined; the MSR-protocol request is complete, and the GHCB GPA (if any)
        // is restored afterwards so GHCB-page exits keep working (GHCB spec §2.3.1).
        unsafe {
            let saved = msr::read_ghcb_msr();
            msr::write_ghcb_msr(request);
            ghcb::vmgexit();
            let answer = msr::read_ghcb_msr();
            msr::write_ghcb_msr(saved);
            answer
        }
    }

    fn ghcb(&mut self) -> Option<&mut GhcbPage> {
        self.registered.then_some(&mut *self.page)
    }

    fn ghcb_gpa(&self) -> u64 {
        core::ptr::from_ref(&*self.page) as u64
    }

    fn ghcb_exit(&mut self) {
        let gpa = self.ghcb_gpa();
        // SAFETY: `ghcb()` only hands out the page once it is shared and registered (see
        // `init`), so the GPA in the MSR is a registered shared GHCB filled for this exit.
        unsafe {
            msr::write_ghcb_msr(gpa);
            ghcb::vmgexit();
        }
    }
}

static HV_STATE: Mutex<Option<SnpHypervisor>> = Mutex::new(None);
static CPUID_TABLE: Once<CpuidTable> = Once::new();

/// Guest request pages (shared after [`init`]).
#[repr(C, align(4096))]
struct MsgPages {
    request: [u8; MSG_PAGE_SIZE],
    response: [u8; MSG_PAGE_SIZE],
}

/// The SNP services the kernel uses after [`init`].
pub struct SnpGuest {
    channel: GuestChannel,
    pages: &'static mut MsgPages,
}

impl core::fmt::Debug for SnpGuest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SnpGuest")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// Why SNP bring-up failed (the kernel must then refuse to serve: fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// Not an SNP guest.
    NotSnp,
    /// CPUID page missing or malformed.
    CpuidPage(super::cpuid::CpuidPageError),
    /// The CPUID page's C-bit disagrees with the hypervisor's SEV information.
    CBitMismatch,
    /// Hypervisor does not offer SNP in its feature bitmap.
    NoSnpFeature,
    /// GHCB protocol failure.
    Ghcb(GhcbError),
    /// Sharing a page failed.
    Share(ShareError),
    /// Secrets page unusable.
    Secrets(SecretsError),
    /// Called twice.
    AlreadyInitialized,
}

fn page_of<T>(r: &T) -> Range<u64> {
    let a = core::ptr::from_ref(r) as u64;
    a..a + core::mem::size_of::<T>() as u64
}

/// Step 1 of the bring-up (see the module docs): the CPUID page (its C-bit must be the one
/// `snp::detect` saw), GHCB protocol negotiation, the hypervisor's SNP feature, then the GHCB
/// page made shared (rescind, MSR-protocol page-state change, C-bit off) and registered.
/// Needs no heap; `mem` must only have to touch the already 4 KiB-mapped first 2 MiB.
///
/// # Errors
/// [`InitError`].
pub fn init_ghcb(layout: SnpLayout, mem: &mut dyn SnpMemory) -> Result<(), InitError> {
    static TAKEN: Once<()> = Once::new();
    if !super::state().is_snp() {
        return Err(InitError::NotSnp);
    }
    if TAKEN.is_completed() {
        return Err(InitError::AlreadyInitialized);
    }
    TAKEN.call_once(|| ());

    // SAFETY: `cpuid_gpa` is the image's CPUID metadata section: validated private RAM, written
    // by the PSP before launch, identity-mapped, never written by the kernel.
    let cpuid_page: &[u8; CPUID_PAGE_SIZE] = unsafe { &*(layout.cpuid_gpa as *const _) };
    let table = CpuidTable::parse(cpuid_page).map_err(InitError::CpuidPage)?;
    let table = CPUID_TABLE.call_once(|| table);
    let cpuid_c_bit = (table.answer(status::CPUID_ENC_MEM_LEAF, 0, 1, 0)[1] & 0x3f) as u8;
    // `detect` learnt the C-bit from the hypervisor (MSR-protocol CPUID); the page tables use
    // it through `state().c_bit_mask()`, so it must be the PSP-checked one.
    if super::state().c_bit() != Some(cpuid_c_bit) {
        return Err(InitError::CBitMismatch);
    }

    let addr = (&raw const __snp_ghcb_page) as u64;
    // SAFETY: layout.ld reserves this page-aligned page of validated, identity-mapped RAM for
    // the GHCB alone, and `TAKEN` makes this the only reference ever created to it.
    let page: &'static mut GhcbPage = unsafe {
        let p = addr as *mut GhcbPage;
        p.write(GhcbPage::new());
        &mut *p
    };
    let mut hv = SnpHypervisor {
        page,
        registered: false,
    };
    let info = ghcb::negotiate(&mut hv).map_err(InitError::Ghcb)?;
    if info.c_bit != cpuid_c_bit {
        return Err(InitError::CBitMismatch);
    }
    let features = ghcb::decode_hv_features(hv.msr_protocol(MsrRequest::HvFeatures.encode()))
        .map_err(InitError::Ghcb)?;
    if features & ghcb::hv_features::SNP == 0 {
        return Err(InitError::NoSnpFeature);
    }

    // Share the GHCB page: rescind, MSR-protocol PSC (no GHCB yet), C-bit off, register.
    let ghcb_range = addr..addr + core::mem::size_of::<GhcbPage>() as u64;
    pvalidate::validate_range(ghcb_range.clone(), false, |a, s, v| mem.pvalidate(a, s, v))
        .map_err(|e| InitError::Share(ShareError::Pvalidate(e)))?;
    // (Launch-validated 4 KiB pages: no PSMASH can be needed, and none could be sent yet.)
    pvalidate::page_state_change_msr(&mut hv, ghcb_range.start, PageState::Shared)
        .map_err(InitError::Ghcb)?;
    mem.set_encrypted(ghcb_range.clone(), false);
    ghcb::register_ghcb(&mut hv, ghcb_range.start).map_err(InitError::Ghcb)?;
    hv.registered = true;
    hv.page.reset();
    *HV_STATE.lock() = Some(hv);
    Ok(())
}

/// Step 2 (after [`init_ghcb`] and the heap): the guest request pages (heap, shared through
/// the GHCB page-state change) and the VMPCK0 channel from the secrets page.
///
/// # Errors
/// [`InitError`]; `NotSnp` also when [`init_ghcb`] did not succeed.
pub fn init(layout: SnpLayout, mem: &mut dyn SnpMemory) -> Result<SnpGuest, InitError> {
    static INITIALIZED: Once<()> = Once::new();
    if !super::state().is_snp() || HV_STATE.lock().is_none() {
        return Err(InitError::NotSnp);
    }
    if INITIALIZED.is_completed() {
        return Err(InitError::AlreadyInitialized);
    }
    INITIALIZED.call_once(|| ());

    // Heap-allocated, page-aligned and page-sized: the shared pages hold nothing else.
    let pages: &'static mut MsgPages = Box::leak(Box::new(MsgPages {
        request: [0; MSG_PAGE_SIZE],
        response: [0; MSG_PAGE_SIZE],
    }));
    make_shared(mem, page_of(pages)).map_err(InitError::Share)?;

    // SAFETY: `secrets_gpa` is the image's SNP_SECRETS section: a private page the PSP filled
    // at launch, identity-mapped; only this function reads it and nothing writes it.
    let secrets: &[u8; SECRETS_PAGE_SIZE] = unsafe { &*(layout.secrets_gpa as *const _) };
    let secrets = SecretsPage::new(secrets).map_err(InitError::Secrets)?;
    let key = secrets.vmpck(0).map_err(InitError::Secrets)?;
    let channel = GuestChannel::new(key, secrets.msg_seqno(0));
    Ok(SnpGuest { channel, pages })
}

/// Accepts (page-state change to private + PVALIDATE) RAM outside the pre-validated ranges,
/// e.g. the heap before the allocator gets it (see [`pvalidate::accept_memory`]).
///
/// # Errors
/// [`ShareError`]; `Ghcb(MissingRegister(0))` before [`init_ghcb`].
pub fn accept_memory(mem: &mut dyn SnpMemory, range: Range<u64>) -> Result<(), ShareError> {
    with_hv(|hv| pvalidate::accept_memory(hv, mem, range))
        .ok_or(ShareError::Ghcb(GhcbError::MissingRegister(0)))?
}

impl SnpGuest {
    fn with_transport<T>(
        &mut self,
        f: impl FnOnce(&mut GuestChannel, &mut GhcbTransport<'_, SnpHypervisor>) -> T,
    ) -> Option<T> {
        let request_gpa = core::ptr::from_ref(&self.pages.request) as u64;
        let response_gpa = core::ptr::from_ref(&self.pages.response) as u64;
        let (channel, pages) = (&mut self.channel, &mut *self.pages);
        // Interrupts off while the GHCB is held (see `with_hv`).
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut guard = HV_STATE.try_lock()?;
            let hv = guard.as_mut()?;
            let mut t = GhcbTransport {
                hv,
                request_page: &mut pages.request,
                request_gpa,
                response_page: &mut pages.response,
                response_gpa,
            };
            Some(f(channel, &mut t))
        })
    }

    /// An attestation report with `report_data` (VMPL 0).
    ///
    /// # Errors
    /// [`GuestRequestError`]; `Disabled` also when the GHCB is busy.
    pub fn report(
        &mut self,
        report_data: [u8; 64],
    ) -> Result<super::guest_request::SignedReport, GuestRequestError> {
        let req = super::guest_request::ReportRequest {
            report_data,
            vmpl: 0,
            key_sel: super::guest_request::KeySel::Default,
        };
        self.with_transport(|ch, t| ch.get_report(t, &req))
            .unwrap_or(Err(GuestRequestError::Disabled))
    }

    /// The DESIGN §5 sealing root (VCEK, measurement + policy).
    ///
    /// # Errors
    /// As [`SnpGuest::report`].
    pub fn sealing_key(&mut self) -> Result<super::guest_request::DerivedKey, GuestRequestError> {
        let req = super::guest_request::KeyRequest::sealing();
        self.with_transport(|ch, t| ch.get_derived_key(t, &req))
            .unwrap_or(Err(GuestRequestError::Disabled))
    }
}

/// Runs `f` on the registered hypervisor with interrupts off: interrupt handlers touch the
/// local APIC (MMIO or x2APIC MSRs), which raises #VC, and the #VC handler needs the GHCB this
/// holds; with interrupts on, such a #VC would find it taken and halt the kernel. `None` before
/// [`init_ghcb`].
fn with_hv<T>(f: impl FnOnce(&mut SnpHypervisor) -> T) -> Option<T> {
    x86_64::instructions::interrupts::without_interrupts(|| HV_STATE.lock().as_mut().map(f))
}

/// Makes `range` shared for DMA (see [`pvalidate::make_shared`]).
///
/// # Errors
/// [`ShareError`]; `Ghcb(MissingRegister(0))` before [`init_ghcb`].
pub fn make_shared(mem: &mut dyn SnpMemory, range: Range<u64>) -> Result<(), ShareError> {
    with_hv(|hv| pvalidate::make_shared(hv, mem, range))
        .ok_or(ShareError::Ghcb(GhcbError::MissingRegister(0)))?
}

/// Makes `range` private again (see [`pvalidate::make_private`]).
///
/// # Errors
/// As [`make_shared`].
pub fn make_private(mem: &mut dyn SnpMemory, range: Range<u64>) -> Result<(), ShareError> {
    with_hv(|hv| pvalidate::make_private(hv, mem, range))
        .ok_or(ShareError::Ghcb(GhcbError::MissingRegister(0)))?
}

/// PVALIDATE for [`SnpMemory`] implementations.
///
/// # Errors
/// As [`pvalidate::pvalidate`].
pub fn pvalidate_page(
    addr: u64,
    size: PageSize,
    validate: bool,
) -> Result<(), pvalidate::PvalidateError> {
    if !super::state().is_snp() {
        return Ok(());
    }
    // SAFETY: SNP is active; `SnpMemory` callers pass aligned, private-mapped pages that hold
    // no live object (the make_shared/make_private contracts).
    unsafe { pvalidate::pvalidate(addr, size, validate) }
}

/// The #VC entry for the trap handler (vector 29, error code = exit code). Fetches the
/// instruction at `regs.rip` and emulates it; on `Ok` resume at the updated RIP.
///
/// Before [`init_ghcb`] (or when the GHCB is busy) only CPUID is answered, through the MSR
/// protocol (sub-leaf 0; untrusted values, re-checked by [`init_ghcb`] against the CPUID page).
///
/// # Errors
/// [`VcError`]: the trap handler must halt (never resume the faulting instruction).
pub fn handle_vc_trap(exit_code: u64, regs: &mut Regs) -> Result<(), VcError> {
    let mut insn = [0u8; MAX_INSN_LEN];
    for (i, b) in insn.iter_mut().enumerate() {
        // SAFETY: RIP is the faulting instruction in kernel text that the CPU just fetched;
        // the text lies inside one mapped 2 MiB ROM frame, with the boot stub and footer after
        // it, so the 15 bytes from RIP are mapped and readable.
        *b = unsafe { core::ptr::read_volatile((regs.rip + i as u64) as *const u8) };
    }
    let identity = |va: u64| Some(va);
    if let Some(mut guard) = HV_STATE.try_lock()
        && let Some(hv) = guard.as_mut()
    {
        return vc::handle(hv, CPUID_TABLE.get(), exit_code, regs, &insn, identity);
    }
    if exit_code == ghcb::exit::CPUID {
        if let Some(t) = CPUID_TABLE.get() {
            let mut none = NoGhcb;
            return vc::handle(&mut none, Some(t), exit_code, regs, &insn, identity);
        }
        let leaf = regs.gpr[vc::reg::RAX] as u32;
        let mut early = NoGhcb;
        let out = ghcb::msr_cpuid(&mut early, leaf)?;
        for (r, v) in [vc::reg::RAX, vc::reg::RBX, vc::reg::RCX, vc::reg::RDX]
            .into_iter()
            .zip(out)
        {
            regs.gpr[r] = u64::from(v);
        }
        regs.rip += 2;
        return Ok(());
    }
    Err(VcError::Unsupported(exit_code))
}

/// MSR protocol only (before the GHCB page exists).
struct NoGhcb;

impl Hypervisor for NoGhcb {
    fn msr_protocol(&mut self, request: u64) -> u64 {
        // SAFETY: reached only from a #VC, which proves SEV-ES/SNP (GHCB MSR and VMGEXIT
        // exist); the request is a complete MSR-protocol value and no GHCB is registered yet.
        unsafe {
            msr::write_ghcb_msr(request);
            ghcb::vmgexit();
            msr::read_ghcb_msr()
        }
    }
    fn ghcb(&mut self) -> Option<&mut GhcbPage> {
        None
    }
    fn ghcb_gpa(&self) -> u64 {
        0
    }
    fn ghcb_exit(&mut self) {}
}
