//! PCR_Read, PCR_Extend, PCR_Event, PCR_Reset through the engine.

mod common;
use common::*;
use sha2::{Digest, Sha256, Sha384};
use ukvtpm_tpm_core::TpmRc;

fn digest_values(entries: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut v = (entries.len() as u32).to_be_bytes().to_vec();
    for (alg, d) in entries {
        v.extend_from_slice(&alg.to_be_bytes());
        v.extend_from_slice(d);
    }
    v
}

#[test]
fn initial_values() {
    let mut e = started();
    assert_eq!(pcr(&mut e, SHA256, 0), vec![0; 32]);
    assert_eq!(pcr(&mut e, SHA1, 17), vec![0xFF; 20]);
    assert_eq!(pcr(&mut e, SHA384, 23), vec![0; 48]);
}

#[test]
fn read_returns_at_most_eight_digests() {
    let mut e = started();
    let all: Vec<u8> = (0..24).collect();
    let r = e.execute(0, &pcr_read_cmd(SHA256, &all));
    let mut rd = Rd(params(&r));
    rd.u32();
    assert_eq!(rd.u32(), 1);
    assert_eq!(rd.u16(), SHA256);
    assert_eq!(rd.u8(), 3);
    assert_eq!(rd.bytes(3), &[0xFF, 0, 0]);
    assert_eq!(rd.u32(), 8);
    // Second call for the rest, as tpm2_pcrread does.
    let r = e.execute(0, &pcr_read_cmd(SHA256, &(8..24).collect::<Vec<u8>>()));
    let mut rd = Rd(params(&r));
    rd.u32();
    rd.u32();
    rd.u16();
    rd.u8();
    assert_eq!(rd.bytes(3), &[0, 0xFF, 0]);
}

#[test]
fn read_filters_unallocated_bits_and_keeps_entries() {
    let mut e = started();
    // Two banks, sizeofSelect 4 with PCR 24+ bits set.
    let mut b = 2u32.to_be_bytes().to_vec();
    b.extend_from_slice(&SHA1.to_be_bytes());
    b.extend_from_slice(&[4, 1, 0, 0, 0xFF]);
    b.extend_from_slice(&SHA384.to_be_bytes());
    b.extend_from_slice(&[3, 0, 0, 0x80]);
    let r = e.execute(0, &cmd(0x17E, &b));
    let mut rd = Rd(params(&r));
    rd.u32();
    assert_eq!(rd.u32(), 2);
    assert_eq!((rd.u16(), rd.u8()), (SHA1, 4));
    assert_eq!(rd.bytes(4), &[1, 0, 0, 0]);
    assert_eq!((rd.u16(), rd.u8()), (SHA384, 3));
    assert_eq!(rd.bytes(3), &[0, 0, 0x80]);
    assert_eq!(rd.u32(), 2);
    assert_eq!(rd.tpm2b().len(), 20);
    assert_eq!(rd.tpm2b().len(), 48);
}

#[test]
fn read_errors() {
    let mut e = started();
    let bad_size = cmd(0x17E, &[0, 0, 0, 1, 0, 0x0B, 0]);
    assert_eq!(rc(&e.execute(0, &bad_size)), TpmRc(0x1C4));
    let bad_alg = pcr_read_cmd(0x0099, &[0]);
    assert_eq!(rc(&e.execute(0, &bad_alg)), TpmRc(0x1C3));
    let too_many = cmd(0x17E, &5u32.to_be_bytes());
    assert_eq!(rc(&e.execute(0, &too_many)), TpmRc(0x1D5));
}

#[test]
fn extend_and_counter() {
    let mut e = started();
    let c0 = pcr_update_counter(&mut e);
    let d = vec![0xAB; 32];
    let d1 = vec![0xCD; 20];
    let r = e.execute(
        0,
        &auth_cmd(
            0x182,
            &[0],
            &[b""],
            &digest_values(&[(SHA256, d.clone()), (SHA1, d1)]),
        ),
    );
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    assert_eq!(&r[..2], &[0x80, 0x02]);
    let expect = Sha256::new()
        .chain_update([0; 32])
        .chain_update(&d)
        .finalize();
    assert_eq!(pcr(&mut e, SHA256, 0), expect.to_vec());
    // One increment per bank extended.
    assert_eq!(pcr_update_counter(&mut e), c0 + 2);
    // PCR 16 does not move the counter.
    e.execute(
        0,
        &auth_cmd(0x182, &[16], &[b""], &digest_values(&[(SHA256, d.clone())])),
    );
    assert_eq!(pcr_update_counter(&mut e), c0 + 2);
    // Unknown algorithm.
    let r = e.execute(
        0,
        &auth_cmd(0x182, &[0], &[b""], &digest_values(&[(0x0099, d.clone())])),
    );
    assert_eq!(rc(&r), TpmRc(0x1C3));
    // TPM_RH_NULL: accepted, nothing happens.
    let r = e.execute(
        0,
        &auth_cmd(
            0x182,
            &[NULL],
            &[b""],
            &digest_values(&[(SHA256, d.clone())]),
        ),
    );
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    // Locality: PCR 17 cannot be extended at locality 0, can at 4.
    let r = e.execute(
        0,
        &auth_cmd(0x182, &[17], &[b""], &digest_values(&[(SHA256, d.clone())])),
    );
    assert_eq!(rc(&r), TpmRc::LOCALITY);
    let r = e.execute(
        4,
        &auth_cmd(0x182, &[17], &[b""], &digest_values(&[(SHA256, d)])),
    );
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    // Wrong PCR password: BAD_AUTH (PCRs are DA-exempt).
    let r = e.execute(0, &auth_cmd(0x182, &[0], &[b"x"], &digest_values(&[])));
    assert_eq!(rc(&r), TpmRc(0x9A2));
}

#[test]
fn event_hashes_every_bank() {
    let mut e = started();
    let data = b"an event";
    let r = e.execute(0, &auth_cmd(0x13C, &[5], &[b""], &tpm2b(data)));
    let mut rd = Rd(params(&r));
    assert_eq!(rd.u32(), 3);
    assert_eq!(rd.u16(), SHA1);
    rd.bytes(20);
    assert_eq!(rd.u16(), SHA256);
    let d256 = rd.bytes(32).to_vec();
    assert_eq!(d256, Sha256::digest(data).to_vec());
    assert_eq!(rd.u16(), SHA384);
    assert_eq!(rd.bytes(48), Sha384::digest(data).as_slice());
    let expect = Sha256::new()
        .chain_update([0; 32])
        .chain_update(&d256)
        .finalize();
    assert_eq!(pcr(&mut e, SHA256, 5), expect.to_vec());
    // NULL handle: digests, no extend.
    let r = e.execute(0, &auth_cmd(0x13C, &[NULL], &[b""], &tpm2b(data)));
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    let r = e.execute(0, &auth_cmd(0x13C, &[5], &[b""], &tpm2b(&[0; 1025])));
    assert_eq!(rc(&r), TpmRc(0x1D5));
}

#[test]
fn reset_rules() {
    let mut e = started();
    let d = digest_values(&[(SHA256, vec![1; 32])]);
    e.execute(0, &auth_cmd(0x182, &[16], &[b""], &d));
    assert_ne!(pcr(&mut e, SHA256, 16), vec![0; 32]);
    let r = e.execute(0, &auth_cmd(0x13D, &[16], &[b""], &[]));
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    assert_eq!(pcr(&mut e, SHA256, 16), vec![0; 32]);
    // PCR 0: never resettable.
    let r = e.execute(0, &auth_cmd(0x13D, &[0], &[b""], &[]));
    assert_eq!(rc(&r), TpmRc::LOCALITY);
    // PCR 20: localities 2 and 4; reset makes it zero (not the all-ones start value).
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x13D, &[20], &[b""], &[]))),
        TpmRc::LOCALITY
    );
    assert_eq!(
        rc(&e.execute(2, &auth_cmd(0x13D, &[20], &[b""], &[]))),
        TpmRc::SUCCESS
    );
    assert_eq!(pcr(&mut e, SHA1, 20), vec![0; 20]);
    // Not a PCR.
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x13D, &[OWNER], &[b""], &[]))),
        TpmRc(0x184)
    );
}
