//! Engine-level tests of the object model: primaries derived from seeds, children protected
//! by their parent, saved contexts and persistent objects (issue 4).

#![allow(dead_code)]

mod keys_util;

use keys_util::*;
use ukvtpm_tpm_core::TpmRc;

#[test]
fn primary_is_deterministic_and_survives_restart() {
    let mut e = started();
    let (h1, name1) = create_primary(&mut e, OWNER, &srk_rsa_template()).unwrap();
    let (h2, name2) = create_primary(&mut e, OWNER, &srk_rsa_template()).unwrap();
    assert_ne!(h1, h2);
    assert_eq!(name1, name2, "same seed and template give the same key");
    let (_, ecc_name) = create_primary(&mut e, OWNER, &srk_ecc_template()).unwrap();
    assert_ne!(ecc_name, name1);
    // Another hierarchy has another seed.
    let (_, e_name) = create_primary(&mut e, ENDORSEMENT, &srk_rsa_template()).unwrap();
    assert_ne!(e_name, name1);
    // After a restart (state restored from the committed blob) the key is the same.
    let mut again = restart(e);
    let (_, name3) = create_primary(&mut again, OWNER, &srk_rsa_template()).unwrap();
    assert_eq!(name3, name1);
}

#[test]
fn child_create_load_and_integrity() {
    let mut e = started();
    let (parent, _) = create_primary(&mut e, OWNER, &srk_ecc_template()).unwrap();
    for template in [rsa_sign_template(), ecc_sign_template(), sealed_template()] {
        let data: &[u8] = if template == sealed_template() {
            b"sealed secret"
        } else {
            b""
        };
        let (private, public) = create(&mut e, parent, &template, b"pw", data).unwrap();
        let (h, name) = load(&mut e, parent, &private, &public).unwrap();
        let (out_public, rp_name) = read_public(&mut e, Handle(h)).unwrap();
        assert_eq!(out_public, public);
        assert_eq!(rp_name, name);
        flush(&mut e, h);
        // One flipped bit anywhere in the private blob is refused.
        for i in [2usize, 10, private.len() - 1] {
            let mut bad = private.clone();
            bad[i] ^= 1;
            let rc = load(&mut e, parent, &bad, &public).unwrap_err();
            assert_eq!(rc.base(), TpmRc::INTEGRITY, "byte {i}");
        }
    }
}

#[test]
fn unseal_needs_the_password() {
    let mut e = started();
    let (parent, _) = create_primary(&mut e, OWNER, &srk_rsa_template()).unwrap();
    let (private, public) =
        create(&mut e, parent, &sealed_template(), b"pw", b"top secret").unwrap();
    let (h, _) = load(&mut e, parent, &private, &public).unwrap();
    assert_eq!(unseal(&mut e, h, b"pw").unwrap(), b"top secret");
    assert_eq!(
        unseal(&mut e, h, b"no").unwrap_err().base(),
        TpmRc::AUTH_FAIL
    );
}

#[test]
fn context_save_load_and_tamper() {
    let mut e = started();
    let (parent, name) = create_primary(&mut e, OWNER, &srk_ecc_template()).unwrap();
    let saved = context_save(&mut e, parent).unwrap();
    flush(&mut e, parent);
    let h = context_load(&mut e, &saved).unwrap();
    assert_eq!(read_public(&mut e, Handle(h)).unwrap().1, name);
    for i in [20usize, saved.len() - 1] {
        let mut bad = saved.clone();
        bad[i] ^= 0x40;
        assert_eq!(
            context_load(&mut e, &bad).unwrap_err().base(),
            TpmRc::INTEGRITY,
            "byte {i}"
        );
    }
}

#[test]
fn evict_control_persists_across_restart() {
    let mut e = started();
    let (parent, name) = create_primary(&mut e, OWNER, &srk_rsa_template()).unwrap();
    evict(&mut e, OWNER, parent, 0x8100_0001).unwrap();
    assert_eq!(read_public(&mut e, Handle(0x8100_0001)).unwrap().1, name);
    let mut e = restart(e);
    assert_eq!(read_public(&mut e, Handle(0x8100_0001)).unwrap().1, name);
    // The persistent key still parents children.
    let (private, public) = create(&mut e, 0x8100_0001, &ecc_sign_template(), b"", b"").unwrap();
    load(&mut e, 0x8100_0001, &private, &public).unwrap();
    evict(&mut e, OWNER, 0x8100_0001, 0x8100_0001).unwrap();
    assert!(read_public(&mut e, Handle(0x8100_0001)).is_err());
}
