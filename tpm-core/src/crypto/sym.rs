//! AES in the block cipher modes a TPM offers (Part 2, 6.3 TPM_ALG_CFB/CBC/CTR/OFB/ECB), over
//! the RustCrypto mode crates. The IV returned after each operation is the chaining value the
//! reference implementation returns (CryptSymmetricEncrypt), so a caller can continue a long
//! message in the next command.

use aes::{Aes128, Aes192, Aes256};
use cipher::{
    BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, InnerIvInit,
    KeyInit, KeyIvInit, StreamCipher, array::Array,
};

use crate::rc::{TpmRc, TpmResult};

/// AES block size in octets.
pub const BLOCK: usize = 16;

/// TPM_ALG_ID values of the symmetric modes (Part 2, 6.3).
pub mod mode {
    pub const CTR: u16 = 0x0040;
    pub const OFB: u16 = 0x0041;
    pub const CBC: u16 = 0x0042;
    pub const CFB: u16 = 0x0043;
    pub const ECB: u16 = 0x0044;
}

/// TPM_ALG_AES.
pub const ALG_AES: u16 = 0x0006;

/// Supported AES key sizes in bits.
pub fn aes_key_bits_ok(bits: u16) -> bool {
    matches!(bits, 128 | 192 | 256)
}

/// True for a mode this engine implements.
pub fn mode_ok(m: u16) -> bool {
    matches!(m, mode::CTR | mode::OFB | mode::CBC | mode::CFB | mode::ECB)
}

/// Encrypts or decrypts `data` in place with AES `key` in `mode`; `iv` is updated to the
/// chaining value. CBC and ECB need whole blocks (TPM_RC_SIZE otherwise).
pub fn aes(
    mode: u16,
    key: &[u8],
    iv: &mut [u8; BLOCK],
    decrypt: bool,
    data: &mut [u8],
) -> TpmResult<()> {
    match key.len() {
        16 => run::<Aes128>(mode, key, iv, decrypt, data),
        24 => run::<Aes192>(mode, key, iv, decrypt, data),
        32 => run::<Aes256>(mode, key, iv, decrypt, data),
        _ => Err(TpmRc::KEY_SIZE),
    }
}

/// AES-CFB encryption with a zero IV: the protection of sensitive areas (Part 1, 23.3.2) and
/// of secrets in credential and duplication blobs.
pub fn cfb_encrypt(key: &[u8], data: &mut [u8]) -> TpmResult<()> {
    let mut iv = [0u8; BLOCK];
    aes(mode::CFB, key, &mut iv, false, data)
}

/// Inverse of [`cfb_encrypt`].
pub fn cfb_decrypt(key: &[u8], data: &mut [u8]) -> TpmResult<()> {
    let mut iv = [0u8; BLOCK];
    aes(mode::CFB, key, &mut iv, true, data)
}

fn run<C>(
    mode: u16,
    key: &[u8],
    iv: &mut [u8; BLOCK],
    decrypt: bool,
    data: &mut [u8],
) -> TpmResult<()>
where
    C: BlockCipherEncrypt
        + BlockCipherDecrypt
        + KeyInit
        + Clone
        + cipher::BlockSizeUser<BlockSize = cipher::consts::U16>,
{
    let bad_key = |_| TpmRc::KEY_SIZE;
    match mode {
        mode::CFB => {
            let cipher = C::new_from_slice(key).map_err(bad_key)?;
            let ivb = Array::from(*iv);
            if decrypt {
                let mut d = cfb_mode::BufDecryptor::<C>::inner_iv_init(cipher, &ivb);
                d.decrypt(data);
                let (state, _) = d.get_state();
                iv.copy_from_slice(state);
            } else {
                let mut e = cfb_mode::BufEncryptor::<C>::inner_iv_init(cipher, &ivb);
                e.encrypt(data);
                let (state, _) = e.get_state();
                iv.copy_from_slice(state);
            }
            Ok(())
        }
        mode::CBC => {
            if !data.len().is_multiple_of(BLOCK) {
                return Err(TpmRc::SIZE);
            }
            let (blocks, _) = Array::slice_as_chunks_mut(data);
            if decrypt {
                let last = blocks.last().map(|b| b.0);
                let mut d = cbc::Decryptor::<C>::new_from_slices(key, iv).map_err(bad_key)?;
                d.decrypt_blocks(blocks);
                if let Some(last) = last {
                    *iv = last;
                }
            } else {
                let mut e = cbc::Encryptor::<C>::new_from_slices(key, iv).map_err(bad_key)?;
                e.encrypt_blocks(blocks);
                if let Some(last) = blocks.last() {
                    *iv = last.0;
                }
            }
            Ok(())
        }
        mode::ECB => {
            if !data.len().is_multiple_of(BLOCK) {
                return Err(TpmRc::SIZE);
            }
            let (blocks, _) = Array::slice_as_chunks_mut(data);
            if decrypt {
                let mut d = ecb::Decryptor::<C>::new_from_slice(key).map_err(bad_key)?;
                d.decrypt_blocks(blocks);
            } else {
                let mut e = ecb::Encryptor::<C>::new_from_slice(key).map_err(bad_key)?;
                e.encrypt_blocks(blocks);
            }
            Ok(())
        }
        mode::CTR => {
            let mut c = ctr::Ctr128BE::<C>::new_from_slices(key, iv).map_err(bad_key)?;
            c.apply_keystream(data);
            // The next counter value: the IV advanced by the number of blocks used.
            let used = data.len().div_ceil(BLOCK) as u128;
            *iv = u128::from_be_bytes(*iv).wrapping_add(used).to_be_bytes();
            Ok(())
        }
        mode::OFB => {
            let mut c = ofb::Ofb::<C>::new_from_slices(key, iv).map_err(bad_key)?;
            c.apply_keystream(data);
            // The last keystream block: E applied len/16 (rounded up) times to the IV.
            let cipher = C::new_from_slice(key).map_err(bad_key)?;
            let mut block = Array::from(*iv);
            for _ in 0..data.len().div_ceil(BLOCK) {
                cipher.encrypt_block(&mut block);
            }
            *iv = block.0;
            Ok(())
        }
        _ => Err(TpmRc::MODE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_mode() {
        for m in [mode::CFB, mode::CBC, mode::ECB, mode::CTR, mode::OFB] {
            for key in [&[7u8; 16][..], &[9u8; 32][..]] {
                let plain: alloc::vec::Vec<u8> = (0..64u8).collect();
                let mut data = plain.clone();
                let mut iv = [1u8; BLOCK];
                aes(m, key, &mut iv, false, &mut data).unwrap();
                assert_ne!(data, plain);
                let mut iv = [1u8; BLOCK];
                aes(m, key, &mut iv, true, &mut data).unwrap();
                assert_eq!(data, plain, "mode {m:#x}");
            }
        }
    }

    #[test]
    fn aes128_ecb_fips197() {
        // FIPS-197 C.1.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let mut data: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let mut iv = [0u8; BLOCK];
        aes(mode::ECB, &key, &mut iv, false, &mut data).unwrap();
        assert_eq!(data[..4], [0x69, 0xc4, 0xe0, 0xd8]);
    }
}
