//! ECC secrets made by software clients: tpm2-tools `makecredential -T none` marshals the
//! ephemeral point's x-coordinate without leading zero octets, and the reference TPM feeds that
//! TPM2B, as received, to KDFe (Part 1, C.6.4; reference CryptSecretDecrypt). Padding it to the
//! field size made ActivateCredential fail with TPM_RC_INTEGRITY for one ephemeral key in 256.

mod keys_util;

use keys_util::*;
use ukvtpm_tpm_core::crypto::ecc::{self, Curve, Point};
use ukvtpm_tpm_core::crypto::hash::HashAlg;
use ukvtpm_tpm_core::crypto::{kdf, sym};

const ACTIVATE_CREDENTIAL: u32 = 0x147;

/// (x, y) of an ECC TPM2B_PUBLIC payload: its last two TPM2Bs (the unique field).
fn ecc_unique(public: &[u8]) -> Point {
    let n = public.len();
    let y_len = u16::from_be_bytes([public[n - 34], public[n - 33]]) as usize;
    assert_eq!(y_len, 32, "P-256 y");
    let x = public[n - 66..n - 34].to_vec();
    Point {
        x,
        y: public[n - 32..].to_vec(),
    }
}

/// An ephemeral scalar whose public x-coordinate starts with a zero octet (deterministic).
fn ephemeral_with_leading_zero_x() -> (Vec<u8>, Point) {
    for i in 1u32.. {
        let e = HashAlg::Sha256.digest(&[b"ephemeral", &i.to_be_bytes()]);
        if let Ok(p) = ecc::public(Curve::P256, &e)
            && p.x[0] == 0
        {
            return (e, p);
        }
    }
    unreachable!()
}

#[test]
fn activate_credential_takes_a_stripped_ephemeral_x() {
    let mut e = started();
    let (ek, _) = create_primary(&mut e, ENDORSEMENT, &srk_ecc_template()).unwrap();
    let (ek_public, _) = read_public(&mut e, Handle(ek)).unwrap();
    let q = ecc_unique(&ek_public);
    let (ak, ak_name) = create_primary(&mut e, OWNER, &ecc_sign_template()).unwrap();

    // What a software MakeCredential does (Part 1, 24.4), with the ephemeral x stripped.
    let (d, qe) = ephemeral_with_leading_zero_x();
    let stripped_x = &qe.x[1..];
    let z = ecc::mul(Curve::P256, &d, &q).unwrap();
    let seed = kdf::kdfe(HashAlg::Sha256, &z.x, b"IDENTITY", stripped_x, &q.x, 256);
    let credential = b"0123456789abcdef";
    let mut enc_identity = tpm2b(credential);
    let sym_key = kdf::kdfa(HashAlg::Sha256, &seed, b"STORAGE", &ak_name, b"", 128);
    sym::cfb_encrypt(&sym_key, &mut enc_identity).unwrap();
    let hmac_key = kdf::kdfa(HashAlg::Sha256, &seed, b"INTEGRITY", b"", b"", 256);
    let integrity = kdf::hmac(HashAlg::Sha256, &hmac_key, &[&enc_identity, &ak_name]);
    let mut id_object = tpm2b(&integrity);
    id_object.extend_from_slice(&enc_identity);
    let mut point = tpm2b(stripped_x);
    point.extend_from_slice(&tpm2b(&qe.y));

    let mut params = tpm2b(&id_object);
    params.extend_from_slice(&tpm2b(&point));
    let (_, out) = run(
        &mut e,
        ACTIVATE_CREDENTIAL,
        &[ak, ek],
        &[b"", b""],
        &params,
        false,
    )
    .expect("ActivateCredential with a 31-octet ephemeral x");
    assert_eq!(out, tpm2b(credential));
}
