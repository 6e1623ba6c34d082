//! CMOS/RTC NVRAM: QEMU stores the RAM size there for firmware (`pc_cmos_init`): registers
//! 0x30/0x31 hold KiB above 1 MiB (capped at 0xFFFF), 0x34/0x35 hold 64 KiB units above 16 MiB.

use x86_64::instructions::port::Port;

fn read(register: u8) -> u8 {
    let mut index = Port::<u8>::new(0x70);
    let mut data = Port::<u8>::new(0x71);
    // SAFETY: ports 0x70/0x71 are the CMOS index/data pair; bit 7 of the index keeps NMIs
    // masked, and reading NVRAM has no side effects.
    unsafe {
        index.write(0x80 | register);
        data.read()
    }
}

/// End of RAM below 4 GiB as QEMU reports it, in bytes.
pub fn ram_top() -> u64 {
    let above_16m = u64::from(read(0x34)) | u64::from(read(0x35)) << 8;
    if above_16m != 0 {
        return (16 << 20) + (above_16m << 16);
    }
    let above_1m_kib = u64::from(read(0x30)) | u64::from(read(0x31)) << 8;
    (1 << 20) + (above_1m_kib << 10)
}
