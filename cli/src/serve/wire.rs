//! Big-endian reads that never panic.

/// The big-endian u32 at `at`, if `buf` is long enough.
pub fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// [`be32`] as a `usize` (saturating on 16-bit targets, which this server does not run on).
pub fn be32_usize(buf: &[u8], at: usize) -> Option<usize> {
    be32(buf, at).map(|v| usize::try_from(v).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_bounds_only() {
        let b = [0, 0, 1, 2, 3];
        assert_eq!(be32(&b, 0), Some(0x102));
        assert_eq!(be32(&b, 1), Some(0x10203));
        assert_eq!(be32(&b, 2), None);
        assert_eq!(be32(&b, usize::MAX), None);
    }
}
