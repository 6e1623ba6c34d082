//! CPU instructions without a home elsewhere: CPUID, TSC, RDRAND/RDSEED, halt.

use core::arch::x86_64::{__cpuid, __cpuid_count, _rdtsc};

/// `CPUID(leaf, subleaf)` as (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    let r = if subleaf == 0 {
        __cpuid(leaf)
    } else {
        __cpuid_count(leaf, subleaf)
    };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86-64 CPU and CR4.TSD is clear (ring 0 anyway).
    unsafe { _rdtsc() }
}

/// Which hardware random instructions the CPU has (CPUID.1:ECX[30], CPUID.7.0:EBX[18]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngSupport {
    /// RDRAND: output of the CPU's DRBG (a CSPRNG reseeded by the hardware entropy source).
    pub rdrand: bool,
    /// RDSEED: output of the entropy source itself.
    pub rdseed: bool,
}

/// Probes RDRAND and RDSEED.
pub fn rng_support() -> RngSupport {
    let (_, _, ecx1, _) = cpuid(1, 0);
    let (max_leaf, _, _, _) = cpuid(0, 0);
    let rdseed = max_leaf >= 7 && cpuid(7, 0).1 & (1 << 18) != 0;
    RngSupport {
        rdrand: ecx1 & (1 << 30) != 0,
        rdseed,
    }
}

/// One 64-bit RDRAND value, retried as Intel's DRNG guide recommends (10 tries).
///
/// # Safety
/// The CPU must support RDRAND ([`rng_support`]).
#[target_feature(enable = "rdrand")]
pub unsafe fn rdrand64() -> Option<u64> {
    let mut value = 0u64;
    for _ in 0..10 {
        if core::arch::x86_64::_rdrand64_step(&mut value) == 1 {
            return Some(value);
        }
    }
    None
}

/// One 64-bit RDSEED value; RDSEED may run dry briefly, so it is retried more often.
///
/// # Safety
/// The CPU must support RDSEED ([`rng_support`]).
#[target_feature(enable = "rdseed")]
pub unsafe fn rdseed64() -> Option<u64> {
    let mut value = 0u64;
    for _ in 0..1000 {
        if core::arch::x86_64::_rdseed64_step(&mut value) == 1 {
            return Some(value);
        }
        core::hint::spin_loop();
    }
    None
}

/// Makes RAM write-back: the MTRRs come out of reset disabled, which means uncached memory
/// everywhere (under KVM that makes the engine ~100x slower). Default type WB, no variable
/// ranges: the MMIO hole is uncached through the page tables instead (PCD|PWT -> PAT UC).
/// Returns false when the CPU has no MTRRs (nothing to do).
pub fn enable_write_back() -> bool {
    const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
    const MTRR_ENABLE: u64 = 1 << 11;
    const TYPE_WB: u64 = 6;
    if cpuid(1, 0).3 & (1 << 12) == 0 {
        return false;
    }
    let mut msr = x86_64::registers::model_specific::Msr::new(IA32_MTRR_DEF_TYPE);
    // SAFETY: CPUID reports MTRRs, so IA32_MTRR_DEF_TYPE exists; enabling MTRRs with a
    // write-back default only changes cacheability of RAM (MMIO is UC via the page tables),
    // and no other CPU is running.
    unsafe { msr.write(MTRR_ENABLE | TYPE_WB) };
    x86_64::instructions::tlb::flush_all();
    true
}

/// Stops this CPU for good: interrupts off, then `hlt` forever.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// The hardware random source: RDRAND when present (the CPU's CTR_DRBG, a CSPRNG reseeded from
/// its entropy source), else RDSEED. There is no software fallback and no fixed seed.
#[derive(Debug, Clone, Copy)]
pub struct HwRng {
    rdrand: bool,
}

impl HwRng {
    /// Probes CPUID.
    ///
    /// # Errors
    /// A message naming what is missing when the CPU has neither instruction.
    pub fn new() -> Result<HwRng, &'static str> {
        let support = rng_support();
        if support.rdrand {
            Ok(HwRng { rdrand: true })
        } else if support.rdseed {
            Ok(HwRng { rdrand: false })
        } else {
            Err(
                "CPU has neither RDRAND nor RDSEED (CPUID.1:ECX[30], CPUID.7:EBX[18]); \
                 under TCG start QEMU with -cpu max",
            )
        }
    }

    /// Which instruction is in use.
    pub fn name(&self) -> &'static str {
        if self.rdrand { "rdrand" } else { "rdseed" }
    }

    /// One 64-bit random value, or `None` if the instruction failed every retry.
    pub fn next_u64(&mut self) -> Option<u64> {
        if self.rdrand {
            // SAFETY: `new` saw RDRAND in CPUID.
            unsafe { rdrand64() }
        } else {
            // SAFETY: `new` saw RDSEED in CPUID.
            unsafe { rdseed64() }
        }
    }

    /// Fills `dest`; a source that keeps failing halts the kernel (fail closed: never serve
    /// TPM operations without fresh randomness).
    pub fn fill(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let Some(value) = self.next_u64() else {
                super::serial::force_write(format_args!(
                    "\nukvtpm: FATAL: {} failed repeatedly; halting\n",
                    self.name()
                ));
                halt_forever()
            };
            chunk.copy_from_slice(&value.to_le_bytes()[..chunk.len()]);
        }
    }
}
