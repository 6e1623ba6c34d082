//! x86-64 hardware: serial log, CPU instructions, descriptor tables and traps, interrupt
//! controllers and timers. Only this module, `mm`, `pci` and `virtio` contain `unsafe`.

pub mod apic;
pub mod cmos;
pub mod cpu;
pub mod frame;
pub mod pit;
pub mod serial;
pub mod trap;

/// Panic: print the message and location, then halt.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial::force_write(format_args!("\nukvtpm: PANIC: {info}\n"));
    cpu::halt_forever()
}

/// Waits for the next interrupt unless `ready()` says there is work, with interrupts disabled
/// around the check so a wake-up cannot slip in between (`sti; hlt` is atomic).
pub fn wait_for_interrupt(ready: impl FnOnce() -> bool) {
    x86_64::instructions::interrupts::disable();
    if ready() {
        x86_64::instructions::interrupts::enable();
    } else {
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}
