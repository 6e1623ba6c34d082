use super::*;
use crate::snp::cpuid::{CpuidFunction, CpuidTable, build_page};
use crate::snp::ghcb::GhcbPage;
use crate::snp::testutil::{MODEL_GHCB_GPA, ModelHv};

fn ident(va: u64) -> Option<u64> {
    Some(va)
}

/// A hypervisor that answers every exit with success and the given registers/buffer.
fn answering(rax: Option<u64>, rdx: Option<u64>, buf: &'static [u8]) -> ModelHv {
    ModelHv::new(
        |_| 0,
        move |g: &mut GhcbPage| {
            g.reset();
            if let Some(v) = rax {
                g.set_qword(field::RAX, v);
            }
            if let Some(v) = rdx {
                g.set_qword(field::RDX, v);
            }
            g.shared_buffer_mut()[..buf.len()].copy_from_slice(buf);
            g.set_qword(field::SW_EXIT_INFO_1, 0);
        },
    )
}

#[test]
fn decodes_port_io() {
    let d = |b: &[u8]| decode_io(b).unwrap();
    assert_eq!(
        d(&[0xEC]),
        IoInsn {
            is_in: true,
            port: Port::Dx,
            size: 1,
            len: 1
        }
    );
    assert_eq!(
        d(&[0x66, 0xED]),
        IoInsn {
            is_in: true,
            port: Port::Dx,
            size: 2,
            len: 2
        }
    );
    assert_eq!(
        d(&[0xED]),
        IoInsn {
            is_in: true,
            port: Port::Dx,
            size: 4,
            len: 1
        }
    );
    assert_eq!(
        d(&[0xEE]),
        IoInsn {
            is_in: false,
            port: Port::Dx,
            size: 1,
            len: 1
        }
    );
    assert_eq!(
        d(&[0xEF]),
        IoInsn {
            is_in: false,
            port: Port::Dx,
            size: 4,
            len: 1
        }
    );
    assert_eq!(
        d(&[0xE4, 0x71]),
        IoInsn {
            is_in: true,
            port: Port::Imm(0x71),
            size: 1,
            len: 2
        }
    );
    assert_eq!(
        d(&[0xE6, 0x80]),
        IoInsn {
            is_in: false,
            port: Port::Imm(0x80),
            size: 1,
            len: 2
        }
    );
    assert_eq!(
        d(&[0x66, 0xE7, 0x70]),
        IoInsn {
            is_in: false,
            port: Port::Imm(0x70),
            size: 2,
            len: 3
        }
    );
    assert_eq!(
        decode_io(&[0x6E]),
        Err(DecodeError::Opcode(0x6E)),
        "OUTSB refused"
    );
    assert_eq!(decode_io(&[0xE4]), Err(DecodeError::Truncated));
}

#[test]
fn ioio_exit_info1_layout() {
    // APM vol. 2 §15.10.2: port in 31:16, SZ32 bit 6, A64 bit 9, TYPE bit 0.
    let out_dx = IoInsn {
        is_in: false,
        port: Port::Dx,
        size: 1,
        len: 1,
    };
    assert_eq!(ioio_exit_info1(&out_dx, 0xffff_03f8), 0x03f8_0210);
    let in32 = IoInsn {
        is_in: true,
        port: Port::Imm(0x71),
        size: 4,
        len: 2,
    };
    assert_eq!(ioio_exit_info1(&in32, 0), 0x0071_0241);
    let in16 = IoInsn {
        is_in: true,
        port: Port::Dx,
        size: 2,
        len: 2,
    };
    assert_eq!(ioio_exit_info1(&in16, 0xcf8), 0x0cf8_0221);
}

#[test]
fn out_and_in_through_the_ghcb() {
    // out dx, al with DX = COM1: the hypervisor sees AL only.
    let mut hv = answering(None, None, &[]);
    let mut r = Regs {
        rip: 0x1000,
        ..Regs::default()
    };
    r.gpr[reg::RAX] = 0x1234_5641;
    r.gpr[reg::RDX] = 0x3f8;
    handle(&mut hv, None, exit::IOIO, &mut r, &[0xEE, 0x90], ident).unwrap();
    assert_eq!(r.rip, 0x1001);
    let sent = &hv.exits[0];
    assert_eq!(sent.qword(field::SW_EXIT_CODE), exit::IOIO);
    assert_eq!(sent.qword(field::SW_EXIT_INFO_1), 0x03f8_0210);
    assert_eq!(sent.qword(field::RAX), 0x41);
    assert!(sent.is_valid(field::RAX));

    // in al, dx keeps RAX's upper bits; in eax, dx zero-extends.
    let mut hv = answering(Some(0xffff_ff99), None, &[]);
    let mut r = Regs {
        rip: 0x2000,
        ..Regs::default()
    };
    r.gpr[reg::RAX] = 0xaaaa_bbbb_cccc_dddd;
    r.gpr[reg::RDX] = 0x3fd;
    handle(&mut hv, None, exit::IOIO, &mut r, &[0xEC], ident).unwrap();
    assert_eq!(r.gpr[reg::RAX], 0xaaaa_bbbb_cccc_dd99);
    assert!(!hv.exits[0].is_valid(field::RAX), "IN sends no data");
    handle(&mut hv, None, exit::IOIO, &mut r, &[0xED], ident).unwrap();
    assert_eq!(r.gpr[reg::RAX], 0xffff_ff99);
    assert_eq!(r.rip, 0x2002);

    // A hypervisor that "forgets" RAX is refused.
    let mut hv = answering(None, None, &[]);
    assert_eq!(
        handle(
            &mut hv,
            None,
            exit::IOIO,
            &mut Regs::default(),
            &[0xEC],
            ident
        ),
        Err(VcError::Ghcb(GhcbError::MissingRegister(field::RAX)))
    );
}

#[test]
fn cpuid_under_snp_comes_from_the_cpuid_page_only() {
    let page = build_page(&[CpuidFunction {
        eax_in: 0x8000_001F,
        regs: [0x0101_fd3f, 0x4073, 0x1fd, 1],
        ..CpuidFunction::default()
    }]);
    let table = CpuidTable::parse(&page).unwrap();
    let mut hv = answering(Some(0xbad), Some(0xbad), &[]);
    let mut r = Regs {
        rip: 0x10,
        xcr0: 1,
        ..Regs::default()
    };
    r.gpr[reg::RAX] = 0x8000_001F;
    r.gpr[reg::RBX] = u64::MAX;
    handle(
        &mut hv,
        Some(&table),
        exit::CPUID,
        &mut r,
        &[0x0F, 0xA2],
        ident,
    )
    .unwrap();
    assert_eq!(&r.gpr[..4], &[0x0101_fd3f, 0x1fd, 1, 0x4073]);
    assert_eq!(r.rip, 0x12);
    assert!(hv.exits.is_empty(), "the hypervisor was not asked");
    // Leaves outside the table read as zero.
    r.gpr[reg::RAX] = 0x4000_0000;
    handle(
        &mut hv,
        Some(&table),
        exit::CPUID,
        &mut r,
        &[0x0F, 0xA2],
        ident,
    )
    .unwrap();
    assert_eq!(&r.gpr[..4], &[0, 0, 0, 0]);
}

#[test]
fn cpuid_without_the_page_asks_the_ghcb() {
    let mut hv = ModelHv::new(
        |_| 0,
        |g: &mut GhcbPage| {
            assert_eq!(g.qword(field::RAX), 1);
            assert!(g.is_valid(field::RCX) && g.is_valid(field::XCR0));
            g.reset();
            for (off, v) in [
                (field::RAX, 0xa00f11),
                (field::RBX, 2),
                (field::RCX, 3),
                (field::RDX, 4),
            ] {
                g.set_qword(off, v);
            }
        },
    );
    let mut r = Regs {
        xcr0: 1,
        ..Regs::default()
    };
    r.gpr[reg::RAX] = 1;
    handle(&mut hv, None, exit::CPUID, &mut r, &[0x0F, 0xA2], ident).unwrap();
    assert_eq!(&r.gpr[..4], &[0xa00f11, 3, 4, 2]);
}

#[test]
fn rdmsr_and_wrmsr() {
    let mut hv = answering(Some(0x1111_2222_0000_0500), Some(0xfee0_0000), &[]);
    let mut r = Regs::default();
    r.gpr[reg::RCX] = 0x1b;
    handle(&mut hv, None, exit::MSR, &mut r, &[0x0F, 0x32], ident).unwrap();
    assert_eq!(r.gpr[reg::RAX], 0x500);
    assert_eq!(r.gpr[reg::RDX], 0xfee0_0000);
    assert_eq!(hv.exits[0].qword(field::SW_EXIT_INFO_1), 0);
    assert_eq!(r.rip, 2);
    r.gpr[reg::RAX] = 0xdead_0000_0000_0001;
    handle(&mut hv, None, exit::MSR, &mut r, &[0x0F, 0x30], ident).unwrap();
    let sent = &hv.exits[1];
    assert_eq!(sent.qword(field::SW_EXIT_INFO_1), 1);
    assert_eq!(sent.qword(field::RAX), 1);
    assert_eq!(sent.qword(field::RCX), 0x1b);
    assert_eq!(
        r.gpr[reg::RAX],
        0xdead_0000_0000_0001,
        "WRMSR changes no register"
    );
}

#[test]
fn decodes_mmio_movs() {
    let m = |b: &[u8]| decode_mmio(b).unwrap();
    let base = |b: u8, disp: i64| MemOperand {
        base: Some(b),
        index: None,
        disp,
        rip_relative: false,
    };

    // mov [rax], ecx
    assert_eq!(
        m(&[0x89, 0x08]),
        MmioInsn {
            op: MmioOp::Write {
                src: 1,
                high_byte: false
            },
            size: 4,
            mem: base(0, 0),
            len: 2
        }
    );
    // mov eax, [rdi+0x10]
    let i = m(&[0x8B, 0x47, 0x10]);
    assert_eq!(
        i.op,
        MmioOp::Read {
            dst: 0,
            high_byte: false,
            dst_size: 4
        }
    );
    assert_eq!((i.size, i.mem, i.len), (4, base(7, 0x10), 3));
    // mov [rsi], al
    assert_eq!(m(&[0x88, 0x06]).size, 1);
    // mov [rdx+rcx*2+0x100], bx
    let i = m(&[0x66, 0x89, 0x9C, 0x4A, 0x00, 0x01, 0x00, 0x00]);
    assert_eq!(
        i.op,
        MmioOp::Write {
            src: 3,
            high_byte: false
        }
    );
    assert_eq!(i.size, 2);
    assert_eq!(
        i.mem,
        MemOperand {
            base: Some(2),
            index: Some((1, 2)),
            disp: 0x100,
            rip_relative: false
        }
    );
    assert_eq!(i.len, 8);
    // mov rax, [r8]
    let i = m(&[0x49, 0x8B, 0x00]);
    assert_eq!((i.size, i.mem.base, i.len), (8, Some(8), 3));
    // mov r9d, [rbx]
    assert_eq!(
        m(&[0x44, 0x8B, 0x0B]).op,
        MmioOp::Read {
            dst: 9,
            high_byte: false,
            dst_size: 4
        }
    );
    // mov dword [rax+0x14], 1
    let i = m(&[0xC7, 0x40, 0x14, 0x01, 0x00, 0x00, 0x00]);
    assert_eq!(
        (i.op, i.size, i.mem.disp, i.len),
        (MmioOp::WriteImm(1), 4, 0x14, 7)
    );
    // mov qword [rax], -1 (imm32 sign-extended)
    let i = m(&[0x48, 0xC7, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!((i.op, i.size), (MmioOp::WriteImm(u64::MAX), 8));
    // mov byte [rcx], 0x7f
    assert_eq!(m(&[0xC6, 0x01, 0x7F]).op, MmioOp::WriteImm(0x7f));
    // movzx eax, byte [rcx]; movzx eax, word [rcx]
    let i = m(&[0x0F, 0xB6, 0x01]);
    assert_eq!(
        (i.op, i.size, i.len),
        (
            MmioOp::Read {
                dst: 0,
                high_byte: false,
                dst_size: 4
            },
            1,
            3
        )
    );
    assert_eq!(m(&[0x0F, 0xB7, 0x01]).size, 2);
    // mov ah, [rcx] vs mov sil, [rcx]
    assert_eq!(
        m(&[0x8A, 0x21]).op,
        MmioOp::Read {
            dst: 4,
            high_byte: true,
            dst_size: 1
        }
    );
    assert_eq!(
        m(&[0x40, 0x8A, 0x31]).op,
        MmioOp::Read {
            dst: 6,
            high_byte: false,
            dst_size: 1
        }
    );
    // mov eax, [rip+0x100]
    let i = m(&[0x8B, 0x05, 0x00, 0x01, 0x00, 0x00]);
    assert!(i.mem.rip_relative && i.mem.base.is_none());
    assert_eq!((i.mem.disp, i.len), (0x100, 6));
    // mov [rsp+8], eax; mov [r12], eax; mov [r13+0], eax; mov [0x1000], eax
    assert_eq!(m(&[0x89, 0x44, 0x24, 0x08]).mem, base(4, 8));
    assert_eq!(m(&[0x41, 0x89, 0x04, 0x24]).mem, base(12, 0));
    assert_eq!(m(&[0x41, 0x89, 0x45, 0x00]).mem, base(13, 0));
    let i = m(&[0x89, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00]);
    assert_eq!(
        i.mem,
        MemOperand {
            base: None,
            index: None,
            disp: 0x1000,
            rip_relative: false
        }
    );
    // mov eax, [rbx-8]
    assert_eq!(m(&[0x8B, 0x43, 0xF8]).mem, base(3, -8));

    assert_eq!(
        decode_mmio(&[0x89, 0xC8]),
        Err(DecodeError::NotMemory),
        "mov eax, ecx"
    );
    assert_eq!(
        decode_mmio(&[0xF0, 0x89, 0x08]),
        Err(DecodeError::Prefix(0xF0))
    );
    assert_eq!(
        decode_mmio(&[0x65, 0x89, 0x08]),
        Err(DecodeError::Prefix(0x65))
    );
    assert_eq!(
        decode_mmio(&[0x01, 0x08]),
        Err(DecodeError::Opcode(0x01)),
        "add"
    );
    assert_eq!(decode_mmio(&[0x8B, 0x47]), Err(DecodeError::Truncated));
}

#[test]
fn effective_addresses() {
    let mut r = Regs {
        rip: 0x4000_0000,
        ..Regs::default()
    };
    r.gpr[reg::RDX] = 0xfeb0_0000;
    r.gpr[reg::RCX] = 0x10;
    let i = decode_mmio(&[0x66, 0x89, 0x9C, 0x4A, 0x00, 0x01, 0x00, 0x00]).unwrap();
    assert_eq!(effective_address(&i, &r), 0xfeb0_0120);
    let i = decode_mmio(&[0x8B, 0x05, 0x00, 0x01, 0x00, 0x00]).unwrap();
    assert_eq!(effective_address(&i, &r), 0x4000_0106);
}

#[test]
fn mmio_write_and_read_through_the_shared_buffer() {
    // mov [rdi+0x14], ecx  ->  MMIO_WRITE gpa, 4 bytes in the shared buffer.
    let mut hv = answering(None, None, &[]);
    let mut r = Regs {
        rip: 0x100,
        ..Regs::default()
    };
    r.gpr[reg::RDI] = 0xfebd_1000;
    r.gpr[reg::RCX] = 0x1122_3344_5566_7788;
    handle(&mut hv, None, exit::NPF, &mut r, &[0x89, 0x4F, 0x14], ident).unwrap();
    let sent = &hv.exits[0];
    assert_eq!(sent.qword(field::SW_EXIT_CODE), exit::MMIO_WRITE);
    assert_eq!(sent.qword(field::SW_EXIT_INFO_1), 0xfebd_1014);
    assert_eq!(sent.qword(field::SW_EXIT_INFO_2), 4);
    assert_eq!(sent.qword(field::SW_SCRATCH), MODEL_GHCB_GPA + 0x800);
    assert_eq!(&sent.shared_buffer()[..4], &[0x88, 0x77, 0x66, 0x55]);
    assert_eq!(r.rip, 0x103);

    // movzx eax, word [rsi]  ->  MMIO_READ, zero-extended into RAX.
    let mut hv = answering(None, None, &[0xcd, 0xab, 0xff, 0xff]);
    r.gpr[reg::RSI] = 0xfebd_2000;
    r.gpr[reg::RAX] = u64::MAX;
    handle(&mut hv, None, exit::NPF, &mut r, &[0x0F, 0xB7, 0x06], ident).unwrap();
    assert_eq!(hv.exits[0].qword(field::SW_EXIT_CODE), exit::MMIO_READ);
    assert_eq!(hv.exits[0].qword(field::SW_EXIT_INFO_2), 2);
    assert_eq!(r.gpr[reg::RAX], 0xabcd);

    // mov ah, [rsi]: only bits 15:8 change.
    let mut hv = answering(None, None, &[0x5a]);
    r.gpr[reg::RAX] = 0x1111_2222_3333_4444;
    handle(&mut hv, None, exit::NPF, &mut r, &[0x8A, 0x26], ident).unwrap();
    assert_eq!(r.gpr[reg::RAX], 0x1111_2222_3333_5a44);

    // Untranslatable address, unsupported exit.
    let mut hv = answering(None, None, &[]);
    assert_eq!(
        handle(&mut hv, None, exit::NPF, &mut r, &[0x8A, 0x26], |_| None),
        Err(VcError::Translate(0xfebd_2000))
    );
    assert_eq!(
        handle(&mut hv, None, exit::RDTSC, &mut r, &[0x0F, 0x31], ident),
        Err(VcError::Unsupported(exit::RDTSC))
    );
}

#[test]
fn merge_rules() {
    assert_eq!(merge(0xffff_ffff_ffff_ffff, 0x12, 1), 0xffff_ffff_ffff_ff12);
    assert_eq!(
        merge(0xffff_ffff_ffff_ffff, 0x1234, 2),
        0xffff_ffff_ffff_1234
    );
    assert_eq!(merge(0xffff_ffff_ffff_ffff, 0x1234_5678, 4), 0x1234_5678);
    assert_eq!(merge(0, u64::MAX, 8), u64::MAX);
}
