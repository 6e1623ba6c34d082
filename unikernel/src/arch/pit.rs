//! Boot-time calibration of the TSC and the local APIC timer against the 8254 PIT (channel 2,
//! gated through port 0x61, read back with latch commands; no interrupts involved).
//!
//! Each reference reading is bracketed by two TSC reads and the tightest of a few tries is
//! kept, so a vCPU stalled by the host (common under TCG right after start) lengthens neither
//! end of the window: the elapsed PIT ticks are counted, not assumed.

use x86_64::instructions::port::Port;

use super::{apic, cpu};

/// The PIT's input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// Calibration window in PIT ticks: about 2 ms keeps boot fast (error ~0.1 %).
const WINDOW_TICKS: u16 = 2386;
/// Tries per bracketed reading.
const TRIES: usize = 5;

/// Measured frequencies.
#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// Local APIC timer ticks per second (after its divide-by-16).
    pub apic_timer_hz: u64,
}

fn pit_channel2() -> u16 {
    let mut mode = Port::<u8>::new(0x43);
    let mut counter2 = Port::<u8>::new(0x42);
    // SAFETY: 0x43 is the PIT mode/command port and 0x42 channel 2's counter; a counter-latch
    // command followed by two reads returns the latched count and changes nothing else.
    unsafe {
        mode.write(0b1000_0000); // latch channel 2
        let lo = counter2.read();
        let hi = counter2.read();
        u16::from_le_bytes([lo, hi])
    }
}

/// `read()` bracketed by TSC reads: (TSC at the midpoint, value), tightest of [`TRIES`].
fn bracketed<T: Copy>(read: impl Fn() -> T) -> (u64, T) {
    let mut best = (u64::MAX, 0u64, read());
    for _ in 0..TRIES {
        let t0 = cpu::rdtsc();
        let value = read();
        let t1 = cpu::rdtsc();
        let gap = t1.saturating_sub(t0);
        if gap < best.0 {
            best = (gap, t0 + gap / 2, value);
        }
    }
    (best.1, best.2)
}

/// Measures the TSC and the APIC timer against PIT channel 2 in one window.
pub fn calibrate() -> Calibration {
    let mut gate = Port::<u8>::new(0x61);
    let mut mode = Port::<u8>::new(0x43);
    let mut counter2 = Port::<u8>::new(0x42);
    // SAFETY: port 0x61 bit 0 gates PIT channel 2 and bit 1 enables the speaker (left off);
    // channel 2 is programmed in mode 0 counting down from 0xFFFF (~55 ms).
    unsafe {
        let g = gate.read();
        gate.write((g & !0x02) | 0x01);
        mode.write(0b1011_0000); // channel 2, lo/hi byte, mode 0, binary
        counter2.write(0xff);
        counter2.write(0xff);
    }
    // The APIC timer counts down through the same window, read inside the same brackets.
    apic::start_masked_countdown(u32::MAX);
    let both = || (pit_channel2(), apic::current_count());
    let (tsc_a, (pit_a, apic_a)) = bracketed(both);
    let mut spins = 0u32;
    while pit_a.wrapping_sub(pit_channel2()) < WINDOW_TICKS && spins < 10_000_000 {
        spins += 1;
    }
    let (tsc_b, (pit_b, apic_b)) = bracketed(both);
    apic::disarm();
    let pit_ticks = u64::from(pit_a.wrapping_sub(pit_b)).max(1);
    let tsc_ticks = tsc_b.saturating_sub(tsc_a);
    let tsc_hz = tsc_ticks * PIT_HZ / pit_ticks;
    let apic_timer_hz = u64::from(apic_a.wrapping_sub(apic_b)) * tsc_hz / tsc_ticks.max(1);
    Calibration {
        tsc_hz,
        apic_timer_hz,
    }
}
