//! The SNP secrets page: written by the PSP at launch (metadata section type SNP_SECRETS,
//! measured as page type SECRETS), holding the VM platform communication keys.
//!
//! Layout: SEV-SNP Firmware ABI #56860, §8.17.2.5 "PAGE_TYPE_SECRETS" (secrets page format,
//! rev. 1.51), and for the guest-OS area at 0xA0 the GHCB specification #56421 §2.7 "SEV-SNP
//! Secrets Page" (rev. 2.01+: the message sequence numbers live there, low 32 bits at
//! 0xA0 + 4n, high 32 bits at 0xB8 + 4n for VMPCKn).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x000 | 4 | VERSION |
//! | 0x004 | 4 | bit 0 IMIEN (imported/migrated guest) |
//! | 0x008 | 4 | FMS (family/model/stepping) |
//! | 0x00C | 4 | reserved |
//! | 0x010 | 16 | GOSVW (guest OS-visible workarounds) |
//! | 0x020 | 32 | VMPCK0 |
//! | 0x040 | 32 | VMPCK1 |
//! | 0x060 | 32 | VMPCK2 |
//! | 0x080 | 32 | VMPCK3 |
//! | 0x0A0 | 96 | guest OS area: MSG_SEQNO_0..3 (u32 each), AP_JUMP_TABLE_PA (u64) @0xB0, MSG_SEQNO_HI_0..3 @0xB8, reserved, OS-area VERSION u16 @0xDE, GUEST_USAGE[32] @0xE0 |
//! | 0x100 | .. | VMSA tweak bitmap, SVSM fields (newer ABIs), reserved |
#![forbid(unsafe_code)]

use core::ops::Range;

use zeroize::Zeroize;

/// Size of the secrets page.
pub const SECRETS_PAGE_SIZE: usize = 4096;
/// Size of a VMPCK (AES-256 key).
pub const VMPCK_SIZE: usize = 32;

/// Byte ranges of the secrets page.
pub mod field {
    use core::ops::Range;
    /// VERSION.
    pub const VERSION: Range<usize> = 0x000..0x004;
    /// IMIEN and reserved bits.
    pub const IMIEN: Range<usize> = 0x004..0x008;
    /// FMS.
    pub const FMS: Range<usize> = 0x008..0x00C;
    /// GOSVW.
    pub const GOSVW: Range<usize> = 0x010..0x020;
    /// VMPCK0 (VMPCK1..3 follow every 32 bytes).
    pub const VMPCK0: Range<usize> = 0x020..0x040;
    /// VMPCK3.
    pub const VMPCK3: Range<usize> = 0x080..0x0A0;
    /// Guest OS area.
    pub const OS_AREA: Range<usize> = 0x0A0..0x100;
    /// MSG_SEQNO_0 (low 32 bits); MSG_SEQNO_n at +4n.
    pub const MSG_SEQNO_LO_0: usize = 0x0A0;
    /// AP_JUMP_TABLE_PA.
    pub const AP_JUMP_TABLE_PA: Range<usize> = 0x0B0..0x0B8;
    /// MSG_SEQNO_HI_0 (high 32 bits); MSG_SEQNO_HI_n at +4n.
    pub const MSG_SEQNO_HI_0: usize = 0x0B8;
    /// GUEST_USAGE.
    pub const GUEST_USAGE: Range<usize> = 0x0E0..0x100;
}

/// Why the secrets page cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretsError {
    /// VERSION is not one this code knows (2 or 3).
    Version(u32),
    /// VMPCKn is all zero: the key was never installed, or wiped after a failure.
    EmptyKey(u8),
    /// VMPCK index above 3.
    BadIndex(u8),
}

/// A VM platform communication key; zeroized on drop, `Debug` redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Vmpck {
    /// Which VMPCK (0..=3): goes into the message header's MSG_VMPCK.
    pub index: u8,
    key: [u8; VMPCK_SIZE],
}

impl Vmpck {
    /// A key from raw bytes (tests, and [`SecretsPage::vmpck`]).
    pub fn new(index: u8, key: [u8; VMPCK_SIZE]) -> Self {
        Self { index, key }
    }

    /// The key bytes.
    pub fn key(&self) -> &[u8; VMPCK_SIZE] {
        &self.key
    }
}

impl Drop for Vmpck {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl core::fmt::Debug for Vmpck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vmpck")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// A view of the secrets page.
#[derive(Debug)]
pub struct SecretsPage<'a> {
    bytes: &'a [u8; SECRETS_PAGE_SIZE],
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn vmpck_range(index: u8) -> Range<usize> {
    let start = field::VMPCK0.start + VMPCK_SIZE * usize::from(index);
    start..start + VMPCK_SIZE
}

impl<'a> SecretsPage<'a> {
    /// Checks VERSION and wraps the page.
    ///
    /// # Errors
    /// [`SecretsError::Version`] for an unknown version.
    pub fn new(bytes: &'a [u8; SECRETS_PAGE_SIZE]) -> Result<Self, SecretsError> {
        match u32_at(bytes, field::VERSION.start) {
            2 | 3 => Ok(Self { bytes }),
            v => Err(SecretsError::Version(v)),
        }
    }

    /// VERSION.
    pub fn version(&self) -> u32 {
        u32_at(self.bytes, field::VERSION.start)
    }

    /// FMS: CPUID(1).EAX-style family/model/stepping of the platform.
    pub fn fms(&self) -> u32 {
        u32_at(self.bytes, field::FMS.start)
    }

    /// VMPCK `index`, refusing an all-zero key.
    ///
    /// # Errors
    /// [`SecretsError::BadIndex`] or [`SecretsError::EmptyKey`].
    pub fn vmpck(&self, index: u8) -> Result<Vmpck, SecretsError> {
        if index > 3 {
            return Err(SecretsError::BadIndex(index));
        }
        let mut key = [0u8; VMPCK_SIZE];
        key.copy_from_slice(&self.bytes[vmpck_range(index)]);
        if key == [0u8; VMPCK_SIZE] {
            return Err(SecretsError::EmptyKey(index));
        }
        Ok(Vmpck::new(index, key))
    }

    /// The last message sequence number used with VMPCK `index`, from the OS area
    /// (0 on a fresh launch: the PSP zeroes the area).
    pub fn msg_seqno(&self, index: u8) -> u64 {
        let i = usize::from(index.min(3)) * 4;
        let lo = u32_at(self.bytes, field::MSG_SEQNO_LO_0 + i);
        let hi = u32_at(self.bytes, field::MSG_SEQNO_HI_0 + i);
        (u64::from(hi) << 32) | u64::from(lo)
    }
}

/// Stores a message sequence number for VMPCK `index` in the OS area (the page is private
/// guest memory, so this survives only as long as the guest does, which is what it is for).
pub fn store_msg_seqno(bytes: &mut [u8; SECRETS_PAGE_SIZE], index: u8, seqno: u64) {
    let i = usize::from(index.min(3)) * 4;
    let lo = field::MSG_SEQNO_LO_0 + i;
    let hi = field::MSG_SEQNO_HI_0 + i;
    bytes[lo..lo + 4].copy_from_slice(&(seqno as u32).to_le_bytes());
    bytes[hi..hi + 4].copy_from_slice(&((seqno >> 32) as u32).to_le_bytes());
}

/// Wipes VMPCK `index` in the page, as the Linux driver does after a failed exchange whose
/// sequence number cannot be proven unused: no later message can then reuse an IV.
pub fn wipe_vmpck(bytes: &mut [u8; SECRETS_PAGE_SIZE], index: u8) {
    if index <= 3 {
        bytes[vmpck_range(index)].zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> [u8; SECRETS_PAGE_SIZE] {
        let mut p = [0u8; SECRETS_PAGE_SIZE];
        p[0..4].copy_from_slice(&3u32.to_le_bytes());
        p[8..12].copy_from_slice(&0x00a0_0f11u32.to_le_bytes());
        for k in 0..4u8 {
            p[vmpck_range(k)].fill(0x10 + k);
        }
        p
    }

    #[test]
    fn offsets_match_the_abi_table() {
        assert_eq!(field::VERSION.start, 0x00);
        assert_eq!(field::FMS.start, 0x08);
        assert_eq!(field::GOSVW, 0x10..0x20);
        assert_eq!(field::VMPCK0, 0x20..0x40);
        assert_eq!(vmpck_range(1), 0x40..0x60);
        assert_eq!(vmpck_range(2), 0x60..0x80);
        assert_eq!(vmpck_range(3), field::VMPCK3);
        assert_eq!(field::OS_AREA, 0xA0..0x100);
        assert_eq!(field::OS_AREA.len(), 96);
        assert_eq!(field::AP_JUMP_TABLE_PA.start, 0xB0);
        assert_eq!(field::GUEST_USAGE, 0xE0..0x100);
    }

    #[test]
    fn keys_and_sequence_numbers() {
        let mut p = page();
        let s = SecretsPage::new(&p).unwrap();
        assert_eq!(s.version(), 3);
        assert_eq!(s.fms(), 0x00a0_0f11);
        let k = s.vmpck(0).unwrap();
        assert_eq!(k.index, 0);
        assert_eq!(k.key(), &[0x10; 32]);
        assert_eq!(s.vmpck(3).unwrap().key(), &[0x13; 32]);
        assert_eq!(s.vmpck(4), Err(SecretsError::BadIndex(4)));
        assert_eq!(s.msg_seqno(0), 0);
        assert!(!format!("{k:?}").contains("16"));

        store_msg_seqno(&mut p, 0, 0x1_0000_0002);
        assert_eq!(&p[0xA0..0xA4], &[2, 0, 0, 0]);
        assert_eq!(&p[0xB8..0xBC], &[1, 0, 0, 0]);
        assert_eq!(SecretsPage::new(&p).unwrap().msg_seqno(0), 0x1_0000_0002);
        assert_eq!(SecretsPage::new(&p).unwrap().msg_seqno(1), 0);

        wipe_vmpck(&mut p, 0);
        assert_eq!(
            SecretsPage::new(&p).unwrap().vmpck(0),
            Err(SecretsError::EmptyKey(0))
        );
        assert_eq!(
            SecretsPage::new(&p).unwrap().vmpck(1).unwrap().key(),
            &[0x11; 32]
        );
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut p = page();
        p[0] = 1;
        assert_eq!(SecretsPage::new(&p).err(), Some(SecretsError::Version(1)));
        // A plain (non-SNP) boot sees zeroed RAM there.
        assert_eq!(
            SecretsPage::new(&[0; SECRETS_PAGE_SIZE]).err(),
            Some(SecretsError::Version(0))
        );
    }
}
