//! 16550 UART on COM1 (I/O port 0x3F8): the kernel's log. Polled output, no interrupts.

use core::fmt;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

/// COM1, used through [`LOG`].
pub struct Serial {
    _private: (),
}

/// The log port; taken for the length of one line.
pub static LOG: spin::Mutex<Serial> = spin::Mutex::new(Serial { _private: () });

fn outb(offset: u16, value: u8) {
    let mut port = Port::<u8>::new(COM1 + offset);
    // SAFETY: COM1's registers are I/O ports owned by this module; writing them only changes the
    // UART's state.
    unsafe { port.write(value) }
}

fn inb(offset: u16) -> u8 {
    let mut port = Port::<u8>::new(COM1 + offset);
    // SAFETY: as in `outb`; reading LSR/RBR has no effect beyond the UART.
    unsafe { port.read() }
}

impl Serial {
    /// Programs 115200 8N1 with FIFOs on and UART interrupts off.
    pub fn init(&mut self) {
        outb(1, 0x00); // IER: no interrupts
        outb(3, 0x80); // LCR: DLAB
        outb(0, 0x01); // divisor 1 = 115200 baud
        outb(1, 0x00);
        outb(3, 0x03); // 8N1
        outb(2, 0xc7); // FIFO on, cleared, 14-byte threshold
        outb(4, 0x03); // DTR | RTS
    }

    fn put(&mut self, byte: u8) {
        // Wait for the transmit holding register (LSR bit 5); QEMU is always ready.
        for _ in 0..100_000 {
            if inb(5) & 0x20 != 0 {
                break;
            }
        }
        outb(0, byte);
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

/// Writes to the log even if the lock is held (exception and panic paths on the one CPU).
pub fn force_write(args: fmt::Arguments<'_>) {
    let mut serial = Serial { _private: () };
    let _ = fmt::Write::write_fmt(&mut serial, args);
}

/// `log!("...")`: one line to the serial log.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        let mut port = $crate::arch::serial::LOG.lock();
        let _ = core::fmt::Write::write_fmt(&mut *port, format_args!("{}\n", format_args!($($arg)*)));
    }};
}
