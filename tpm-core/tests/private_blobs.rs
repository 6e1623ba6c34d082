//! The layout of TPM2B_PRIVATE as the reference implementation writes it (SensitiveToPrivate):
//! integrity HMAC, then a random TPM2B_IV, then the AES-CFB encrypted TPM2B_SENSITIVE whose
//! authValue is zero-padded to the nameAlg digest size. The IV keeps two private areas of the
//! same object (same parent seed, same Name, so the same key) from sharing a keystream; the
//! padding keeps the blob from revealing the authValue's length. Clients see both: FAPI's
//! tests compare the sizes of the blobs it stores with the reference simulator's.

#![allow(dead_code)]

mod keys_util;

use keys_util::*;
use ukvtpm_tpm_core::TpmRc;

/// TPM_CC_ObjectChangeAuth.
const OBJECT_CHANGE_AUTH: u32 = 0x150;

/// integrity (2 + SHA-256) + TPM2B_IV (2 + AES block) + TPM2B_SENSITIVE of a sealed object
/// with nameAlg SHA-256: type, padded authValue, 32-octet obfuscation seed, data.
fn sealed_private_len(data: usize) -> usize {
    (2 + 32) + (2 + 16) + 2 + (2 + (2 + 32) + (2 + 32) + (2 + data))
}

#[test]
fn private_has_a_random_iv_and_a_padded_auth() {
    let mut e = started();
    let (parent, _) = create_primary(&mut e, OWNER, &srk_ecc_template()).unwrap();
    let data = b"top secret";
    for auth in [&b""[..], &b"pw"[..], &[0x55u8; 32][..]] {
        let (private, public) = create(&mut e, parent, &sealed_template(), auth, data).unwrap();
        assert_eq!(
            private.len(),
            sealed_private_len(data.len()),
            "auth {auth:?}"
        );
        assert_eq!(
            private[34..36],
            [0, 16],
            "TPM2B_IV after the integrity digest"
        );
        let (h, _) = load(&mut e, parent, &private, &public).unwrap();
        // The padding is not part of the authValue.
        assert_eq!(unseal(&mut e, h, auth).unwrap(), data);
        flush(&mut e, h);
    }
}

#[test]
fn rewrapping_the_same_object_uses_a_new_iv() {
    let mut e = started();
    let (parent, _) = create_primary(&mut e, OWNER, &srk_rsa_template()).unwrap();
    let (private, public) = create(&mut e, parent, &sealed_template(), b"pw", b"data").unwrap();
    let (h, _) = load(&mut e, parent, &private, &public).unwrap();
    let change = |e: &mut _| {
        let (_, out) = run(
            e,
            OBJECT_CHANGE_AUTH,
            &[h, parent],
            &[b"pw"],
            &tpm2b(b"pw"),
            false,
        )
        .unwrap();
        let mut rest = out.as_slice();
        take2b(&mut rest)
    };
    let a = change(&mut e);
    let b = change(&mut e);
    // Same key, same plaintext: only the IV differs, so no octet of the ciphertext repeats
    // its position's keystream.
    assert_eq!(a.len(), b.len());
    assert_ne!(a[36..52], b[36..52], "IVs");
    assert_ne!(a[52..], b[52..], "ciphertexts");
    for private in [a, b] {
        let (h2, _) = load(&mut e, parent, &private, &public).unwrap();
        assert_eq!(unseal(&mut e, h2, b"pw").unwrap(), b"data");
        flush(&mut e, h2);
    }
}

#[test]
fn private_without_its_iv_or_truncated_is_refused() {
    let mut e = started();
    let (parent, _) = create_primary(&mut e, OWNER, &srk_ecc_template()).unwrap();
    let (private, public) = create(&mut e, parent, &sealed_template(), b"", b"x").unwrap();
    // Without the IV the HMAC no longer matches: integrity first, as UnwrapOuter.
    let mut no_iv = private[..34].to_vec();
    no_iv.extend_from_slice(&private[52..]);
    assert_eq!(
        load(&mut e, parent, &no_iv, &public).unwrap_err().base(),
        TpmRc::INTEGRITY
    );
    // Truncated anywhere: an error code, never a panic.
    for n in 0..private.len() {
        assert!(load(&mut e, parent, &private[..n], &public).is_err(), "{n}");
    }
}
