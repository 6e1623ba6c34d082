//! TCB_VERSION (SNP ABI spec #56860, Table 3 "TCB_VERSION Structure"; Turin adds the FMC field
//! and moves SNP, Table 4 in revision 1.58).
//!
//! The 8-byte value is laid out per processor generation:
//!
//! | byte | Milan / Genoa | Turin and later |
//! |---|---|---|
//! | 0 | BOOT_LOADER | FMC |
//! | 1 | TEE | BOOT_LOADER |
//! | 2 | reserved | TEE |
//! | 3 | reserved | SNP |
//! | 4..6 | reserved | reserved |
//! | 6 | SNP | reserved |
//! | 7 | MICROCODE | MICROCODE |

/// How the 8 TCB bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcbLayout {
    /// Milan and Genoa.
    Legacy,
    /// Turin (and Venice): adds FMC.
    Turin,
}

/// Security version numbers of the firmware components, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "std", derive(Hash))]
pub struct TcbVersion {
    /// FMC SVN (Turin and later only).
    pub fmc: Option<u8>,
    /// PSP bootloader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Lowest microcode patch level of all cores.
    pub microcode: u8,
}

impl TcbVersion {
    /// Decodes the raw little-endian TCB value.
    pub fn from_raw(raw: u64, layout: TcbLayout) -> Self {
        let b = raw.to_le_bytes();
        match layout {
            TcbLayout::Legacy => Self {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            TcbLayout::Turin => Self {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }

    /// Encodes into the raw value (reserved bytes zero).
    pub fn to_raw(&self, layout: TcbLayout) -> u64 {
        let b = match layout {
            TcbLayout::Legacy => [
                self.bootloader,
                self.tee,
                0,
                0,
                0,
                0,
                self.snp,
                self.microcode,
            ],
            TcbLayout::Turin => [
                self.fmc.unwrap_or(0),
                self.bootloader,
                self.tee,
                self.snp,
                0,
                0,
                0,
                self.microcode,
            ],
        };
        u64::from_le_bytes(b)
    }

    /// The first component of `self` that is below `min`, as `(name, got, min)`; `None` when every
    /// component is at least the minimum. TCB versions are only partially ordered: each SVN is
    /// compared on its own (a newer microcode does not make up for an older SNP firmware).
    /// A minimum FMC is only enforced when the report carries one.
    pub fn first_below(&self, min: &TcbVersion) -> Option<(&'static str, u8, u8)> {
        let mut checks = [
            ("bootloader", self.bootloader, min.bootloader),
            ("tee", self.tee, min.tee),
            ("snp", self.snp, min.snp),
            ("microcode", self.microcode, min.microcode),
            ("fmc", 0, 0),
        ];
        if let (Some(got), Some(want)) = (self.fmc, min.fmc) {
            checks[4] = ("fmc", got, want);
        }
        checks.into_iter().find(|(_, got, want)| got < want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_turin_layouts_round_trip() {
        let raw = u64::from_le_bytes([3, 0, 0, 0, 0, 0, 8, 115]);
        let t = TcbVersion::from_raw(raw, TcbLayout::Legacy);
        assert_eq!(
            t,
            TcbVersion {
                fmc: None,
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115
            }
        );
        assert_eq!(t.to_raw(TcbLayout::Legacy), raw);

        let raw = u64::from_le_bytes([1, 2, 3, 4, 0, 0, 0, 9]);
        let t = TcbVersion::from_raw(raw, TcbLayout::Turin);
        assert_eq!(t.fmc, Some(1));
        assert_eq!((t.bootloader, t.tee, t.snp, t.microcode), (2, 3, 4, 9));
        assert_eq!(t.to_raw(TcbLayout::Turin), raw);
    }

    #[test]
    fn componentwise_minimum() {
        let min = TcbVersion {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        };
        assert_eq!(min.first_below(&min), None);
        let old_snp = TcbVersion { snp: 7, ..min };
        assert_eq!(old_snp.first_below(&min), Some(("snp", 7, 8)));
        let newer_ucode_older_bl = TcbVersion {
            bootloader: 2,
            microcode: 200,
            ..min
        };
        assert_eq!(
            newer_ucode_older_bl.first_below(&min),
            Some(("bootloader", 2, 3))
        );
    }
}
