//! The Guest-Hypervisor Communication Block protocol: SEV-ES Guest-Hypervisor Communication
//! Block Standardization, AMD #56421 (revision 2.03), for SEV-SNP guests.
//!
//! Two ways to talk to the hypervisor, both ending in VMGEXIT:
//! - the **MSR protocol** (§2.3.1, "GHCB MSR Protocol"): one 64-bit value in the GHCB MSR,
//!   bits 11:0 say what it is. Used before a GHCB page exists and for page-state changes;
//! - the **GHCB page** (§2.5, "GHCB Layout", Table 3 in rev. 2.03): a shared 4 KiB page holding
//!   a copy of the save-area fields the exit needs, a valid bitmap saying which of them were
//!   written, `SW_EXITCODE`/`SW_EXITINFO1`/`SW_EXITINFO2`/`SW_SCRATCH` and a shared buffer.
//!
//! Everything here is pure encoding and decoding, unit-tested against the tables; the only
//! instruction is [`vmgexit`], and [`Hypervisor`] is the seam the kernel implements on hardware
//! ([`super::hw`]) and the tests implement with a model.

/// GHCB protocol version this kernel speaks (SNP needs at least 2: §2.2).
pub const GHCB_PROTOCOL_VERSION: u16 = 2;
/// `GHCB_USAGE` for the standard layout (§2.5).
pub const GHCB_USAGE_STANDARD: u32 = 0;
/// Size of the GHCB page.
pub const GHCB_SIZE: usize = 4096;
/// Size of the shared buffer (`0x800..0xFF0`).
pub const SHARED_BUFFER_SIZE: usize = 2032;

/// Why a hypervisor exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GhcbError {
    /// The MSR-protocol answer has the wrong GHCBInfo code (or a mismatched field).
    UnexpectedResponse {
        /// GHCBInfo expected.
        expected: u16,
        /// Whole value returned.
        got: u64,
    },
    /// The hypervisor supports no GHCB protocol version this kernel speaks.
    UnsupportedProtocol {
        /// Minimum version the hypervisor supports.
        min: u16,
        /// Maximum version the hypervisor supports.
        max: u16,
    },
    /// The hypervisor refused the GHCB exit: SW_EXITINFO1[31:0] != 0 (§4.1.5); info2 is
    /// SW_EXITINFO2 (for value 1 an exception to inject).
    ExitFailed {
        /// SW_EXITINFO1.
        info1: u64,
        /// SW_EXITINFO2.
        info2: u64,
    },
    /// A register the answer must carry is not marked valid in the bitmap.
    MissingRegister(usize),
    /// A page-state change failed (MSR protocol error code, or the GHCB PSC structure stopped).
    PageStateChange(u64),
}

// ---------------------------------------------------------------------------------------------
// MSR protocol (§2.3.1)

/// GHCBInfo codes, bits 11:0 of the GHCB MSR value (§2.3.1, Table 2 in rev. 2.03).
pub mod info {
    /// SEV information response (hypervisor to guest).
    pub const SEV_INFO_RESP: u16 = 0x001;
    /// SEV information request.
    pub const SEV_INFO_REQ: u16 = 0x002;
    /// CPUID request.
    pub const CPUID_REQ: u16 = 0x004;
    /// CPUID response.
    pub const CPUID_RESP: u16 = 0x005;
    /// Preferred GHCB GPA request.
    pub const PREFERRED_GHCB_GPA_REQ: u16 = 0x010;
    /// Preferred GHCB GPA response.
    pub const PREFERRED_GHCB_GPA_RESP: u16 = 0x011;
    /// Register GHCB GPA request (SNP).
    pub const REGISTER_GHCB_GPA_REQ: u16 = 0x012;
    /// Register GHCB GPA response.
    pub const REGISTER_GHCB_GPA_RESP: u16 = 0x013;
    /// SNP page state change request.
    pub const PSC_REQ: u16 = 0x014;
    /// SNP page state change response.
    pub const PSC_RESP: u16 = 0x015;
    /// Hypervisor feature support request.
    pub const HV_FEATURES_REQ: u16 = 0x080;
    /// Hypervisor feature support response.
    pub const HV_FEATURES_RESP: u16 = 0x081;
    /// Termination request.
    pub const TERMINATE_REQ: u16 = 0x100;
}

/// CPUID register selector of the MSR-protocol CPUID request, bits 31:30.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CpuidReg {
    /// EAX.
    Eax = 0,
    /// EBX.
    Ebx = 1,
    /// ECX.
    Ecx = 2,
    /// EDX.
    Edx = 3,
}

/// Page state of a page-state change request (§2.3.1 and §4.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageState {
    /// Assigned to the guest (private, encrypted).
    Private = 1,
    /// Shared with the hypervisor.
    Shared = 2,
    /// GHCB page-state change only (§4.1.6 operation 3, "PSMASH hint"): ask the hypervisor to
    /// split a 2 MiB RMP entry into 512 4 KiB entries (state and validation kept), so that one
    /// 4 KiB page of a frame validated as 2 MiB can be rescinded.
    Psmash = 3,
}

/// Termination reason code sets and codes (§2.3.1, "Termination Request").
pub mod terminate {
    /// Reason code set 0: general.
    pub const SET_GENERAL: u8 = 0;
    /// General termination request.
    pub const GENERAL: u8 = 0;
    /// SEV-ES / GHCB protocol range not supported.
    pub const PROTOCOL_UNSUPPORTED: u8 = 1;
    /// SEV-SNP features not supported.
    pub const SNP_UNSUPPORTED: u8 = 2;
    /// Reason code set 1: this kernel's own reasons.
    pub const SET_UKVTPM: u8 = 1;
}

/// An MSR-protocol request, guest to hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrRequest {
    /// SEV information (protocol range, C-bit).
    SevInfo,
    /// One CPUID register: bits 63:32 leaf, 31:30 register.
    Cpuid {
        /// CPUID function (EAX input); sub-leaf is not expressible (0).
        leaf: u32,
        /// Register wanted.
        reg: CpuidReg,
    },
    /// Register the GHCB's guest frame number: bits 63:12.
    RegisterGhcb {
        /// GFN of the GHCB page.
        gfn: u64,
    },
    /// Change one 4 KiB page's state: bits 55:52 operation, 51:12 GFN.
    PageStateChange {
        /// GFN.
        gfn: u64,
        /// New state.
        state: PageState,
    },
    /// Hypervisor feature bitmap.
    HvFeatures,
    /// Terminate the guest: bits 15:12 reason code set, 23:16 reason code.
    Terminate {
        /// Reason code set (4 bits).
        set: u8,
        /// Reason code.
        code: u8,
    },
}

const GFN_MASK_40: u64 = (1 << 40) - 1;

impl MsrRequest {
    /// The GHCB MSR value.
    pub fn encode(self) -> u64 {
        match self {
            Self::SevInfo => u64::from(info::SEV_INFO_REQ),
            Self::Cpuid { leaf, reg } => {
                (u64::from(leaf) << 32) | ((reg as u64) << 30) | u64::from(info::CPUID_REQ)
            }
            Self::RegisterGhcb { gfn } => (gfn << 12) | u64::from(info::REGISTER_GHCB_GPA_REQ),
            Self::PageStateChange { gfn, state } => {
                ((state as u64) << 52) | ((gfn & GFN_MASK_40) << 12) | u64::from(info::PSC_REQ)
            }
            Self::HvFeatures => u64::from(info::HV_FEATURES_REQ),
            Self::Terminate { set, code } => {
                (u64::from(code) << 16)
                    | (u64::from(set & 0xf) << 12)
                    | u64::from(info::TERMINATE_REQ)
            }
        }
    }
}

/// SEV information response: bits 63:48 max version, 47:32 min version, 31:24 C-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevInfo {
    /// Highest GHCB protocol version the hypervisor supports.
    pub max_version: u16,
    /// Lowest GHCB protocol version the hypervisor supports.
    pub min_version: u16,
    /// Page-table encryption bit, as the hypervisor says (untrusted: compare with CPUID page).
    pub c_bit: u8,
}

fn info_of(value: u64) -> u16 {
    (value & 0xfff) as u16
}

fn expect_info(value: u64, expected: u16) -> Result<(), GhcbError> {
    if info_of(value) == expected {
        Ok(())
    } else {
        Err(GhcbError::UnexpectedResponse {
            expected,
            got: value,
        })
    }
}

/// Decodes a SEV information response and checks the protocol range covers ours.
///
/// # Errors
/// Wrong GHCBInfo, or [`GhcbError::UnsupportedProtocol`].
pub fn decode_sev_info(value: u64) -> Result<SevInfo, GhcbError> {
    expect_info(value, info::SEV_INFO_RESP)?;
    let si = SevInfo {
        max_version: (value >> 48) as u16,
        min_version: (value >> 32) as u16,
        c_bit: (value >> 24) as u8,
    };
    if !(si.min_version..=si.max_version).contains(&GHCB_PROTOCOL_VERSION) {
        return Err(GhcbError::UnsupportedProtocol {
            min: si.min_version,
            max: si.max_version,
        });
    }
    Ok(si)
}

/// Decodes a CPUID response for `reg`: bits 63:32 the value.
///
/// # Errors
/// Wrong GHCBInfo or a different register in bits 31:30.
pub fn decode_cpuid(value: u64, reg: CpuidReg) -> Result<u32, GhcbError> {
    expect_info(value, info::CPUID_RESP)?;
    if ((value >> 30) & 3) as u8 != reg as u8 {
        return Err(GhcbError::UnexpectedResponse {
            expected: info::CPUID_RESP,
            got: value,
        });
    }
    Ok((value >> 32) as u32)
}

/// Checks a register-GHCB response echoes `gfn`.
///
/// # Errors
/// Wrong GHCBInfo or GFN.
pub fn decode_register_ghcb(value: u64, gfn: u64) -> Result<(), GhcbError> {
    expect_info(value, info::REGISTER_GHCB_GPA_RESP)?;
    if value >> 12 != gfn {
        return Err(GhcbError::UnexpectedResponse {
            expected: info::REGISTER_GHCB_GPA_RESP,
            got: value,
        });
    }
    Ok(())
}

/// Checks a page-state-change response: bits 63:32 are the error code, 0 on success.
///
/// # Errors
/// Wrong GHCBInfo, or [`GhcbError::PageStateChange`] with the error code.
pub fn decode_psc(value: u64) -> Result<(), GhcbError> {
    expect_info(value, info::PSC_RESP)?;
    match value >> 32 {
        0 => Ok(()),
        e => Err(GhcbError::PageStateChange(e)),
    }
}

/// Decodes the hypervisor feature bitmap (bits 63:12).
///
/// # Errors
/// Wrong GHCBInfo.
pub fn decode_hv_features(value: u64) -> Result<u64, GhcbError> {
    expect_info(value, info::HV_FEATURES_RESP)?;
    Ok(value >> 12)
}

/// Hypervisor feature bits (§2.3.1, "Hypervisor Feature Support").
pub mod hv_features {
    /// SEV-SNP is supported by the hypervisor.
    pub const SNP: u64 = 1 << 0;
    /// SNP AP creation NAE event.
    pub const SNP_AP_CREATION: u64 = 1 << 1;
    /// SNP restricted injection.
    pub const SNP_RESTRICTED_INJECTION: u64 = 1 << 2;
}

// ---------------------------------------------------------------------------------------------
// Exit codes (§4.1, Table 6 "Non-Automatic Exit Events" and AMD64 APM vol. 2 Appendix C)

/// SW_EXITCODE values.
pub mod exit {
    /// DR7 read.
    pub const DR7_READ: u64 = 0x27;
    /// DR7 write.
    pub const DR7_WRITE: u64 = 0x37;
    /// RDTSC.
    pub const RDTSC: u64 = 0x6E;
    /// RDPMC.
    pub const RDPMC: u64 = 0x6F;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// INVD.
    pub const INVD: u64 = 0x76;
    /// IN/OUT.
    pub const IOIO: u64 = 0x7B;
    /// RDMSR/WRMSR.
    pub const MSR: u64 = 0x7C;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// RDTSCP.
    pub const RDTSCP: u64 = 0x87;
    /// WBINVD.
    pub const WBINVD: u64 = 0x89;
    /// Nested page fault (MMIO: reserved-bit NPF reflected as #VC).
    pub const NPF: u64 = 0x400;
    /// MMIO read (software-defined).
    pub const MMIO_READ: u64 = 0x8000_0001;
    /// MMIO write.
    pub const MMIO_WRITE: u64 = 0x8000_0002;
    /// NMI complete.
    pub const NMI_COMPLETE: u64 = 0x8000_0003;
    /// AP reset hold.
    pub const AP_RESET_HOLD: u64 = 0x8000_0004;
    /// AP jump table.
    pub const AP_JUMP_TABLE: u64 = 0x8000_0005;
    /// SNP page state change (GHCB PSC structure in the shared buffer).
    pub const SNP_PSC: u64 = 0x8000_0010;
    /// SNP guest request.
    pub const SNP_GUEST_REQUEST: u64 = 0x8000_0011;
    /// SNP extended guest request.
    pub const SNP_EXT_GUEST_REQUEST: u64 = 0x8000_0012;
    /// SNP AP creation.
    pub const SNP_AP_CREATION: u64 = 0x8000_0013;
    /// Hypervisor feature support.
    pub const HV_FEATURES: u64 = 0x8000_FFFD;
    /// Termination request.
    pub const TERMINATE: u64 = 0x8000_FFFE;
    /// Unsupported.
    pub const UNSUPPORTED: u64 = 0x8000_FFFF;
}

// ---------------------------------------------------------------------------------------------
// GHCB page layout (§2.5, Table 3): the save-area offsets are those of the VMSA.

/// Byte offsets in the GHCB page.
pub mod field {
    /// CPL (1 byte).
    pub const CPL: usize = 0x0CB;
    /// XSS.
    pub const XSS: usize = 0x140;
    /// DR7.
    pub const DR7: usize = 0x160;
    /// RIP.
    pub const RIP: usize = 0x178;
    /// RSP.
    pub const RSP: usize = 0x1D8;
    /// RAX.
    pub const RAX: usize = 0x1F8;
    /// RCX.
    pub const RCX: usize = 0x308;
    /// RDX.
    pub const RDX: usize = 0x310;
    /// RBX.
    pub const RBX: usize = 0x318;
    /// RBP.
    pub const RBP: usize = 0x328;
    /// RSI.
    pub const RSI: usize = 0x330;
    /// RDI.
    pub const RDI: usize = 0x338;
    /// R8; R9..R15 follow at 8-byte steps.
    pub const R8: usize = 0x340;
    /// R15.
    pub const R15: usize = 0x378;
    /// SW_EXITCODE.
    pub const SW_EXIT_CODE: usize = 0x390;
    /// SW_EXITINFO1.
    pub const SW_EXIT_INFO_1: usize = 0x398;
    /// SW_EXITINFO2.
    pub const SW_EXIT_INFO_2: usize = 0x3A0;
    /// SW_SCRATCH: GPA of the buffer for MMIO/string I/O/PSC.
    pub const SW_SCRATCH: usize = 0x3A8;
    /// XCR0.
    pub const XCR0: usize = 0x3E8;
    /// VALID_BITMAP (16 bytes): bit n = the quadword at offset 8n was written.
    pub const VALID_BITMAP: usize = 0x3F0;
    /// X87_STATE_GPA.
    pub const X87_STATE_GPA: usize = 0x400;
    /// End of the save area (rest of the first 2 KiB reserved).
    pub const SAVE_AREA_END: usize = 0x408;
    /// SHARED_BUFFER (2032 bytes).
    pub const SHARED_BUFFER: usize = 0x800;
    /// PROTOCOL_VERSION (u16).
    pub const PROTOCOL_VERSION: usize = 0xFFA;
    /// GHCB_USAGE (u32).
    pub const GHCB_USAGE: usize = 0xFFC;
}

/// The GHCB page. Plain bytes with offset accessors (no `unsafe`); the hypervisor reads and
/// writes it only during VMGEXIT. Under SNP the page must be mapped shared (C-bit clear) and
/// its state changed to shared before its GPA is registered.
#[repr(C, align(4096))]
#[derive(Clone)]
pub struct GhcbPage {
    bytes: [u8; GHCB_SIZE],
}

impl core::fmt::Debug for GhcbPage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GhcbPage")
            .field("sw_exit_code", &self.qword(field::SW_EXIT_CODE))
            .finish_non_exhaustive()
    }
}

impl Default for GhcbPage {
    fn default() -> Self {
        Self::new()
    }
}

impl GhcbPage {
    /// A zeroed page.
    pub const fn new() -> Self {
        Self {
            bytes: [0; GHCB_SIZE],
        }
    }

    /// The raw page.
    pub fn as_bytes(&self) -> &[u8; GHCB_SIZE] {
        &self.bytes
    }

    /// Clears the save area and the valid bitmap (before every new exit, as §2.5 asks), and
    /// writes PROTOCOL_VERSION and GHCB_USAGE.
    pub fn reset(&mut self) {
        self.bytes[..field::SAVE_AREA_END].fill(0);
        self.bytes[field::PROTOCOL_VERSION..field::PROTOCOL_VERSION + 2]
            .copy_from_slice(&GHCB_PROTOCOL_VERSION.to_le_bytes());
        self.bytes[field::GHCB_USAGE..field::GHCB_USAGE + 4]
            .copy_from_slice(&GHCB_USAGE_STANDARD.to_le_bytes());
    }

    /// Reads the quadword at `offset` (must be 8-aligned, inside the page).
    pub fn qword(&self, offset: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[offset..offset + 8]);
        u64::from_le_bytes(b)
    }

    /// Writes a save-area quadword and marks it valid.
    pub fn set_qword(&mut self, offset: usize, value: u64) {
        self.bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        self.set_valid(offset);
    }

    /// Writes CPL (a byte field; its valid bit is that of its quadword, 25).
    pub fn set_cpl(&mut self, cpl: u8) {
        self.bytes[field::CPL] = cpl;
        self.set_valid(field::CPL);
    }

    /// Marks the quadword containing `offset` valid: bit `offset / 8` of VALID_BITMAP.
    pub fn set_valid(&mut self, offset: usize) {
        let bit = offset / 8;
        self.bytes[field::VALID_BITMAP + bit / 8] |= 1 << (bit % 8);
    }

    /// Whether the quadword containing `offset` is marked valid.
    pub fn is_valid(&self, offset: usize) -> bool {
        let bit = offset / 8;
        self.bytes[field::VALID_BITMAP + bit / 8] & (1 << (bit % 8)) != 0
    }

    /// A quadword the hypervisor must have returned (valid bit set).
    ///
    /// # Errors
    /// [`GhcbError::MissingRegister`] when its valid bit is clear.
    pub fn returned_qword(&self, offset: usize) -> Result<u64, GhcbError> {
        if self.is_valid(offset) {
            Ok(self.qword(offset))
        } else {
            Err(GhcbError::MissingRegister(offset))
        }
    }

    /// The shared buffer.
    pub fn shared_buffer(&self) -> &[u8] {
        &self.bytes[field::SHARED_BUFFER..field::SHARED_BUFFER + SHARED_BUFFER_SIZE]
    }

    /// The shared buffer, writable.
    pub fn shared_buffer_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[field::SHARED_BUFFER..field::SHARED_BUFFER + SHARED_BUFFER_SIZE]
    }

    /// Fills SW_EXITCODE, SW_EXITINFO1 and SW_EXITINFO2 (all marked valid).
    pub fn set_exit(&mut self, code: u64, info1: u64, info2: u64) {
        self.set_qword(field::SW_EXIT_CODE, code);
        self.set_qword(field::SW_EXIT_INFO_1, info1);
        self.set_qword(field::SW_EXIT_INFO_2, info2);
    }

    /// The hypervisor's verdict after VMGEXIT: SW_EXITINFO1[31:0] == 0 is success (§4.1.5).
    ///
    /// # Errors
    /// [`GhcbError::ExitFailed`] otherwise.
    pub fn exit_result(&self) -> Result<(), GhcbError> {
        let info1 = self.qword(field::SW_EXIT_INFO_1);
        if info1 & 0xffff_ffff == 0 {
            Ok(())
        } else {
            Err(GhcbError::ExitFailed {
                info1,
                info2: self.qword(field::SW_EXIT_INFO_2),
            })
        }
    }
}

const _: () = assert!(core::mem::size_of::<GhcbPage>() == GHCB_SIZE);
const _: () = assert!(field::SHARED_BUFFER + SHARED_BUFFER_SIZE == 0xFF0);

/// The hypervisor as the guest sees it: the seam between protocol logic and VMGEXIT.
pub trait Hypervisor {
    /// One MSR-protocol round trip: write `request` to the GHCB MSR, VMGEXIT, return the MSR.
    /// Implementations restore the GHCB GPA in the MSR afterwards if one is registered.
    fn msr_protocol(&mut self, request: u64) -> u64;
    /// The registered GHCB page, or `None` before [`Hypervisor::msr_protocol`]-only operation
    /// has set one up.
    fn ghcb(&mut self) -> Option<&mut GhcbPage>;
    /// Guest-physical address of the GHCB page (what SW_SCRATCH must point into).
    fn ghcb_gpa(&self) -> u64;
    /// VMGEXIT with the GHCB GPA in the GHCB MSR; the page holds the answer afterwards.
    fn ghcb_exit(&mut self);
}

/// Performs a GHCB-page exit: resets the page, lets `fill` write the inputs, sets the exit
/// fields, exits and checks SW_EXITINFO1.
///
/// # Errors
/// [`GhcbError::MissingRegister`] when no GHCB is registered (offset 0), or the exit failure.
pub fn ghcb_call<H: Hypervisor + ?Sized>(
    hv: &mut H,
    code: u64,
    info1: u64,
    info2: u64,
    fill: impl FnOnce(&mut GhcbPage, u64),
) -> Result<(), GhcbError> {
    let gpa = hv.ghcb_gpa();
    let page = hv.ghcb().ok_or(GhcbError::MissingRegister(0))?;
    page.reset();
    fill(page, gpa);
    page.set_exit(code, info1, info2);
    hv.ghcb_exit();
    hv.ghcb()
        .ok_or(GhcbError::MissingRegister(0))?
        .exit_result()
}

/// Asks for SEV information and checks the protocol range (the first thing a guest does).
///
/// # Errors
/// As [`decode_sev_info`].
pub fn negotiate<H: Hypervisor + ?Sized>(hv: &mut H) -> Result<SevInfo, GhcbError> {
    decode_sev_info(hv.msr_protocol(MsrRequest::SevInfo.encode()))
}

/// One CPUID through the MSR protocol (four round trips; sub-leaf 0 only). Used only before
/// the CPUID page is available; under SNP the answers are untrusted.
///
/// # Errors
/// As [`decode_cpuid`].
pub fn msr_cpuid<H: Hypervisor + ?Sized>(hv: &mut H, leaf: u32) -> Result<[u32; 4], GhcbError> {
    let mut out = [0u32; 4];
    for (slot, reg) in
        out.iter_mut()
            .zip([CpuidReg::Eax, CpuidReg::Ebx, CpuidReg::Ecx, CpuidReg::Edx])
    {
        *slot = decode_cpuid(
            hv.msr_protocol(MsrRequest::Cpuid { leaf, reg }.encode()),
            reg,
        )?;
    }
    Ok(out)
}

/// Registers the GHCB page's GFN (mandatory under SNP before using it, §2.3.2).
///
/// # Errors
/// As [`decode_register_ghcb`].
pub fn register_ghcb<H: Hypervisor + ?Sized>(hv: &mut H, gpa: u64) -> Result<(), GhcbError> {
    let gfn = gpa >> 12;
    decode_register_ghcb(
        hv.msr_protocol(MsrRequest::RegisterGhcb { gfn }.encode()),
        gfn,
    )
}

/// VMGEXIT (`rep vmmcall`, F3 0F 01 D9): AMD64 APM vol. 3 (#24594), "VMGEXIT".
///
/// # Safety
/// Only in an SEV-ES/SNP guest (elsewhere it is VMMCALL with a prefix, which the hypervisor may
/// treat as anything), with the GHCB MSR holding either a complete MSR-protocol request or the
/// GPA of a registered, shared GHCB page filled for the exit.
#[cfg(target_arch = "x86_64")]
pub unsafe fn vmgexit() {
    // SAFETY: the caller guarantees the GHCB MSR is set up for the exit; VMGEXIT changes no
    // guest register (the hypervisor only sees the GHCB) and may read/write the shared GHCB,
    // hence no `nomem`.
    unsafe {
        core::arch::asm!(
            ".byte 0xf3, 0x0f, 0x01, 0xd9",
            options(nostack, preserves_flags)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msr_protocol_encodings() {
        // §2.3.1: request codes in bits 11:0, operands above.
        assert_eq!(MsrRequest::SevInfo.encode(), 0x002);
        assert_eq!(
            MsrRequest::Cpuid {
                leaf: 0x8000_001F,
                reg: CpuidReg::Ebx
            }
            .encode(),
            0x8000_001F_4000_0004
        );
        assert_eq!(
            MsrRequest::Cpuid {
                leaf: 1,
                reg: CpuidReg::Edx
            }
            .encode(),
            0x0000_0001_C000_0004
        );
        assert_eq!(
            MsrRequest::RegisterGhcb { gfn: 0x1234 }.encode(),
            0x0123_4012
        );
        assert_eq!(
            MsrRequest::PageStateChange {
                gfn: 0x8_0000,
                state: PageState::Shared
            }
            .encode(),
            0x0020_0000_8000_0014
        );
        assert_eq!(
            MsrRequest::PageStateChange {
                gfn: 0x10,
                state: PageState::Private
            }
            .encode(),
            0x0010_0000_0001_0014
        );
        assert_eq!(MsrRequest::HvFeatures.encode(), 0x080);
        assert_eq!(
            MsrRequest::Terminate { set: 1, code: 3 }.encode(),
            0x0003_1100
        );
    }

    #[test]
    fn msr_protocol_decodings() {
        // max 2, min 1, C-bit 51.
        let si = decode_sev_info(0x0002_0001_3300_0001).unwrap();
        assert_eq!(
            si,
            SevInfo {
                max_version: 2,
                min_version: 1,
                c_bit: 51
            }
        );
        assert_eq!(
            decode_sev_info(0x0001_0001_3300_0001),
            Err(GhcbError::UnsupportedProtocol { min: 1, max: 1 })
        );
        assert!(matches!(
            decode_sev_info(0x0002_0001_3300_0005),
            Err(GhcbError::UnexpectedResponse {
                expected: 0x001,
                ..
            })
        ));
        assert_eq!(
            decode_cpuid(0xdead_beef_4000_0005, CpuidReg::Ebx),
            Ok(0xdead_beef)
        );
        assert!(decode_cpuid(0xdead_beef_4000_0005, CpuidReg::Eax).is_err());
        assert_eq!(decode_register_ghcb(0x0123_4013, 0x1234), Ok(()));
        assert!(decode_register_ghcb(0x0123_5013, 0x1234).is_err());
        assert_eq!(decode_psc(0x015), Ok(()));
        assert_eq!(
            decode_psc(0x0000_0007_0000_0015),
            Err(GhcbError::PageStateChange(7))
        );
        assert_eq!(decode_hv_features(0x3081), Ok(3));
    }

    #[test]
    fn ghcb_layout_matches_table_3() {
        // Offsets of GHCB spec #56421 §2.5 Table 3 (rev. 2.03).
        assert_eq!(core::mem::size_of::<GhcbPage>(), 4096);
        assert_eq!(core::mem::align_of::<GhcbPage>(), 4096);
        assert_eq!(
            [
                field::CPL,
                field::XSS,
                field::DR7,
                field::RIP,
                field::RSP,
                field::RAX
            ],
            [0x0CB, 0x140, 0x160, 0x178, 0x1D8, 0x1F8]
        );
        assert_eq!(
            [
                field::RCX,
                field::RDX,
                field::RBX,
                field::RBP,
                field::RSI,
                field::RDI
            ],
            [0x308, 0x310, 0x318, 0x328, 0x330, 0x338]
        );
        assert_eq!(field::R8 + 7 * 8, field::R15);
        assert_eq!(
            [
                field::SW_EXIT_CODE,
                field::SW_EXIT_INFO_1,
                field::SW_EXIT_INFO_2,
                field::SW_SCRATCH
            ],
            [0x390, 0x398, 0x3A0, 0x3A8]
        );
        assert_eq!(
            [field::XCR0, field::VALID_BITMAP, field::X87_STATE_GPA],
            [0x3E8, 0x3F0, 0x400]
        );
        assert_eq!(
            [
                field::SHARED_BUFFER,
                field::PROTOCOL_VERSION,
                field::GHCB_USAGE
            ],
            [0x800, 0xFFA, 0xFFC]
        );
        assert_eq!(SHARED_BUFFER_SIZE, 2032);
    }

    #[test]
    fn valid_bitmap_bits() {
        // Bit = offset / 8: RAX 63, RCX 97, RDX 98, RBX 99, SW_EXITCODE 114.., XCR0 125, CPL 25
        // (the same numbering as OVMF's GHCB_REGISTER and Linux's ghcb_*_is_valid).
        let mut g = GhcbPage::new();
        g.set_qword(field::RAX, 1);
        g.set_cpl(0);
        g.set_exit(exit::CPUID, 0, 0);
        g.set_qword(field::XCR0, 1);
        let bitmap = u128::from_le_bytes(g.as_bytes()[0x3F0..0x400].try_into().unwrap());
        let expected =
            (1u128 << 63) | (1 << 25) | (1 << 114) | (1 << 115) | (1 << 116) | (1 << 125);
        assert_eq!(bitmap, expected);
        assert!(g.is_valid(field::RAX) && !g.is_valid(field::RBX));
        assert_eq!(
            g.returned_qword(field::RBX),
            Err(GhcbError::MissingRegister(field::RBX))
        );
        g.reset();
        assert!(!g.is_valid(field::RAX));
        assert_eq!(&g.as_bytes()[0xFFA..0x1000], &[2, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn exit_result_reads_info1_low_half() {
        let mut g = GhcbPage::new();
        g.set_exit(exit::IOIO, 0xffff_ffff_0000_0000, 0);
        assert_eq!(g.exit_result(), Ok(()));
        g.set_exit(exit::IOIO, 1, 0x8000_0b0d);
        assert_eq!(
            g.exit_result(),
            Err(GhcbError::ExitFailed {
                info1: 1,
                info2: 0x8000_0b0d
            })
        );
    }
}
