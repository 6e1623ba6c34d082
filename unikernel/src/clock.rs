//! TSC-based monotonic clock: tick counts to microseconds and back, with 128-bit intermediates
//! so neither overflows for centuries of uptime.
#![forbid(unsafe_code)]

/// A calibrated time-stamp counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TscClock {
    hz: u64,
    origin: u64,
}

impl TscClock {
    /// A clock counting from TSC value `origin` at `hz` ticks per second (clamped to >= 1).
    pub fn new(hz: u64, origin: u64) -> TscClock {
        TscClock {
            hz: hz.max(1),
            origin,
        }
    }

    /// Ticks per second.
    pub fn hz(&self) -> u64 {
        self.hz
    }

    /// Microseconds from the origin to TSC value `tsc` (0 if `tsc` is earlier).
    pub fn micros(&self, tsc: u64) -> u64 {
        let ticks = u128::from(tsc.saturating_sub(self.origin));
        u64::try_from(ticks * 1_000_000 / u128::from(self.hz)).unwrap_or(u64::MAX)
    }

    /// TSC ticks in `micros` microseconds.
    pub fn ticks(&self, micros: u64) -> u64 {
        u64::try_from(u128::from(micros) * u128::from(self.hz) / 1_000_000).unwrap_or(u64::MAX)
    }
}

/// Ticks of a timer running at `timer_hz` that cover `micros` microseconds, clamped to
/// `1..=u32::MAX` (the local APIC timer's range).
pub fn timer_ticks(timer_hz: u64, micros: u64) -> u32 {
    let ticks = u128::from(micros) * u128::from(timer_hz) / 1_000_000;
    u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways() {
        let c = TscClock::new(2_000_000_000, 1000);
        assert_eq!(c.micros(1000), 0);
        assert_eq!(c.micros(1000 + 2_000_000_000), 1_000_000);
        assert_eq!(c.micros(0), 0);
        assert_eq!(c.ticks(1), 2000);
        assert_eq!(c.micros(u64::MAX), (u64::MAX - 1000) / 2000);
    }

    #[test]
    fn zero_hz_does_not_divide_by_zero() {
        assert_eq!(TscClock::new(0, 0).micros(5), 5_000_000);
    }

    #[test]
    fn timer_ticks_clamp() {
        assert_eq!(timer_ticks(62_500_000, 0), 1);
        assert_eq!(timer_ticks(62_500_000, 1000), 62_500);
        assert_eq!(timer_ticks(u64::MAX, u64::MAX), u32::MAX);
    }
}
