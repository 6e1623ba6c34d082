//! GDT, TSS (IST stacks for #DF, NMI and #MC), IDT and the Rust side of the trap path.
//!
//! Exceptions print the vector and all registers to the serial log and halt. Interrupts
//! (`VECTOR_*`) only wake the idle loop: the handler counts them and signals end-of-interrupt.
//! The one resumable exception is #VC (vector 29, SEV-ES/SNP only): [`snp::hw::handle_vc_trap`]
//! emulates the intercepted instruction and `iretq` resumes after it; if it cannot, the #VC is
//! dumped and halts like any other exception. Under plain QEMU/KVM #VC never fires.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::{lidt, load_tss};
use x86_64::registers::control::{Cr2, Cr3};
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

pub use super::frame::TrapFrame;
use super::{apic, cpu, serial};
use crate::snp;

/// Local APIC timer (one-shot wake-ups).
pub const VECTOR_TIMER: u8 = 48;
/// virtio-net MSI-X messages.
pub const VECTOR_NET: u8 = 49;
/// Local APIC spurious-interrupt vector.
pub const VECTOR_SPURIOUS: u8 = 255;
/// What the catch-all stub reports for any other vector.
const VECTOR_OTHER: u64 = 256;
/// #VC, VMM communication exception (SEV-ES/SNP); the CPU pushes the exit code as error code.
const VECTOR_VC: u64 = 29;

const IST_DOUBLE_FAULT: u16 = 0;
const IST_NMI: u16 = 1;
const IST_MACHINE_CHECK: u16 = 2;

core::arch::global_asm!(
    include_str!("../asm/interrupts.s"),
    trap_handler = sym trap_handler,
    options(att_syntax)
);

unsafe extern "C" {
    /// Stub addresses, in the order of `interrupts.s`: 0..32, 48, 49, 255, catch-all.
    static ukvtpm_trap_stubs: [u64; 36];
}

/// Interrupts taken since boot (timer + device), for the log.
pub static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(
    GlobalDescriptorTable,
    SegmentSelector,
    SegmentSelector,
    SegmentSelector,
)> = Once::new();
static IDT: Once<Idt> = Once::new();

/// Loads the kernel GDT (code, data, TSS with IST stacks) and the IDT. Call once, early.
pub fn init(ist_tops: [u64; 3]) {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.interrupt_stack_table[usize::from(IST_DOUBLE_FAULT)] = VirtAddr::new(ist_tops[0]);
        tss.interrupt_stack_table[usize::from(IST_NMI)] = VirtAddr::new(ist_tops[1]);
        tss.interrupt_stack_table[usize::from(IST_MACHINE_CHECK)] = VirtAddr::new(ist_tops[2]);
        tss
    });
    let (gdt, code, data, tss_sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(tss));
        (gdt, code, data, tss_sel)
    });
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded (a 'static); reloading CS
    // with a long-mode code segment and the data registers with a flat data segment keeps every
    // address meaning the same; the TSS descriptor is present and not busy (loaded once).
    unsafe {
        CS::set_reg(*code);
        DS::set_reg(*data);
        ES::set_reg(*data);
        SS::set_reg(*data);
        load_tss(*tss_sel);
    }

    let idt = IDT.call_once(|| {
        // SAFETY: `ukvtpm_trap_stubs` is a read-only table of 36 code addresses defined in
        // interrupts.s; it is never written.
        let stubs: &[u64; 36] = unsafe { &ukvtpm_trap_stubs };
        let mut idt = Idt([Gate::MISSING; 256]);
        for (vector, gate) in idt.0.iter_mut().enumerate() {
            let (stub, ist) = match vector {
                2 => (stubs[2], Some(IST_NMI)),
                8 => (stubs[8], Some(IST_DOUBLE_FAULT)),
                18 => (stubs[18], Some(IST_MACHINE_CHECK)),
                0..32 => (stubs[vector], None),
                v if v == usize::from(VECTOR_TIMER) => (stubs[32], None),
                v if v == usize::from(VECTOR_NET) => (stubs[33], None),
                v if v == usize::from(VECTOR_SPURIOUS) => (stubs[34], None),
                _ => (stubs[35], None),
            };
            *gate = Gate::interrupt(stub, code.0, ist);
        }
        idt
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(core::ptr::from_ref(idt) as u64),
    };
    // SAFETY: `idt` is a 'static table of 256 valid interrupt gates whose targets are the entry
    // stubs of interrupts.s, all in the code segment `code` loaded above.
    unsafe { lidt(&pointer) };
}

/// One 64-bit IDT gate descriptor (Intel SDM vol. 3, 6.14.1).
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    /// Bits 0-2: IST index (0 = none); bits 8-11 type (0xE = interrupt gate), bit 15 present.
    options: u16,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        options: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// A present interrupt gate (interrupts stay disabled in the handler), DPL 0.
    fn interrupt(handler: u64, selector: u16, ist: Option<u16>) -> Gate {
        let ist = ist.map_or(0, |index| index + 1);
        Gate {
            offset_low: handler as u16,
            selector,
            options: 0x8e00 | ist,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

extern "C" fn trap_handler(frame: &mut TrapFrame) {
    match frame.vector {
        VECTOR_VC => vmm_communication(frame),
        v if v < 32 => exception(frame),
        v if v == u64::from(VECTOR_TIMER) || v == u64::from(VECTOR_NET) => {
            INTERRUPTS.fetch_add(1, Ordering::Relaxed);
            apic::end_of_interrupt();
        }
        v if v == u64::from(VECTOR_SPURIOUS) => {} // no EOI for spurious interrupts
        VECTOR_OTHER => {
            INTERRUPTS.fetch_add(1, Ordering::Relaxed);
            apic::end_of_interrupt();
        }
        _ => exception(frame),
    }
}

/// Set once a #VC could not be handled: the dump that follows writes the serial port, which
/// itself raises #VC under SEV-ES/SNP; if that one fails too, halt without recursing.
static VC_FAILED: AtomicBool = AtomicBool::new(false);

/// #VC: let the SNP handler emulate the intercepted instruction on a copy of the registers in
/// x86 encoding order, then write the results and the advanced RIP back for `iretq`. On error
/// the faulting instruction must never be resumed: dump and halt (fail closed).
fn vmm_communication(frame: &mut TrapFrame) {
    let mut regs = frame.vc_regs();
    match snp::hw::handle_vc_trap(frame.error_code, &mut regs) {
        Ok(()) => frame.apply_vc_regs(&regs),
        Err(error) => {
            if VC_FAILED.swap(true, Ordering::Relaxed) {
                cpu::halt_forever();
            }
            serial::force_write(format_args!("\nukvtpm: #VC not handled: {error:?}"));
            exception(frame)
        }
    }
}

fn exception(f: &TrapFrame) -> ! {
    let name = usize::try_from(f.vector)
        .ok()
        .and_then(|v| EXCEPTION_NAMES.get(v))
        .copied()
        .unwrap_or("unknown");
    let (cr3, _) = Cr3::read_raw();
    serial::force_write(format_args!(
        "\nukvtpm: EXCEPTION vector {} ({name}) error_code={:#x}\n\
         rip={:#018x} cs={:#x} rflags={:#x} rsp={:#018x} ss={:#x}\n\
         rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}\n\
         rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}\n\
         r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}\n\
         r13={:#018x} r14={:#018x} r15={:#018x}\n\
         cr2={:#018x} cr3={:#018x}\nukvtpm: halted\n",
        f.vector,
        f.error_code,
        f.rip,
        f.cs,
        f.rflags,
        f.rsp,
        f.ss,
        f.rax,
        f.rbx,
        f.rcx,
        f.rdx,
        f.rsi,
        f.rdi,
        f.rbp,
        f.r8,
        f.r9,
        f.r10,
        f.r11,
        f.r12,
        f.r13,
        f.r14,
        f.r15,
        Cr2::read_raw(),
        cr3.start_address().as_u64(),
    ));
    cpu::halt_forever()
}
