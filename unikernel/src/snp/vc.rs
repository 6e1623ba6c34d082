//! The #VC (VMM Communication exception, vector 29) handler core.
//!
//! Under SEV-ES/SNP an intercepted instruction does not exit to the hypervisor: the CPU raises
//! #VC with the exit code as error code (AMD64 APM vol. 2 §15.35.5), and the guest must decide
//! what the hypervisor may see, ask it through the GHCB (#56421 §4.1, NAE events) and emulate
//! the instruction itself, advancing RIP. This file is that logic as pure functions over a
//! register file and the instruction bytes, so it is unit-tested on the host:
//! - CPUID (0x72): under SNP answered from the PSP-checked CPUID page, never from the
//!   hypervisor; under SEV-ES via the GHCB;
//! - IOIO (0x7B): `in`/`out` with an immediate or DX port, 8/16/32 bits (EXITINFO1 as in APM
//!   vol. 2 §15.10.2);
//! - MSR (0x7C): `rdmsr`/`wrmsr`;
//! - NPF (0x400) on MMIO: the `mov` forms the kernel's volatile accesses compile to (88, 89,
//!   8A, 8B, C6, C7, 0F B6, 0F B7 with ModRM/SIB/displacement, 66/REX prefixes), turned into
//!   MMIO_READ/MMIO_WRITE NAE events with the data in the GHCB shared buffer.
//!
//! The `target_os = "none"` entry point that fetches the bytes at RIP is in [`super::hw`].

use super::cpuid::CpuidTable;
use super::ghcb::{self, GhcbError, Hypervisor, exit, field};

/// Longest x86 instruction.
pub const MAX_INSN_LEN: usize = 15;

/// The interrupted context: general registers in x86 encoding order (the ModRM register
/// numbers: RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15), RIP and XCR0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Regs {
    /// GPRs by encoding number.
    pub gpr: [u64; 16],
    /// RIP of the faulting instruction; advanced on success.
    pub rip: u64,
    /// XCR0 (1 when the kernel never enabled XSAVE).
    pub xcr0: u64,
}

/// Register numbers.
pub mod reg {
    /// RAX.
    pub const RAX: usize = 0;
    /// RCX.
    pub const RCX: usize = 1;
    /// RDX.
    pub const RDX: usize = 2;
    /// RBX.
    pub const RBX: usize = 3;
    /// RSP.
    pub const RSP: usize = 4;
    /// RSI.
    pub const RSI: usize = 6;
    /// RDI.
    pub const RDI: usize = 7;
}

/// Why a #VC could not be handled (the kernel then halts: fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcError {
    /// An exit code this handler does not emulate.
    Unsupported(u64),
    /// The instruction bytes are not a form this handler decodes.
    Decode(DecodeError),
    /// The hypervisor exchange failed.
    Ghcb(GhcbError),
    /// The MMIO address does not translate to a guest-physical address.
    Translate(u64),
}

impl From<GhcbError> for VcError {
    fn from(e: GhcbError) -> Self {
        Self::Ghcb(e)
    }
}

impl From<DecodeError> for VcError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

/// Decoding failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Ran out of bytes.
    Truncated,
    /// A prefix this handler refuses (LOCK, REP, segment override, address size).
    Prefix(u8),
    /// An opcode this handler does not emulate.
    Opcode(u8),
    /// A register operand where memory was required.
    NotMemory,
}

// ---------------------------------------------------------------------------------------------
// Port I/O

/// Port source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Immediate byte.
    Imm(u8),
    /// DX.
    Dx,
}

/// A decoded `in`/`out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoInsn {
    /// `in` (true) or `out`.
    pub is_in: bool,
    /// Port.
    pub port: Port,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    /// Instruction length.
    pub len: usize,
}

/// Decodes E4-E7 and EC-EF with an optional 66 prefix. String forms (INS/OUTS) are refused:
/// the kernel does not use them.
///
/// # Errors
/// [`DecodeError`].
pub fn decode_io(bytes: &[u8]) -> Result<IoInsn, DecodeError> {
    let mut i = 0;
    let mut opsize16 = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            0x66 => opsize16 = true,
            0x40..=0x4f => {} // REX: no effect on IN/OUT operand size (W is ignored)
            _ => break,
        }
        i += 1;
    }
    let op = *bytes.get(i).ok_or(DecodeError::Truncated)?;
    let wide = if opsize16 { 2 } else { 4 };
    let (is_in, port, size, imm) = match op {
        0xE4 => (true, None, 1, true),
        0xE5 => (true, None, wide, true),
        0xE6 => (false, None, 1, true),
        0xE7 => (false, None, wide, true),
        0xEC => (true, Some(Port::Dx), 1, false),
        0xED => (true, Some(Port::Dx), wide, false),
        0xEE => (false, Some(Port::Dx), 1, false),
        0xEF => (false, Some(Port::Dx), wide, false),
        other => return Err(DecodeError::Opcode(other)),
    };
    let (port, len) = if imm {
        let p = *bytes.get(i + 1).ok_or(DecodeError::Truncated)?;
        (Port::Imm(p), i + 2)
    } else {
        (port.unwrap_or(Port::Dx), i + 1)
    };
    Ok(IoInsn {
        is_in,
        port,
        size,
        len,
    })
}

/// IOIO EXITINFO1 bits (APM vol. 2 §15.10.2, Figure 15-2).
pub mod ioio {
    /// TYPE: 1 = IN.
    pub const TYPE_IN: u64 = 1 << 0;
    /// 8-bit operand.
    pub const SZ8: u64 = 1 << 4;
    /// 16-bit operand.
    pub const SZ16: u64 = 1 << 5;
    /// 32-bit operand.
    pub const SZ32: u64 = 1 << 6;
    /// 64-bit address size.
    pub const A64: u64 = 1 << 9;
}

/// EXITINFO1 for `insn` with the port resolved (`dx` = current RDX).
pub fn ioio_exit_info1(insn: &IoInsn, dx: u64) -> u64 {
    let port = match insn.port {
        Port::Imm(p) => u64::from(p),
        Port::Dx => dx & 0xffff,
    };
    let size = match insn.size {
        1 => ioio::SZ8,
        2 => ioio::SZ16,
        _ => ioio::SZ32,
    };
    (port << 16) | ioio::A64 | size | if insn.is_in { ioio::TYPE_IN } else { 0 }
}

fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Writes `value` (of `size` bytes) into a 64-bit register as the CPU does: 8/16-bit writes
/// keep the other bits, 32-bit writes zero-extend.
pub fn merge(old: u64, value: u64, size: u8) -> u64 {
    match size {
        1 | 2 => (old & !mask(size)) | (value & mask(size)),
        4 => value & mask(4),
        _ => value,
    }
}

// ---------------------------------------------------------------------------------------------
// MMIO `mov` decoding

/// A memory operand: `[base + index * scale + disp]` or `[rip + len + disp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemOperand {
    /// Base register number.
    pub base: Option<u8>,
    /// Index register number and scale.
    pub index: Option<(u8, u8)>,
    /// Displacement.
    pub disp: i64,
    /// RIP-relative.
    pub rip_relative: bool,
}

/// What the instruction does with memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioOp {
    /// Store register `src` (for 8-bit: `high_byte` selects AH/CH/DH/BH).
    Write {
        /// Source register number.
        src: u8,
        /// AH..BH (no REX, register 4-7, 8-bit).
        high_byte: bool,
    },
    /// Store an immediate.
    WriteImm(u64),
    /// Load into register `dst`, `dst_size` bytes wide (zero-extending movzx when wider than
    /// the memory access).
    Read {
        /// Destination register number.
        dst: u8,
        /// AH..BH.
        high_byte: bool,
        /// Destination width.
        dst_size: u8,
    },
}

/// A decoded MMIO `mov`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioInsn {
    /// Operation.
    pub op: MmioOp,
    /// Memory access size: 1, 2, 4 or 8.
    pub size: u8,
    /// Memory operand.
    pub mem: MemOperand,
    /// Instruction length.
    pub len: usize,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.at).ok_or(DecodeError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn le(&mut self, n: usize) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for k in 0..n {
            v |= u64::from(self.u8()?) << (8 * k);
        }
        Ok(v)
    }
}

fn sign_extend(v: u64, bytes: usize) -> i64 {
    let shift = 64 - 8 * bytes as u32;
    ((v << shift) as i64) >> shift
}

/// Decodes the MMIO `mov` forms (see the module documentation).
///
/// # Errors
/// [`DecodeError`] for anything else.
pub fn decode_mmio(bytes: &[u8]) -> Result<MmioInsn, DecodeError> {
    let mut c = Cursor { bytes, at: 0 };
    let mut opsize16 = false;
    let mut rex = 0u8;
    let mut op = c.u8()?;
    loop {
        match op {
            0x66 => opsize16 = true,
            0x40..=0x4f => {
                rex = op;
                op = c.u8()?;
                break; // REX must come last
            }
            0xF0 | 0xF2 | 0xF3 | 0x67 | 0x26 | 0x2E | 0x36 | 0x3E | 0x64 | 0x65 => {
                return Err(DecodeError::Prefix(op));
            }
            _ => break,
        }
        op = c.u8()?;
    }
    let rex_w = rex & 0x8 != 0;
    let rex_r = (rex & 0x4) << 1;
    let rex_x = (rex & 0x2) << 2;
    let rex_b = (rex & 0x1) << 3;
    let wide = if rex_w {
        8
    } else if opsize16 {
        2
    } else {
        4
    };
    let (two_byte, opcode) = if op == 0x0F {
        (true, c.u8()?)
    } else {
        (false, op)
    };

    let modrm = c.u8()?;
    let md = modrm >> 6;
    let reg_field = ((modrm >> 3) & 7) | rex_r;
    let rm = modrm & 7;
    if md == 3 {
        return Err(DecodeError::NotMemory);
    }
    let mut mem = MemOperand {
        base: None,
        index: None,
        disp: 0,
        rip_relative: false,
    };
    if rm == 4 {
        let sib = c.u8()?;
        let scale = 1u8 << (sib >> 6);
        let index = ((sib >> 3) & 7) | rex_x;
        let base = sib & 7;
        if index != 4 {
            mem.index = Some((index, scale));
        }
        if base == 5 && md == 0 {
            mem.disp = sign_extend(c.le(4)?, 4);
        } else {
            mem.base = Some(base | rex_b);
        }
    } else if rm == 5 && md == 0 {
        mem.rip_relative = true;
        mem.disp = sign_extend(c.le(4)?, 4);
    } else {
        mem.base = Some(rm | rex_b);
    }
    match md {
        1 => mem.disp = sign_extend(c.le(1)?, 1),
        2 => mem.disp = sign_extend(c.le(4)?, 4),
        _ => {}
    }
    // AH/CH/DH/BH: 8-bit register 4-7 without any REX prefix.
    let high = |r: u8| rex == 0 && (4..8).contains(&r);
    let (op, size) = match (two_byte, opcode) {
        (false, 0x88) => (
            MmioOp::Write {
                src: reg_field,
                high_byte: high(reg_field),
            },
            1,
        ),
        (false, 0x89) => (
            MmioOp::Write {
                src: reg_field,
                high_byte: false,
            },
            wide,
        ),
        (false, 0x8A) => (
            MmioOp::Read {
                dst: reg_field,
                high_byte: high(reg_field),
                dst_size: 1,
            },
            1,
        ),
        (false, 0x8B) => (
            MmioOp::Read {
                dst: reg_field,
                high_byte: false,
                dst_size: wide,
            },
            wide,
        ),
        (false, 0xC6) if reg_field & 7 == 0 => (MmioOp::WriteImm(c.le(1)?), 1),
        (false, 0xC7) if reg_field & 7 == 0 => {
            let imm = if wide == 2 { c.le(2)? } else { c.le(4)? };
            let imm = if wide == 8 {
                sign_extend(imm, 4) as u64
            } else {
                imm
            };
            (MmioOp::WriteImm(imm), wide)
        }
        (true, 0xB6) => (
            MmioOp::Read {
                dst: reg_field,
                high_byte: false,
                dst_size: wide,
            },
            1,
        ),
        (true, 0xB7) => (
            MmioOp::Read {
                dst: reg_field,
                high_byte: false,
                dst_size: wide,
            },
            2,
        ),
        (_, other) => return Err(DecodeError::Opcode(other)),
    };
    Ok(MmioInsn {
        op,
        size,
        mem,
        len: c.at,
    })
}

/// The effective (virtual) address of `insn`'s memory operand.
pub fn effective_address(insn: &MmioInsn, regs: &Regs) -> u64 {
    let m = &insn.mem;
    let mut ea = m.disp as u64;
    if m.rip_relative {
        ea = ea.wrapping_add(regs.rip).wrapping_add(insn.len as u64);
    }
    if let Some(b) = m.base {
        ea = ea.wrapping_add(regs.gpr[usize::from(b)]);
    }
    if let Some((i, s)) = m.index {
        ea = ea.wrapping_add(regs.gpr[usize::from(i)].wrapping_mul(u64::from(s)));
    }
    ea
}

fn read_reg(regs: &Regs, r: u8, high_byte: bool) -> u64 {
    if high_byte {
        regs.gpr[usize::from(r - 4)] >> 8
    } else {
        regs.gpr[usize::from(r)]
    }
}

fn write_reg(regs: &mut Regs, r: u8, high_byte: bool, value: u64, size: u8) {
    if high_byte {
        let g = &mut regs.gpr[usize::from(r - 4)];
        *g = (*g & !0xff00) | ((value & 0xff) << 8);
    } else {
        let g = &mut regs.gpr[usize::from(r)];
        *g = merge(*g, value, size);
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// Handles one #VC: `exit_code` is the exception's error code, `insn` the bytes at RIP (at
/// most [`MAX_INSN_LEN`]), `cpuid_page` the SNP CPUID table (required under SNP), and
/// `translate` maps an MMIO virtual address to its guest-physical address. On success the
/// registers hold the emulated result and RIP points past the instruction.
///
/// # Errors
/// [`VcError`]; the caller must not resume the instruction then.
pub fn handle<H: Hypervisor + ?Sized>(
    hv: &mut H,
    cpuid_page: Option<&CpuidTable>,
    exit_code: u64,
    regs: &mut Regs,
    insn: &[u8],
    translate: impl Fn(u64) -> Option<u64>,
) -> Result<(), VcError> {
    let len = match exit_code {
        exit::CPUID => handle_cpuid(hv, cpuid_page, regs)?,
        exit::IOIO => handle_ioio(hv, regs, insn)?,
        exit::MSR => handle_msr(hv, regs, insn)?,
        exit::NPF => handle_mmio(hv, regs, insn, translate)?,
        other => return Err(VcError::Unsupported(other)),
    };
    regs.rip = regs.rip.wrapping_add(len as u64);
    Ok(())
}

fn handle_cpuid<H: Hypervisor + ?Sized>(
    hv: &mut H,
    table: Option<&CpuidTable>,
    regs: &mut Regs,
) -> Result<usize, VcError> {
    let leaf = regs.gpr[reg::RAX] as u32;
    let subleaf = regs.gpr[reg::RCX] as u32;
    let out = if let Some(t) = table {
        t.answer(leaf, subleaf, regs.xcr0, 0)
    } else {
        ghcb::ghcb_call(hv, exit::CPUID, 0, 0, |g, _| {
            g.set_qword(field::RAX, u64::from(leaf));
            g.set_qword(field::RCX, u64::from(subleaf));
            g.set_qword(field::XCR0, regs.xcr0);
        })?;
        let g = hv.ghcb().ok_or(GhcbError::MissingRegister(0))?;
        let mut out = [0u32; 4];
        for (o, off) in out
            .iter_mut()
            .zip([field::RAX, field::RBX, field::RCX, field::RDX])
        {
            *o = g.returned_qword(off)? as u32;
        }
        out
    };
    // CPUID writes the 32-bit registers, zero-extending.
    for (r, v) in [reg::RAX, reg::RBX, reg::RCX, reg::RDX]
        .into_iter()
        .zip(out)
    {
        regs.gpr[r] = u64::from(v);
    }
    Ok(2) // 0F A2
}

fn handle_ioio<H: Hypervisor + ?Sized>(
    hv: &mut H,
    regs: &mut Regs,
    insn: &[u8],
) -> Result<usize, VcError> {
    let io = decode_io(insn)?;
    let info1 = ioio_exit_info1(&io, regs.gpr[reg::RDX]);
    let rax = regs.gpr[reg::RAX];
    ghcb::ghcb_call(hv, exit::IOIO, info1, 0, |g, _| {
        if !io.is_in {
            g.set_qword(field::RAX, rax & mask(io.size));
        }
    })?;
    if io.is_in {
        let g = hv.ghcb().ok_or(GhcbError::MissingRegister(0))?;
        let v = g.returned_qword(field::RAX)?;
        regs.gpr[reg::RAX] = merge(rax, v, io.size);
    }
    Ok(io.len)
}

fn handle_msr<H: Hypervisor + ?Sized>(
    hv: &mut H,
    regs: &mut Regs,
    insn: &[u8],
) -> Result<usize, VcError> {
    let write = match insn {
        [0x0F, 0x30, ..] => true,
        [0x0F, 0x32, ..] => false,
        [0x0F, b, ..] => return Err(DecodeError::Opcode(*b).into()),
        [b, ..] => return Err(DecodeError::Opcode(*b).into()),
        [] => return Err(DecodeError::Truncated.into()),
    };
    let (rax, rcx, rdx) = (regs.gpr[reg::RAX], regs.gpr[reg::RCX], regs.gpr[reg::RDX]);
    ghcb::ghcb_call(hv, exit::MSR, u64::from(write), 0, |g, _| {
        g.set_qword(field::RCX, rcx & 0xffff_ffff);
        if write {
            g.set_qword(field::RAX, rax & 0xffff_ffff);
            g.set_qword(field::RDX, rdx & 0xffff_ffff);
        }
    })?;
    if !write {
        let g = hv.ghcb().ok_or(GhcbError::MissingRegister(0))?;
        regs.gpr[reg::RAX] = g.returned_qword(field::RAX)? & 0xffff_ffff;
        regs.gpr[reg::RDX] = g.returned_qword(field::RDX)? & 0xffff_ffff;
    }
    Ok(2)
}

fn handle_mmio<H: Hypervisor + ?Sized>(
    hv: &mut H,
    regs: &mut Regs,
    insn: &[u8],
    translate: impl Fn(u64) -> Option<u64>,
) -> Result<usize, VcError> {
    let m = decode_mmio(insn)?;
    let va = effective_address(&m, regs);
    let gpa = translate(va).ok_or(VcError::Translate(va))?;
    let size = usize::from(m.size);
    match m.op {
        MmioOp::Write { .. } | MmioOp::WriteImm(_) => {
            let value = match m.op {
                MmioOp::Write { src, high_byte } => read_reg(regs, src, high_byte),
                MmioOp::WriteImm(v) => v,
                MmioOp::Read { .. } => 0,
            };
            ghcb::ghcb_call(hv, exit::MMIO_WRITE, gpa, m.size.into(), |g, ghcb_gpa| {
                g.shared_buffer_mut()[..size].copy_from_slice(&value.to_le_bytes()[..size]);
                g.set_qword(field::SW_SCRATCH, ghcb_gpa + field::SHARED_BUFFER as u64);
            })?;
        }
        MmioOp::Read {
            dst,
            high_byte,
            dst_size,
        } => {
            ghcb::ghcb_call(hv, exit::MMIO_READ, gpa, m.size.into(), |g, ghcb_gpa| {
                g.set_qword(field::SW_SCRATCH, ghcb_gpa + field::SHARED_BUFFER as u64);
            })?;
            let g = hv.ghcb().ok_or(GhcbError::MissingRegister(0))?;
            let mut raw = [0u8; 8];
            raw[..size].copy_from_slice(&g.shared_buffer()[..size]);
            let value = u64::from_le_bytes(raw);
            write_reg(regs, dst, high_byte, value, dst_size);
        }
    }
    Ok(m.len)
}

#[cfg(test)]
mod tests;
