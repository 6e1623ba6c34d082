//! virtio-net over the modern PCI transport (`virtio-drivers`) and its smoltcp `Device` glue.
//!
//! Memory is identity-mapped, so DMA addresses are virtual addresses. On a plain boot DMA
//! memory is heap memory and `share`/`unshare` are the identity. Under SEV-SNP the device can
//! only reach shared (unencrypted) pages (DESIGN §6): [`init_shared_pool`] makes one pool of
//! heap pages shared at boot; `dma_alloc` hands out its pages (the virtqueues), `share` copies
//! a buffer into a bounce buffer from it and `unshare` copies device-written data back. Heap
//! pages are never shared in place (their neighbours would leak to the host).

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::cell::RefCell;
use core::ptr::NonNull;

use spin::Mutex;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use virtio_drivers::device::net::{RxBuffer, VirtIONet};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

use crate::arch::cpu;
use crate::pci::{self, PortCam};
use crate::snp::bounce::PagePool;
use crate::snp::pvalidate::ShareError;

/// Receive/transmit queue size.
pub const QUEUE_SIZE: usize = 16;
/// Per-buffer size: an Ethernet frame plus the virtio-net header.
const BUF_LEN: usize = 2048;

/// Pages of the shared DMA pool under SNP. With [`QUEUE_SIZE`] 16 the driver holds two
/// queues x (descriptor+avail page, used page), 16 posted receive buffers of [`BUF_LEN`] (one
/// bounce page each) and a few transmit bounces: about 30 pages; 64 leaves room.
const SHARED_POOL_PAGES: usize = 64;

/// The shared DMA pool; `None` on plain boots (then the HAL below is the identity).
static SHARED_POOL: Mutex<Option<PagePool>> = Mutex::new(None);

/// Why the shared pool could not be set up.
#[derive(Debug, Clone, Copy)]
pub enum PoolError {
    /// No heap for it.
    OutOfMemory,
    /// Making it shared failed.
    Share(ShareError),
    /// Set up twice or bad geometry.
    Pool(crate::snp::bounce::PoolError),
}

/// Under SNP, before [`NetDevice::init`]: takes [`SHARED_POOL_PAGES`] pages from the heap and
/// makes them shared (rescind validation, page-state change, C-bit clear: `snp::hw`). Returns
/// the pool's address range.
///
/// # Errors
/// [`PoolError`]; the kernel must not bring the device up then.
pub fn init_shared_pool() -> Result<core::ops::Range<u64>, PoolError> {
    let layout = dma_layout(SHARED_POOL_PAGES).ok_or(PoolError::OutOfMemory)?;
    // SAFETY: the layout has a non-zero size.
    let base = unsafe { alloc_zeroed(layout) };
    if base.is_null() {
        return Err(PoolError::OutOfMemory);
    }
    // Never freed: the pool lives as long as the device.
    let pool = PagePool::new(base as u64, SHARED_POOL_PAGES).map_err(PoolError::Pool)?;
    let range = pool.range();
    let mut mem = crate::mm::snp::PageTables::new();
    crate::snp::hw::make_shared(&mut mem, range.clone()).map_err(PoolError::Share)?;
    let mut slot = SHARED_POOL.lock();
    if slot.is_some() {
        return Err(PoolError::Pool(crate::snp::bounce::PoolError::Geometry));
    }
    *slot = Some(pool);
    Ok(range)
}

/// Pool exhausted: the device cannot be given a buffer, and handing it private memory instead
/// would be useless at best; stop (fail closed).
fn pool_exhausted() -> ! {
    crate::log!("ukvtpm: FATAL: shared DMA pool exhausted; halting");
    cpu::halt_forever()
}

/// The kernel's `virtio-drivers` HAL: heap-backed DMA (shared pool under SNP), identity
/// mapping.
#[derive(Debug)]
pub struct KernelHal;

fn dma_layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned, exclusively owned memory (heap, or pages of
// the shared pool under SNP) whose physical address equals its virtual address (identity map);
// `share` returns the identity address of memory the caller keeps alive, or under SNP of a
// bounce buffer owned by the transfer until `unshare`; MMIO addresses are identity-mapped
// uncached.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        if let Some(pool) = SHARED_POOL.lock().as_mut() {
            let Ok(addr) = pool.alloc(pages) else {
                return (0, NonNull::dangling());
            };
            let ptr = addr as *mut u8;
            // SAFETY: `alloc` handed out `pages` whole pages of the shared pool, identity-mapped
            // and owned by this allocation; shared pages hold garbage until written.
            unsafe { ptr.write_bytes(0, pages * PAGE_SIZE) };
            return match NonNull::new(ptr) {
                Some(p) => (addr as PhysAddr, p),
                None => (0, NonNull::dangling()),
            };
        }
        let Some(layout) = dma_layout(pages).filter(|l| l.size() > 0) else {
            return (0, NonNull::dangling());
        };
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        match NonNull::new(ptr) {
            Some(p) => (p.as_ptr() as PhysAddr, p),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        if let Some(pool) = SHARED_POOL.lock().as_mut() {
            return match pool.free(paddr, pages) {
                Ok(()) => 0,
                Err(_) => -1,
            };
        }
        let Some(layout) = dma_layout(pages) else {
            return -1;
        };
        // SAFETY: the caller passes back a region from `dma_alloc` with the same page count.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let mut slot = SHARED_POOL.lock();
        let Some(pool) = slot.as_mut() else {
            return buffer.cast::<u8>().as_ptr() as PhysAddr;
        };
        let len = buffer.len();
        let Ok(addr) = pool.alloc(PagePool::pages_for(len)) else {
            drop(slot);
            pool_exhausted()
        };
        let bounce = addr as *mut u8;
        if matches!(direction, BufferDirection::DeviceToDriver) {
            // SAFETY: `bounce` is `len` bytes of pool pages owned by this transfer. Zeroed so
            // the device never sees stale bytes of an earlier transfer.
            unsafe { bounce.write_bytes(0, len) };
        } else {
            // SAFETY: the caller keeps `buffer` alive and readable for the call; `bounce` is
            // `len` bytes of pool pages owned by this transfer; private heap and shared pool
            // never overlap.
            unsafe { core::ptr::copy_nonoverlapping(buffer.cast::<u8>().as_ptr(), bounce, len) };
        }
        addr as PhysAddr
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let mut slot = SHARED_POOL.lock();
        let Some(pool) = slot.as_mut() else {
            return;
        };
        let len = buffer.len();
        if !matches!(direction, BufferDirection::DriverToDevice) {
            // SAFETY: `paddr` is the bounce buffer `share` returned for this `buffer` (the
            // `Hal` contract), `len` bytes long; the caller owns `buffer` writable again now
            // that the device is done with it.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    paddr as *const u8,
                    buffer.cast::<u8>().as_ptr(),
                    len,
                );
            }
        }
        if pool.free(paddr, PagePool::pages_for(len)).is_err() {
            drop(slot);
            crate::log!("ukvtpm: FATAL: unshare of a buffer not from the shared pool; halting");
            cpu::halt_forever();
        }
    }
}

type Net = VirtIONet<KernelHal, PciTransport, QUEUE_SIZE>;

/// Why the network device could not be brought up.
#[derive(Debug)]
pub enum NetError {
    /// No virtio-net function on bus 0.
    NotFound,
    /// The BAR window ran out.
    Bars,
    /// The transport or driver refused the device.
    Driver(&'static str),
}

/// The virtio-net device as a smoltcp [`Device`].
pub struct NetDevice {
    net: RefCell<Net>,
    /// Whether queue interrupts arrive as MSI-X messages (otherwise: timer polling only).
    pub msix: bool,
}

impl core::fmt::Debug for NetDevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetDevice")
            .field("msix", &self.msix)
            .finish()
    }
}

/// virtio 1.x common configuration offsets (spec 4.1.4.3).
const COMMON_MSIX_CONFIG: u64 = 0x10;
const COMMON_QUEUE_SELECT: u64 = 0x16;
const COMMON_QUEUE_MSIX_VECTOR: u64 = 0x1a;
const NO_VECTOR: u16 = 0xffff;

/// Address of the virtio common-configuration structure (vendor capability type 1).
fn common_cfg(root: &mut PciRoot<PortCam>, df: DeviceFunction) -> Option<u64> {
    let cam = PortCam::new();
    let cap = root
        .capabilities(df)
        .find(|c| c.id == 0x09 && (c.private_header >> 8) as u8 == 1)?;
    let bar = u8::try_from(cam.read_word(df, cap.offset + 4) & 0xff).ok()?;
    let offset = cam.read_word(df, cap.offset + 8);
    Some(pci::bar_address(root, df, bar)? + u64::from(offset))
}

/// Routes both virtqueues to MSI-X table entry 0 and config changes nowhere. `virtio-drivers`
/// does not program MSI-X vectors, so this writes the two common-config registers itself.
fn route_queues_to_msix(common: u64) -> bool {
    let reg = |offset: u64| (common + offset) as *mut u16;
    let mut ok = true;
    // SAFETY: `common` is the device's common configuration structure inside a BAR we
    // assigned (identity-mapped, uncached); the offsets are the 16-bit registers of virtio
    // 1.x 4.1.4.3. The driver is not using the device concurrently (single-threaded).
    unsafe {
        reg(COMMON_MSIX_CONFIG).write_volatile(NO_VECTOR);
        for queue in 0..2u16 {
            reg(COMMON_QUEUE_SELECT).write_volatile(queue);
            reg(COMMON_QUEUE_MSIX_VECTOR).write_volatile(0);
            ok &= reg(COMMON_QUEUE_MSIX_VECTOR).read_volatile() == 0;
        }
    }
    ok
}

impl NetDevice {
    /// Finds, configures and starts the first virtio-net device; MSI-X entry 0 raises `vector`
    /// on local APIC `apic_id`.
    ///
    /// # Errors
    /// [`NetError`] when there is no device or it cannot be started.
    pub fn init(vector: u8, apic_id: u32) -> Result<NetDevice, NetError> {
        let mut root = PciRoot::new(PortCam::new());
        let (df, _) = pci::find_virtio_net(&root).ok_or(NetError::NotFound)?;
        let mut bars = pci::BarAllocator::default();
        pci::assign_bars(&mut root, df, &mut bars).ok_or(NetError::Bars)?;
        let transport = PciTransport::new::<KernelHal, _>(&mut root, df)
            .map_err(|_| NetError::Driver("virtio PCI transport"))?;
        let net = Net::new(transport, BUF_LEN).map_err(|_| NetError::Driver("virtio-net"))?;
        let msix = pci::enable_msix(&mut root, df, vector, apic_id).is_some()
            && common_cfg(&mut root, df).is_some_and(route_queues_to_msix);
        Ok(NetDevice {
            net: RefCell::new(net),
            msix,
        })
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.net.borrow().mac_address()
    }

    /// Whether a received frame is waiting.
    pub fn rx_pending(&self) -> bool {
        self.net.borrow().can_recv()
    }
}

/// A received frame, recycled into the queue once smoltcp has read it.
pub struct VirtioRx<'a> {
    net: &'a RefCell<Net>,
    buf: Option<RxBuffer>,
}

/// Permission to send one frame.
pub struct VirtioTx<'a> {
    net: &'a RefCell<Net>,
}

impl Drop for VirtioRx<'_> {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let _ = self.net.borrow_mut().recycle_rx_buffer(buf);
        }
    }
}

impl phy::RxToken for VirtioRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        // No borrow of the device is held while `f` runs (smoltcp transmits from inside it);
        // dropping `self` afterwards recycles the buffer.
        match &self.buf {
            Some(buf) => f(buf.packet()),
            None => f(&[]),
        }
    }
}

impl phy::TxToken for VirtioTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut net = self.net.borrow_mut();
        let mut tx = net.new_tx_buffer(len);
        let result = f(tx.packet_mut());
        // A failed send is a dropped frame; TCP retransmits.
        let _ = net.send(tx);
        result
    }
}

impl Device for NetDevice {
    type RxToken<'a> = VirtioRx<'a>;
    type TxToken<'a> = VirtioTx<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(VirtioRx<'_>, VirtioTx<'_>)> {
        let buf = self.net.get_mut().receive().ok()?;
        Some((
            VirtioRx {
                net: &self.net,
                buf: Some(buf),
            },
            VirtioTx { net: &self.net },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<VirtioTx<'_>> {
        self.net
            .get_mut()
            .can_send()
            .then_some(VirtioTx { net: &self.net })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps.max_burst_size = Some(QUEUE_SIZE);
        caps
    }
}
