//! Accounting for the shared DMA pool (DESIGN §6): under SNP, virtio rings and bounce buffers
//! come from one range of pages made shared once at boot, never from pages of the private heap
//! (sharing a heap page in place would expose its neighbours' bytes to the host; see
//! [`super::pvalidate`]). This is only the page bookkeeping: a first-fit bitmap over at most
//! [`MAX_POOL_PAGES`] 4 KiB pages, with contiguous runs for multi-page requests.
#![forbid(unsafe_code)]

use core::ops::Range;

/// 4 KiB.
pub const PAGE: u64 = 0x1000;
/// Capacity of the bitmap.
pub const MAX_POOL_PAGES: usize = 256;
const WORDS: usize = MAX_POOL_PAGES / 64;

/// A page allocator over `[base, base + pages * 4 KiB)`.
#[derive(Debug, Clone)]
pub struct PagePool {
    base: u64,
    pages: usize,
    used: [u64; WORDS],
    in_use: usize,
}

/// Why a pool operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// The pool geometry is invalid (unaligned base, 0 or too many pages).
    Geometry,
    /// No run of free pages long enough.
    Exhausted,
    /// A free of pages that are not allocated or not in the pool.
    BadFree,
}

impl PagePool {
    /// A pool of `pages` pages starting at the 4 KiB-aligned `base`.
    ///
    /// # Errors
    /// [`PoolError::Geometry`].
    pub fn new(base: u64, pages: usize) -> Result<Self, PoolError> {
        if !base.is_multiple_of(PAGE) || pages == 0 || pages > MAX_POOL_PAGES {
            return Err(PoolError::Geometry);
        }
        Ok(Self {
            base,
            pages,
            used: [0; WORDS],
            in_use: 0,
        })
    }

    /// The address range the pool covers.
    pub fn range(&self) -> Range<u64> {
        self.base..self.base + self.pages as u64 * PAGE
    }

    /// Pages currently handed out.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Whether `addr` lies in the pool.
    pub fn contains(&self, addr: u64) -> bool {
        self.range().contains(&addr)
    }

    fn is_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, used: bool) {
        if used {
            self.used[i / 64] |= 1 << (i % 64);
        } else {
            self.used[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Pages needed for `bytes` (at least one).
    pub fn pages_for(bytes: usize) -> usize {
        bytes.div_ceil(PAGE as usize).max(1)
    }

    /// First fit: the address of `count` contiguous free pages, now marked used.
    ///
    /// # Errors
    /// [`PoolError::Exhausted`] (also for `count == 0`).
    pub fn alloc(&mut self, count: usize) -> Result<u64, PoolError> {
        if count == 0 || count > self.pages {
            return Err(PoolError::Exhausted);
        }
        let mut start = 0;
        while start + count <= self.pages {
            match (start..start + count).find(|&i| self.is_used(i)) {
                Some(busy) => start = busy + 1,
                None => {
                    for i in start..start + count {
                        self.set(i, true);
                    }
                    self.in_use += count;
                    return Ok(self.base + start as u64 * PAGE);
                }
            }
        }
        Err(PoolError::Exhausted)
    }

    /// Returns `count` pages at `addr` (as handed out by [`PagePool::alloc`]).
    ///
    /// # Errors
    /// [`PoolError::BadFree`] for an address outside the pool, unaligned, or pages not in use
    /// (nothing is changed then).
    pub fn free(&mut self, addr: u64, count: usize) -> Result<(), PoolError> {
        if !self.contains(addr) || !(addr - self.base).is_multiple_of(PAGE) || count == 0 {
            return Err(PoolError::BadFree);
        }
        let first = ((addr - self.base) / PAGE) as usize;
        if first + count > self.pages || (first..first + count).any(|i| !self.is_used(i)) {
            return Err(PoolError::BadFree);
        }
        for i in first..first + count {
            self.set(i, false);
        }
        self.in_use -= count;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x40_0000;

    #[test]
    fn geometry_is_checked() {
        assert_eq!(PagePool::new(BASE + 1, 4).err(), Some(PoolError::Geometry));
        assert_eq!(PagePool::new(BASE, 0).err(), Some(PoolError::Geometry));
        assert_eq!(
            PagePool::new(BASE, MAX_POOL_PAGES + 1).err(),
            Some(PoolError::Geometry)
        );
        let p = PagePool::new(BASE, MAX_POOL_PAGES).unwrap();
        assert_eq!(p.range(), BASE..BASE + MAX_POOL_PAGES as u64 * PAGE);
    }

    #[test]
    fn pages_for_rounds_up_and_never_returns_zero() {
        assert_eq!(PagePool::pages_for(0), 1);
        assert_eq!(PagePool::pages_for(1), 1);
        assert_eq!(PagePool::pages_for(4096), 1);
        assert_eq!(PagePool::pages_for(4097), 2);
        assert_eq!(PagePool::pages_for(2048 + 12), 1);
    }

    #[test]
    fn alloc_free_accounting_and_first_fit() {
        let mut p = PagePool::new(BASE, 8).unwrap();
        let a = p.alloc(1).unwrap();
        let b = p.alloc(3).unwrap();
        let c = p.alloc(2).unwrap();
        assert_eq!((a, b, c), (BASE, BASE + PAGE, BASE + 4 * PAGE));
        assert_eq!(p.in_use(), 6);
        // Only 2 left, not contiguous with a gap of 3 yet.
        assert_eq!(p.alloc(3), Err(PoolError::Exhausted));
        p.free(b, 3).unwrap();
        assert_eq!(p.in_use(), 3);
        // First fit reuses the hole.
        assert_eq!(p.alloc(2).unwrap(), BASE + PAGE);
        // Free now: page 3 and pages 6..8; a run of 3 does not exist.
        assert_eq!(p.alloc(3), Err(PoolError::Exhausted));
        assert_eq!(p.alloc(2).unwrap(), BASE + 6 * PAGE);
        assert_eq!(p.alloc(1).unwrap(), BASE + 3 * PAGE);
        assert_eq!(p.in_use(), 8);
        assert_eq!(p.alloc(1), Err(PoolError::Exhausted));
    }

    #[test]
    fn bad_frees_change_nothing() {
        let mut p = PagePool::new(BASE, 4).unwrap();
        let a = p.alloc(2).unwrap();
        assert_eq!(p.free(BASE - PAGE, 1), Err(PoolError::BadFree));
        assert_eq!(p.free(a + 1, 1), Err(PoolError::BadFree));
        assert_eq!(p.free(a, 3), Err(PoolError::BadFree)); // third page not in use
        assert_eq!(p.free(a, 0), Err(PoolError::BadFree));
        assert_eq!(p.free(BASE + 4 * PAGE, 1), Err(PoolError::BadFree));
        assert_eq!(p.in_use(), 2);
        p.free(a, 2).unwrap();
        assert_eq!(p.free(a, 1), Err(PoolError::BadFree)); // double free
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn virtio_net_working_set_fits_the_kernel_pool() {
        // virtio::SHARED_POOL_PAGES = 64 with QUEUE_SIZE 16: two queues x (desc+avail page,
        // used page), 16 posted RX bounce pages, up to 16 TX bounces of header + frame.
        let mut p = PagePool::new(BASE, 64).unwrap();
        for _ in 0..4 {
            p.alloc(1).unwrap();
        }
        for _ in 0..16 {
            p.alloc(PagePool::pages_for(2048)).unwrap();
        }
        for _ in 0..32 {
            p.alloc(1).unwrap();
        }
        assert_eq!(p.in_use(), 52);
        assert!(p.alloc(12).is_ok());
    }
}
