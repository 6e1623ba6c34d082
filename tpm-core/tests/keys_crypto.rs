//! Engine-level tests of the key operations: Sign/VerifySignature, RSA encryption,
//! EncryptDecrypt and HMAC (issue 4).

mod keys_util;

use keys_util::*;
use ukvtpm_tpm_core::TpmRc;

fn null_ticket() -> Vec<u8> {
    let mut t = 0x8024u16.to_be_bytes().to_vec();
    t.extend_from_slice(&NULL.to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t
}

fn sign(
    e: &mut ukvtpm_tpm_core::Engine<TestPlatform>,
    key: u32,
    scheme: &[u8],
    digest: &[u8],
) -> Result<Vec<u8>, TpmRc> {
    let mut p = tpm2b(digest);
    p.extend_from_slice(scheme);
    p.extend_from_slice(&null_ticket());
    run(e, 0x15D, &[key], &[b""], &p, false).map(|(_, o)| o)
}

fn verify(
    e: &mut ukvtpm_tpm_core::Engine<TestPlatform>,
    key: u32,
    digest: &[u8],
    sig: &[u8],
) -> Result<(), TpmRc> {
    let mut p = tpm2b(digest);
    p.extend_from_slice(sig);
    run(e, 0x177, &[key], &[], &p, false).map(|_| ())
}

#[test]
fn sign_and_verify_rsa_and_ecc() {
    let mut e = started();
    let (parent, _) = create_primary(&mut e, OWNER, &srk_ecc_template()).unwrap();
    let digest = [0x5a; 32];
    let (pr, pu) = create(&mut e, parent, &ecc_sign_template(), b"", b"").unwrap();
    let (k, _) = load(&mut e, parent, &pr, &pu).unwrap();
    let sig = sign(&mut e, k, &[0, 0x10], &digest).unwrap();
    verify(&mut e, k, &digest, &sig).unwrap();
    let mut bad = sig.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        verify(&mut e, k, &digest, &bad).unwrap_err().base(),
        TpmRc::SIGNATURE
    );
    let (pr, pu) = create(&mut e, parent, &rsa_sign_template(), b"", b"").unwrap();
    let (k, _) = load(&mut e, parent, &pr, &pu).unwrap();
    for scheme in [[0, 0x14, 0, 0x0b], [0, 0x16, 0, 0x0b]] {
        let sig = sign(&mut e, k, &scheme, &digest).unwrap();
        verify(&mut e, k, &digest, &sig).unwrap();
    }
    // A key without a scheme needs one from the caller.
    assert_eq!(
        sign(&mut e, k, &[0, 0x10], &digest).unwrap_err().base(),
        TpmRc::SCHEME
    );
}

#[test]
fn aes_and_hmac_keys() {
    let mut e = started();
    let (parent, _) = create_primary(&mut e, OWNER, &srk_ecc_template()).unwrap();
    // AES-128, mode NULL (chosen per call), sign|decrypt|userWithAuth|sdo|fixed.
    let mut aes = vec![0, 0x25, 0, 0x0b];
    aes.extend_from_slice(&0x0006_0072u32.to_be_bytes());
    aes.extend_from_slice(&[0, 0, 0, 6, 0, 0x80, 0, 0x10, 0, 0]);
    let (pr, pu) = create(&mut e, parent, &aes, b"", b"").unwrap();
    let (k, _) = load(&mut e, parent, &pr, &pu).unwrap();
    let plain: Vec<u8> = (0..48u8).collect();
    for mode in [0x43u16, 0x42, 0x40, 0x41, 0x44] {
        let call = |e: &mut ukvtpm_tpm_core::Engine<TestPlatform>, decrypt: u8, data: &[u8]| {
            let mut p = tpm2b(data);
            p.push(decrypt);
            p.extend_from_slice(&mode.to_be_bytes());
            p.extend_from_slice(&tpm2b(&[9; 16]));
            let (_, out) = run(e, 0x193, &[k], &[b""], &p, false).unwrap();
            let mut rest = out.as_slice();
            take2b(&mut rest)
        };
        let ct = call(&mut e, 0, &plain);
        assert_ne!(ct, plain);
        assert_eq!(call(&mut e, 1, &ct), plain, "mode {mode:#x}");
    }
    // HMAC key, SHA-256.
    let mut hk = vec![0, 8, 0, 0x0b];
    hk.extend_from_slice(&0x0004_0072u32.to_be_bytes());
    hk.extend_from_slice(&[0, 0, 0, 5, 0, 0x0b, 0, 0]);
    let (pr, pu) = create(&mut e, parent, &hk, b"", b"").unwrap();
    let (k, _) = load(&mut e, parent, &pr, &pu).unwrap();
    let mut p = tpm2b(b"data");
    p.extend_from_slice(&[0, 0x10]);
    let (_, out) = run(&mut e, 0x155, &[k], &[b""], &p, false).unwrap();
    assert_eq!(out.len(), 2 + 32);
}

#[test]
fn rsa_encrypt_decrypt() {
    let mut e = started();
    let (parent, _) = create_primary(&mut e, OWNER, &srk_ecc_template()).unwrap();
    let mut t = vec![0, 1, 0, 0x0b];
    t.extend_from_slice(&0x0002_0072u32.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0x10, 0, 0x10, 0x04, 0x00, 0, 0, 0, 0, 0, 0]);
    let (pr, pu) = create(&mut e, parent, &t, b"", b"").unwrap();
    let (k, _) = load(&mut e, parent, &pr, &pu).unwrap();
    for scheme in [vec![0, 0x17, 0, 0x0b], vec![0, 0x15]] {
        let mut p = tpm2b(b"hello");
        p.extend_from_slice(&scheme);
        p.extend_from_slice(&tpm2b(b"label"));
        let (_, out) = run(&mut e, 0x174, &[k], &[], &p, false).unwrap();
        let mut rest = out.as_slice();
        let ct = take2b(&mut rest);
        let mut p = tpm2b(&ct);
        p.extend_from_slice(&scheme);
        p.extend_from_slice(&tpm2b(b"label"));
        let (_, out) = run(&mut e, 0x159, &[k], &[b""], &p, false).unwrap();
        let mut rest = out.as_slice();
        assert_eq!(take2b(&mut rest), b"hello");
    }
}
