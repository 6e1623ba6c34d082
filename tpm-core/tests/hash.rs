//! Hash and hash/event sequences through the engine.

mod common;
use common::*;
use sha2::{Digest, Sha256, Sha384};
use ukvtpm_tpm_core::TpmRc;

fn hash_cmd(data: &[u8], alg: u16, hierarchy: u32) -> Vec<u8> {
    let mut b = tpm2b(data);
    b.extend_from_slice(&alg.to_be_bytes());
    b.extend_from_slice(&hierarchy.to_be_bytes());
    cmd(0x17D, &b)
}

fn start_seq(e: &mut Tpm, auth: &[u8], alg: u16) -> u32 {
    let mut b = tpm2b(auth);
    b.extend_from_slice(&alg.to_be_bytes());
    let r = e.execute(0, &cmd(0x186, &b));
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    u32::from_be_bytes([r[10], r[11], r[12], r[13]])
}

#[test]
fn hash_with_ticket() {
    let mut e = started();
    let r = e.execute(0, &hash_cmd(b"abc", SHA256, OWNER));
    let mut rd = Rd(params(&r));
    assert_eq!(rd.tpm2b(), Sha256::digest(b"abc").as_slice());
    assert_eq!(rd.u16(), 0x8024);
    assert_eq!(rd.u32(), OWNER);
    assert_eq!(rd.tpm2b().len(), 32);
    // Null hierarchy: null ticket.
    let r = e.execute(0, &hash_cmd(b"abcd", SHA384, NULL));
    let mut rd = Rd(params(&r));
    assert_eq!(rd.tpm2b(), Sha384::digest(b"abcd").as_slice());
    assert_eq!((rd.u16(), rd.u32(), rd.tpm2b().len()), (0x8024, NULL, 0));
    // Data that starts with TPM_GENERATED_VALUE: null ticket.
    let r = e.execute(0, &hash_cmd(&[0xFF, 0x54, 0x43, 0x47, 1], SHA256, OWNER));
    let mut rd = Rd(params(&r));
    rd.tpm2b();
    assert_eq!((rd.u16(), rd.u32(), rd.tpm2b().len()), (0x8024, NULL, 0));
    // Errors.
    assert_eq!(
        rc(&e.execute(0, &hash_cmd(b"abc", 0x0010, OWNER))),
        TpmRc(0x2C3)
    );
    assert_eq!(
        rc(&e.execute(0, &hash_cmd(b"abc", SHA256, 0x4000_0005))),
        TpmRc(0x3C4)
    );
    assert_eq!(
        rc(&e.execute(0, &hash_cmd(&[0; 1025], SHA256, OWNER))),
        TpmRc(0x1D5)
    );
}

#[test]
fn ten_kib_sequence_matches_sha256() {
    let mut e = started();
    let data: Vec<u8> = (0..10 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let h = start_seq(&mut e, b"pw", SHA256);
    assert_eq!(h >> 24, 0x80);
    let mut chunks = data.chunks(1024).peekable();
    let mut last = &[][..];
    while let Some(c) = chunks.next() {
        if chunks.peek().is_none() {
            last = c;
            break;
        }
        let r = e.execute(0, &auth_cmd(0x15C, &[h], &[b"pw"], &tpm2b(c)));
        assert_eq!(rc(&r), TpmRc::SUCCESS);
    }
    let mut p = tpm2b(last);
    p.extend_from_slice(&OWNER.to_be_bytes());
    let r = e.execute(0, &auth_cmd(0x13E, &[h], &[b"pw"], &p));
    let mut rd = Rd(params(&r));
    assert_eq!(rd.tpm2b(), Sha256::digest(&data).as_slice());
    assert_eq!((rd.u16(), rd.u32(), rd.tpm2b().len()), (0x8024, OWNER, 32));
    // The sequence is gone.
    let r = e.execute(0, &auth_cmd(0x15C, &[h], &[b"pw"], &tpm2b(b"x")));
    assert_eq!(rc(&r), TpmRc(0x910));
}

#[test]
fn sequence_auth_and_short_data_ticket() {
    let mut e = started();
    let h = start_seq(&mut e, b"secret", SHA256);
    // Wrong password on a sequence: BAD_AUTH (sequences are noDA).
    let r = e.execute(0, &auth_cmd(0x15C, &[h], &[b"nope"], &tpm2b(b"x")));
    assert_eq!(rc(&r), TpmRc(0x9A2));
    // Complete with < 4 bytes in total: no ticket.
    let mut p = tpm2b(b"ab");
    p.extend_from_slice(&OWNER.to_be_bytes());
    let r = e.execute(0, &auth_cmd(0x13E, &[h], &[b"secret"], &p));
    let mut rd = Rd(params(&r));
    assert_eq!(rd.tpm2b(), Sha256::digest(b"ab").as_slice());
    assert_eq!((rd.u16(), rd.u32(), rd.tpm2b().len()), (0x8024, NULL, 0));
}

#[test]
fn event_sequence_extends_all_banks() {
    let mut e = started();
    let h = start_seq(&mut e, b"", 0x0010);
    e.execute(0, &auth_cmd(0x15C, &[h], &[b""], &tpm2b(b"hello ")));
    // SequenceComplete on an event sequence: TPM_RC_MODE + H1.
    let mut p = tpm2b(b"");
    p.extend_from_slice(&NULL.to_be_bytes());
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x13E, &[h], &[b""], &p))),
        TpmRc(0x189)
    );
    let r = e.execute(0, &auth_cmd(0x185, &[7, h], &[b"", b""], &tpm2b(b"world")));
    let mut rd = Rd(params(&r));
    assert_eq!(rd.u32(), 3);
    rd.u16();
    rd.bytes(20);
    assert_eq!(rd.u16(), SHA256);
    let d = rd.bytes(32).to_vec();
    assert_eq!(d, Sha256::digest(b"hello world").to_vec());
    let expect = Sha256::new()
        .chain_update([0; 32])
        .chain_update(&d)
        .finalize();
    assert_eq!(pcr(&mut e, SHA256, 7), expect.to_vec());
}

#[test]
fn sequences_fill_object_memory() {
    let mut e = started();
    let mut n = 0;
    loop {
        let mut b = tpm2b(b"");
        b.extend_from_slice(&SHA1.to_be_bytes());
        let r = e.execute(0, &cmd(0x186, &b));
        if rc(&r) != TpmRc::SUCCESS {
            assert_eq!(rc(&r), TpmRc::OBJECT_MEMORY);
            break;
        }
        n += 1;
        assert!(n < 100);
    }
    assert!(n >= 3);
    // FlushContext frees one.
    let r = e.execute(0, &cmd(0x165, &0x8000_0000u32.to_be_bytes()));
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    let r = e.execute(0, &cmd(0x165, &0x8000_0000u32.to_be_bytes()));
    assert_eq!(rc(&r), TpmRc(0x1CB));
    let mut b = tpm2b(b"");
    b.extend_from_slice(&SHA1.to_be_bytes());
    assert_eq!(rc(&e.execute(0, &cmd(0x186, &b))), TpmRc::SUCCESS);
}
