//! PCR banks (Part 1, 17 "PCR"): SHA-1, SHA-256 and SHA-384, 24 PCRs each, with the PC Client
//! platform attributes for reset/extend localities and initial values.

use alloc::vec;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::crypto::hash::{HASH_ALGS, HashAlg};

/// Number of PCRs per bank (PC Client Platform TPM Profile: 24).
pub const PCR_COUNT: usize = 24;
/// Octets in a TPMS_PCR_SELECT bitmap for [`PCR_COUNT`] PCRs (PCR_SELECT_MIN).
pub const PCR_SELECT_MIN: usize = PCR_COUNT.div_ceil(8);
/// Largest sizeofSelect accepted (PCR_SELECT_MAX in the reference implementation).
pub const PCR_SELECT_MAX: usize = 4;

/// Per-PCR attributes (PC Client Platform TPM Profile, Table "PCR Attributes").
#[derive(Clone, Copy, Debug)]
pub struct PcrAttr {
    /// Saved by Shutdown(STATE) and restored by Startup(STATE).
    pub state_save: bool,
    /// Bit n set: locality n may reset this PCR.
    pub reset_locality: u8,
    /// Bit n set: locality n may extend this PCR.
    pub extend_locality: u8,
}

const fn attr(state_save: bool, reset_locality: u8, extend_locality: u8) -> PcrAttr {
    PcrAttr {
        state_save,
        reset_locality,
        extend_locality,
    }
}

/// Attributes of PCR `i` (0..24).
pub const fn pcr_attr(i: usize) -> PcrAttr {
    match i {
        0..=15 => attr(true, 0x00, 0x1F),
        16 => attr(false, 0x0F, 0x1F),      // Debug
        17 => attr(false, 0x10, 0x1C),      // Locality 4
        18 => attr(false, 0x10, 0x1C),      // Locality 3
        19 => attr(false, 0x10, 0x0C),      // Locality 2
        20 => attr(false, 0x14, 0x0E),      // Locality 1
        21 | 22 => attr(false, 0x14, 0x04), // Dynamic OS
        _ => attr(false, 0x0F, 0x1F),       // 23: Application specific
    }
}

/// Is PCR `i` in the (single) PCR authorization group and the (single) PCR policy group?
/// As the reference implementation for the PC Client profile (PCRBelongsAuthGroup,
/// PCRBelongsPolicyGroup): PCRs 20-22.
pub const fn in_pcr_group(i: usize) -> bool {
    matches!(i, 20..=22)
}

/// Value a PCR takes at TPM Reset: the DRTM PCRs 17-22 start as all ones, the rest as zeros
/// (PC Client Platform TPM Profile).
fn initial_value(i: usize, alg: HashAlg) -> Vec<u8> {
    let fill = if (17..=22).contains(&i) { 0xFF } else { 0x00 };
    vec![fill; alg.digest_size()]
}

/// One bank of PCR values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bank {
    pub alg: HashAlg,
    pub values: Vec<Vec<u8>>,
    /// Bit i set: PCR i is allocated in this bank (PCR_Allocate); the others cannot be read
    /// or extended.
    pub allocated: u32,
}

/// Every PCR allocated.
pub const ALL_PCRS: u32 = (1 << PCR_COUNT) - 1;

/// A PCR allocation: (bank, bitmap of allocated PCRs) for each implemented hash.
pub type Allocation = Vec<(HashAlg, u32)>;

/// The allocation of a new TPM: every PCR in every implemented bank.
pub fn full_allocation() -> Allocation {
    HASH_ALGS.iter().map(|&alg| (alg, ALL_PCRS)).collect()
}

impl Bank {
    /// The value of PCR `pcr` if it is allocated.
    pub fn get(&self, pcr: usize) -> Option<&[u8]> {
        if pcr >= PCR_COUNT || self.allocated & (1 << pcr) == 0 {
            return None;
        }
        self.values.get(pcr).map(Vec::as_slice)
    }
}

/// All PCR banks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrBanks {
    pub banks: Vec<Bank>,
}

impl Default for PcrBanks {
    fn default() -> Self {
        Self::new()
    }
}

impl PcrBanks {
    /// Banks at TPM Reset, every PCR allocated.
    pub fn new() -> Self {
        Self::with_allocation(&full_allocation())
    }

    /// Banks at TPM Reset with `allocation` (banks it does not name have no PCR allocated).
    pub fn with_allocation(allocation: &[(HashAlg, u32)]) -> Self {
        Self {
            banks: HASH_ALGS
                .iter()
                .map(|&alg| Bank {
                    alg,
                    values: (0..PCR_COUNT).map(|i| initial_value(i, alg)).collect(),
                    allocated: allocation
                        .iter()
                        .find(|(a, _)| *a == alg)
                        .map_or(0, |(_, bits)| bits & ALL_PCRS),
                })
                .collect(),
        }
    }

    /// The allocation these banks were made with.
    pub fn allocation(&self) -> Allocation {
        self.banks.iter().map(|b| (b.alg, b.allocated)).collect()
    }

    pub fn bank(&self, alg: HashAlg) -> Option<&Bank> {
        self.banks.iter().find(|b| b.alg == alg)
    }

    /// The value of PCR `pcr` in bank `alg`, if allocated.
    pub fn get(&self, alg: HashAlg, pcr: usize) -> Option<&[u8]> {
        self.bank(alg)?.get(pcr)
    }

    /// PCR[i] := H(PCR[i] || digest) (Part 1, 17.2 "Extend"), if PCR i is allocated.
    pub fn extend(&mut self, alg: HashAlg, pcr: usize, digest: &[u8]) {
        if let Some(bank) = self.banks.iter_mut().find(|b| b.alg == alg)
            && pcr < PCR_COUNT
            && bank.allocated & (1 << pcr) != 0
            && let Some(v) = bank.values.get_mut(pcr)
        {
            *v = alg.digest(&[v, digest]);
        }
    }

    /// Resets PCR `pcr` in every bank to its reset value.
    pub fn reset(&mut self, pcr: usize) {
        for bank in &mut self.banks {
            if let Some(v) = bank.values.get_mut(pcr) {
                *v = initial_value(pcr, bank.alg);
            }
        }
    }

    /// Takes the saved values of state-saved PCRs (TPM Resume, Part 1, 36.4).
    pub fn restore_saved(&mut self, saved: &PcrBanks) {
        for bank in &mut self.banks {
            if let Some(old) = saved.bank(bank.alg) {
                for (i, v) in bank.values.iter_mut().enumerate() {
                    if pcr_attr(i).state_save
                        && let Some(o) = old.values.get(i)
                    {
                        v.clone_from(o);
                    }
                }
            }
        }
    }
}

/// A parsed TPML_PCR_SELECTION entry: a hash bank and the selected PCR indices bitmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcrSelection {
    pub alg: u16,
    /// The select bitmap as sent (sizeofSelect octets).
    pub select: Vec<u8>,
}

impl PcrSelection {
    /// Is PCR `i` selected?
    pub fn is_selected(&self, i: usize) -> bool {
        self.select
            .get(i / 8)
            .is_some_and(|octet| octet & (1 << (i % 8)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_and_reset() {
        let mut b = PcrBanks::new();
        assert_eq!(b.get(HashAlg::Sha256, 17), Some(&[0xFF; 32][..]));
        b.extend(HashAlg::Sha256, 16, &[0; 32]);
        let v = b.get(HashAlg::Sha256, 16).map(<[u8]>::to_vec);
        assert_eq!(v, Some(HashAlg::Sha256.digest(&[&[0; 32], &[0; 32]])));
        b.reset(16);
        assert_eq!(b.get(HashAlg::Sha256, 16), Some(&[0; 32][..]));
    }
}
