//! HMAC and the TPM key derivation functions (Part 1, 11.4.9 HMAC; 11.4.10 KDFa and KDFe).

use alloc::vec::Vec;
use hmac::{KeyInit, Mac, SimpleHmac};
use sha1::Sha1;
use sha2::{Sha256, Sha384};

use crate::crypto::hash::HashAlg;

/// HMAC over the concatenation of `parts` (Part 1, 11.4.9). Keys of any length are allowed,
/// including empty ones (an unbound, unsalted session with an empty authValue has an empty
/// HMAC key).
pub fn hmac(alg: HashAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC accepts keys of every length; `new_from_slice` cannot fail for it.
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
            return Vec::new();
        };
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        HashAlg::Sha1 => run::<SimpleHmac<Sha1>>(key, parts),
        HashAlg::Sha256 => run::<SimpleHmac<Sha256>>(key, parts),
        HashAlg::Sha384 => run::<SimpleHmac<Sha384>>(key, parts),
    }
}

/// `label` as KDFa/KDFe use it: the string including its terminating zero octet (Part 1,
/// 11.4.10.1: "if Label is not terminated by a zero octet, one is added").
fn push_label(out: &mut Vec<u8>, label: &[u8]) {
    out.extend_from_slice(label);
    if label.last() != Some(&0) {
        out.push(0);
    }
}

/// Keeps the `bits` leftmost bits of `out` (truncate to whole octets, then mask the first
/// octet when `bits` is not a multiple of 8, as Part 1, 11.4.10.2 prescribes).
fn truncate_bits(mut out: Vec<u8>, bits: u32) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    out.truncate(bytes);
    let extra = bits % 8;
    if extra != 0
        && let Some(first) = out.first_mut()
    {
        *first &= (1u8 << extra) - 1;
    }
    out
}

/// KDFa (Part 1, 11.4.10.2): SP800-108 counter mode with HMAC.
/// `KDFa(hashAlg, key, label, contextU, contextV, bits)`.
pub fn kdfa(
    alg: HashAlg,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut fixed = Vec::with_capacity(label.len() + 1 + context_u.len() + context_v.len() + 4);
    push_label(&mut fixed, label);
    fixed.extend_from_slice(context_u);
    fixed.extend_from_slice(context_v);
    fixed.extend_from_slice(&bits.to_be_bytes());
    let mut out = Vec::with_capacity(bytes + alg.digest_size());
    let mut counter: u32 = 1;
    while out.len() < bytes {
        out.extend_from_slice(&hmac(alg, key, &[&counter.to_be_bytes(), &fixed]));
        counter = counter.wrapping_add(1);
    }
    truncate_bits(out, bits)
}

/// KDFe (Part 1, 11.4.10.3): SP800-56A concatenation KDF over the ECDH shared secret `z`
/// (its x-coordinate). `KDFe(hashAlg, Z, label, partyUInfo, partyVInfo, bits)`.
pub fn kdfe(
    alg: HashAlg,
    z: &[u8],
    label: &[u8],
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let mut other = Vec::with_capacity(label.len() + 1 + party_u.len() + party_v.len());
    push_label(&mut other, label);
    other.extend_from_slice(party_u);
    other.extend_from_slice(party_v);
    let mut out = Vec::with_capacity(bytes + alg.digest_size());
    let mut counter: u32 = 1;
    while out.len() < bytes {
        out.extend_from_slice(&alg.digest(&[&counter.to_be_bytes(), z, &other]));
        counter = counter.wrapping_add(1);
    }
    truncate_bits(out, bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_rfc4231_case2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = hmac(
            HashAlg::Sha256,
            b"Jefe",
            &[b"what do ya want ", b"for nothing?"],
        );
        assert_eq!(mac[..4], [0x5b, 0xdc, 0xc1, 0x46]);
        assert_eq!(hmac(HashAlg::Sha256, b"", &[b""]).len(), 32);
    }

    #[test]
    fn kdfa_lengths_and_masking() {
        let k = kdfa(HashAlg::Sha256, b"key", b"ATH", b"u", b"v", 256 + 128);
        assert_eq!(k.len(), 48);
        // The label gets a terminating zero either way.
        assert_eq!(k, kdfa(HashAlg::Sha256, b"key", b"ATH\0", b"u", b"v", 384));
        let odd = kdfa(HashAlg::Sha1, b"key", b"XOR", b"", b"", 12);
        assert_eq!(odd.len(), 2);
        assert_eq!(odd[0] & 0xF0, 0);
        assert_eq!(
            kdfe(HashAlg::Sha256, b"z", b"SECRET", b"", b"", 128).len(),
            16
        );
    }
}
