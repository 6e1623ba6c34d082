//! The trap frame `trap_common` (asm/interrupts.s) builds on the stack, and its conversion to
//! and from the #VC handler's register file ([`crate::snp::vc::Regs`]).
//!
//! Pure: built for `target_os = "none"` as `arch::frame`, and on the host for its unit tests.
#![forbid(unsafe_code)]

use crate::snp::vc::Regs;

/// XCR0 as the #VC handler must report it: the kernel never enables XSAVE (nor SSE), so XCR0
/// keeps its reset value, x87 only.
const XCR0_X87_ONLY: u64 = 1;

/// Registers saved by `trap_common`, lowest address first: the general registers in reverse
/// push order, then the stub's vector and error code (dummy 0 when the CPU pushes none), then
/// the CPU's 64-bit interrupt frame (RIP, CS, RFLAGS, RSP, SS).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// The interrupted context as the #VC handler sees it: GPRs in x86 encoding order (RAX,
    /// RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15; RSP is the interrupted RSP from the CPU's
    /// frame), RIP of the faulting instruction, XCR0.
    pub fn vc_regs(&self) -> Regs {
        Regs {
            gpr: [
                self.rax, self.rcx, self.rdx, self.rbx, self.rsp, self.rbp, self.rsi, self.rdi,
                self.r8, self.r9, self.r10, self.r11, self.r12, self.r13, self.r14, self.r15,
            ],
            rip: self.rip,
            xcr0: XCR0_X87_ONLY,
        }
    }

    /// Writes the handler's registers back (all 16 GPRs and RIP), so `iretq` resumes after the
    /// emulated instruction with its results. Vector, error code, CS, RFLAGS and SS stay.
    pub fn apply_vc_regs(&mut self, regs: &Regs) {
        let [
            rax,
            rcx,
            rdx,
            rbx,
            rsp,
            rbp,
            rsi,
            rdi,
            r8,
            r9,
            r10,
            r11,
            r12,
            r13,
            r14,
            r15,
        ] = regs.gpr;
        self.rax = rax;
        self.rcx = rcx;
        self.rdx = rdx;
        self.rbx = rbx;
        self.rsp = rsp;
        self.rbp = rbp;
        self.rsi = rsi;
        self.rdi = rdi;
        self.r8 = r8;
        self.r9 = r9;
        self.r10 = r10;
        self.r11 = r11;
        self.r12 = r12;
        self.r13 = r13;
        self.r14 = r14;
        self.r15 = r15;
        self.rip = regs.rip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame whose every field holds a distinct value naming it.
    fn sample() -> TrapFrame {
        TrapFrame {
            rax: 0xa0,
            rcx: 0xa1,
            rdx: 0xa2,
            rbx: 0xa3,
            rsp: 0xa4,
            rbp: 0xa5,
            rsi: 0xa6,
            rdi: 0xa7,
            r8: 0xa8,
            r9: 0xa9,
            r10: 0xaa,
            r11: 0xab,
            r12: 0xac,
            r13: 0xad,
            r14: 0xae,
            r15: 0xaf,
            vector: 29,
            error_code: 0x72,
            rip: 0x1000,
            cs: 8,
            rflags: 0x2,
            ss: 16,
        }
    }

    #[test]
    fn layout_matches_trap_common() {
        // 15 pushed GPRs, vector, error code, 5-qword CPU frame; 176 bytes keeps the 16-byte
        // alignment the CPU gives RSP on entry.
        assert_eq!(core::mem::size_of::<TrapFrame>(), 22 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, r15), 0);
        assert_eq!(core::mem::offset_of!(TrapFrame, rax), 14 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, vector), 15 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, error_code), 16 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, rip), 17 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, ss), 21 * 8);
    }

    #[test]
    fn vc_regs_are_in_encoding_order() {
        let regs = sample().vc_regs();
        // Encoding number n holds 0xa0 + n.
        for (n, v) in regs.gpr.iter().enumerate() {
            assert_eq!(*v, 0xa0 + n as u64, "register {n}");
        }
        assert_eq!(regs.gpr[crate::snp::vc::reg::RSP], 0xa4);
        assert_eq!(regs.rip, 0x1000);
        assert_eq!(regs.xcr0, 1);
    }

    #[test]
    fn apply_writes_gprs_and_rip_only() {
        let original = sample();
        let mut frame = original;
        let mut regs = frame.vc_regs();
        for (n, v) in regs.gpr.iter_mut().enumerate() {
            *v = 0xb0 + n as u64;
        }
        regs.rip = 0x1002;
        regs.xcr0 = 7; // not a frame field: ignored
        frame.apply_vc_regs(&regs);

        let expected = TrapFrame {
            rax: 0xb0,
            rcx: 0xb1,
            rdx: 0xb2,
            rbx: 0xb3,
            rsp: 0xb4,
            rbp: 0xb5,
            rsi: 0xb6,
            rdi: 0xb7,
            r8: 0xb8,
            r9: 0xb9,
            r10: 0xba,
            r11: 0xbb,
            r12: 0xbc,
            r13: 0xbd,
            r14: 0xbe,
            r15: 0xbf,
            rip: 0x1002,
            ..original
        };
        assert_eq!(frame, expected);
    }

    #[test]
    fn round_trip_is_identity() {
        let mut frame = sample();
        let regs = frame.vc_regs();
        frame.apply_vc_regs(&regs);
        assert_eq!(frame, sample());
    }
}
