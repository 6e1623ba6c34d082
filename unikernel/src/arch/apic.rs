//! Interrupt controllers: the legacy 8259 PICs are remapped and masked for good; the local APIC
//! (xAPIC, MMIO) delivers the one-shot timer and the virtio-net MSI-X messages.
//!
//! QEMU resets the PIT to fire IRQ0 at 18.2 Hz through the PIC, whose vector base is 0 until
//! programmed, so the PIC is taken out of the picture before interrupts are ever enabled.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use super::trap::{VECTOR_SPURIOUS, VECTOR_TIMER};

const IA32_APIC_BASE: u32 = 0x1b;
const REG_ID: u64 = 0x20;
const REG_TPR: u64 = 0x80;
const REG_EOI: u64 = 0xb0;
const REG_SVR: u64 = 0xf0;
const REG_LVT_TIMER: u64 = 0x320;
const REG_LVT_LINT0: u64 = 0x350;
const REG_LVT_LINT1: u64 = 0x360;
const REG_LVT_ERROR: u64 = 0x370;
const REG_TIMER_INITIAL: u64 = 0x380;
const REG_TIMER_CURRENT: u64 = 0x390;
const REG_TIMER_DIVIDE: u64 = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;

/// Physical (= virtual) base of the xAPIC registers, set by [`init`].
static BASE: AtomicU64 = AtomicU64::new(0);

fn reg(offset: u64) -> *mut u32 {
    (BASE.load(Ordering::Relaxed) + offset) as *mut u32
}

fn read(offset: u64) -> u32 {
    // SAFETY: `init` set BASE to the xAPIC page, identity-mapped uncached by the boot page
    // tables; the offsets are architectural 32-bit registers (Intel SDM vol. 3, table 11-1).
    unsafe { reg(offset).read_volatile() }
}

fn write(offset: u64, value: u32) {
    // SAFETY: as in `read`.
    unsafe { reg(offset).write_volatile(value) }
}

fn disable_pic() {
    let mut ports = [0x20u16, 0x21, 0xa0, 0xa1].map(Port::<u8>::new);
    // ICW1..ICW4: vectors 0x20-0x2f (away from exceptions), cascade on IRQ2, 8086 mode; then
    // mask every line.
    let sequence: [(usize, u8); 10] = [
        (0, 0x11),
        (2, 0x11),
        (1, 0x20),
        (3, 0x28),
        (1, 0x04),
        (3, 0x02),
        (1, 0x01),
        (3, 0x01),
        (1, 0xff),
        (3, 0xff),
    ];
    for (port, value) in sequence {
        // SAFETY: ports 0x20/0x21/0xA0/0xA1 are the two 8259s; this is their documented
        // initialisation sequence and leaves all lines masked.
        unsafe { ports[port].write(value) };
    }
}

/// Masks the PICs and enables the local APIC with LINT0/LINT1/error masked. Returns its id.
pub fn init() -> u32 {
    disable_pic();
    let mut msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; setting bit 11 (global enable) keeps
    // the base address the firmware-less reset left (0xFEE00000).
    let base = unsafe {
        let value = msr.read() | (1 << 11);
        msr.write(value);
        value & 0x000f_ffff_ffff_f000
    };
    BASE.store(base, Ordering::Relaxed);
    write(REG_TPR, 0);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_LVT_ERROR, LVT_MASKED);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(VECTOR_TIMER));
    write(REG_TIMER_DIVIDE, 0b0011); // divide by 16
    write(REG_SVR, 0x100 | u32::from(VECTOR_SPURIOUS));
    read(REG_ID) >> 24
}

/// Signals end-of-interrupt to the local APIC.
pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}

/// Starts the timer counting down from `count` with its interrupt masked (calibration).
pub fn start_masked_countdown(count: u32) {
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(VECTOR_TIMER));
    write(REG_TIMER_INITIAL, count);
}

/// The timer's current count.
pub fn current_count() -> u32 {
    read(REG_TIMER_CURRENT)
}

/// Arms a one-shot timer interrupt (`VECTOR_TIMER`) after `ticks` timer ticks (at least 1).
pub fn arm_oneshot(ticks: u32) {
    write(REG_LVT_TIMER, u32::from(VECTOR_TIMER));
    write(REG_TIMER_INITIAL, ticks.max(1));
}

/// Stops the timer.
pub fn disarm() {
    write(REG_TIMER_INITIAL, 0);
}
