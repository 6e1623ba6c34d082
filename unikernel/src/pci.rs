//! PCI: configuration space through the legacy 0xCF8/0xCFC ports (the q35 ECAM window is
//! enabled only by firmware, and we are the firmware), bus-0 enumeration, BAR assignment and
//! MSI-X set-up. Nothing has assigned BARs before us.

use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, DeviceFunctionInfo, MemoryBarType,
    PciRoot,
};
use x86_64::instructions::port::Port;

/// Configuration mechanism #1 (I/O ports 0xCF8 address, 0xCFC data).
#[derive(Debug)]
pub struct PortCam {
    _private: (),
}

impl PortCam {
    /// The only instance: config space is a machine-wide resource.
    pub fn new() -> PortCam {
        PortCam { _private: () }
    }
}

impl Default for PortCam {
    fn default() -> Self {
        Self::new()
    }
}

fn address(df: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000
        | u32::from(df.bus) << 16
        | u32::from(df.device) << 11
        | u32::from(df.function) << 8
        | u32::from(offset & 0xfc)
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        let mut addr = Port::<u32>::new(0xcf8);
        let mut data = Port::<u32>::new(0xcfc);
        // SAFETY: 0xCF8/0xCFC are the PCI configuration ports; the kernel is single-threaded
        // and interrupt handlers never touch them, so the address/data pair is not torn.
        unsafe {
            addr.write(address(df, offset));
            data.read()
        }
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, value: u32) {
        let mut addr = Port::<u32>::new(0xcf8);
        let mut data = Port::<u32>::new(0xcfc);
        // SAFETY: as in `read_word`; callers write only registers they own (BARs, command,
        // MSI-X control).
        unsafe {
            addr.write(address(df, offset));
            data.write(value);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam { _private: () }
    }
}

/// Window for BARs we assign: inside q35's 32-bit PCI hole, clear of the ECAM area
/// (0xB0000000), the IOAPIC/HPET/LAPIC (0xFEC00000+) and the firmware image.
const MMIO_WINDOW: (u64, u64) = (0xc000_0000, 0xe000_0000);

/// Hands out naturally aligned MMIO ranges from [`MMIO_WINDOW`].
#[derive(Debug)]
pub struct BarAllocator {
    next: u64,
}

impl Default for BarAllocator {
    fn default() -> Self {
        BarAllocator {
            next: MMIO_WINDOW.0,
        }
    }
}

impl BarAllocator {
    fn take(&mut self, size: u64) -> Option<u64> {
        let size = size.max(0x1000);
        let base = self.next.checked_next_multiple_of(size)?;
        let end = base.checked_add(size)?;
        (end <= MMIO_WINDOW.1).then(|| {
            self.next = end;
            base
        })
    }
}

/// Finds the first virtio-net function on bus 0 (vendor 0x1AF4; device 0x1041 modern or
/// 0x1000 transitional).
pub fn find_virtio_net(root: &PciRoot<PortCam>) -> Option<(DeviceFunction, DeviceFunctionInfo)> {
    root.enumerate_bus(0)
        .find(|(_, info)| info.vendor_id == 0x1af4 && matches!(info.device_id, 0x1041 | 0x1000))
}

/// Assigns every memory BAR of `df` from `alloc`, then enables memory decoding and bus
/// mastering. I/O BARs are left unassigned (the modern virtio transport uses memory only).
///
/// Returns the number of BARs assigned, or `None` if the window ran out.
pub fn assign_bars(
    root: &mut PciRoot<PortCam>,
    df: DeviceFunction,
    alloc: &mut BarAllocator,
) -> Option<usize> {
    let bars = root.bars(df).ok()?;
    let mut assigned = 0;
    for (index, bar) in bars.iter().enumerate() {
        let Some(BarInfo::Memory {
            address_type, size, ..
        }) = bar
        else {
            continue;
        };
        if *size == 0 {
            continue;
        }
        let base = alloc.take(*size)?;
        let index = u8::try_from(index).ok()?;
        match address_type {
            MemoryBarType::Width64 => root.set_bar_64(df, index, base),
            _ => root.set_bar_32(df, index, u32::try_from(base).ok()?),
        }
        assigned += 1;
    }
    let (_, command) = root.get_status_command(df);
    root.set_command(df, command | Command::MEMORY_SPACE | Command::BUS_MASTER);
    Some(assigned)
}

/// Memory address of BAR `index` after [`assign_bars`].
pub fn bar_address(root: &mut PciRoot<PortCam>, df: DeviceFunction, index: u8) -> Option<u64> {
    match root.bar_info(df, index).ok()?? {
        BarInfo::Memory { address, .. } if address != 0 => Some(address),
        _ => None,
    }
}

const CAP_MSIX: u8 = 0x11;

/// Enables MSI-X on `df` and points table entry 0 at `vector` on the local APIC `apic_id`
/// (fixed delivery, edge). Returns `None` if the function has no usable MSI-X capability.
pub fn enable_msix(
    root: &mut PciRoot<PortCam>,
    df: DeviceFunction,
    vector: u8,
    apic_id: u32,
) -> Option<()> {
    let cap = root.capabilities(df).find(|c| c.id == CAP_MSIX)?;
    let mut cam = PortCam::new();
    let table = cam.read_word(df, cap.offset + 4);
    let bir = u8::try_from(table & 0x7).ok()?;
    let table_addr = bar_address(root, df, bir)? + u64::from(table & !0x7);
    let entry = table_addr as *mut u32;
    let message = [
        0xfee0_0000 | (apic_id & 0xff) << 12,
        0,
        u32::from(vector),
        0,
    ];
    for (i, word) in message.iter().enumerate() {
        // SAFETY: `table_addr` is entry 0 of the function's MSI-X table inside a BAR we assigned
        // (identity-mapped, uncached); each entry is four 32-bit registers (PCI spec 6.8.2).
        unsafe { entry.add(i).write_volatile(*word) };
    }
    // Message Control is the upper half of the capability's first dword: set bit 15 (enable),
    // clear bit 14 (function mask).
    let header = cam.read_word(df, cap.offset);
    cam.write_word(df, cap.offset, (header | 1 << 31) & !(1 << 30));
    Some(())
}
