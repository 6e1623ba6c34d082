//! HMAC sessions through the engine: unbound and bound, continueSession, nonce rolling,
//! parameter encryption (AES-CFB and XOR, both directions), wrong HMACs, session slots.

mod sessions_util;

use sessions_util::*;
use ukvtpm_tpm_core::TpmRc;

const INDEX: u32 = 0x0150_0016;
const ATTRS: u32 = nva::OWNERWRITE | nva::OWNERREAD | nva::AUTHWRITE | nva::AUTHREAD;

fn define(e: &mut ukvtpm_tpm_core::Engine<TestPlatform>, auth: &[u8]) {
    let mut p = tpm2b(auth);
    p.extend_from_slice(&nv_public(INDEX, ATTRS, &[], 32));
    let r = run_pw(e, cc::NV_DEFINE_SPACE, &[OWNER], &[b""], &p);
    assert_eq!(rc(&r), TpmRc::SUCCESS);
}

fn name() -> Vec<u8> {
    nv_name(INDEX, ATTRS, &[], 32)
}

fn written_name() -> Vec<u8> {
    nv_name(INDEX, ATTRS | nva::WRITTEN, &[], 32)
}

#[test]
fn hmac_session_authorizes_and_encrypts_both_ways() {
    for sym in [(0x0006u16, 128u16), (0x000A, 0x000B)] {
        let mut e = started();
        define(&mut e, b"secret");
        let mut s = start_session(&mut e, SE_HMAC, sym, None);
        // NV_Write authorized by the index itself, data encrypted.
        let mut p = tpm2b(b"confidential data");
        p.extend_from_slice(&0u16.to_be_bytes());
        let (code, _) = run(
            &mut e,
            cc::NV_WRITE,
            &[INDEX, INDEX],
            &[name(), name()],
            &mut [Ok(Use {
                session: &mut s,
                attrs: CONTINUE | DECRYPT,
                auth: Some(b"secret".to_vec()),
                password: false,
            })],
            &p,
            false,
        );
        assert_eq!(code, TpmRc::SUCCESS, "{sym:?}");
        // NV_Read with the response encrypted.
        let mut p = 17u16.to_be_bytes().to_vec();
        p.extend_from_slice(&0u16.to_be_bytes());
        let (code, out) = run(
            &mut e,
            cc::NV_READ,
            &[INDEX, INDEX],
            &[written_name(), written_name()],
            &mut [Ok(Use {
                session: &mut s,
                attrs: CONTINUE | ENCRYPT,
                auth: Some(b"secret".to_vec()),
                password: false,
            })],
            &p,
            false,
        );
        assert_eq!(code, TpmRc::SUCCESS);
        assert_eq!(&out[2..], b"confidential data");
    }
}

#[test]
fn wrong_hmac_is_refused_and_counts_for_da() {
    let mut e = started();
    define(&mut e, b"secret");
    let mut s = start_session(&mut e, SE_HMAC, (0x10, 0), None);
    let mut p = tpm2b(b"x");
    p.extend_from_slice(&0u16.to_be_bytes());
    let (code, _) = run(
        &mut e,
        cc::NV_WRITE,
        &[INDEX, INDEX],
        &[name(), name()],
        &mut [Ok(Use {
            session: &mut s,
            attrs: CONTINUE,
            auth: Some(b"wrong".to_vec()),
            password: false,
        })],
        &p,
        false,
    );
    assert_eq!(code, TpmRc::AUTH_FAIL.session(1));
}

#[test]
fn bound_session_omits_auth_for_its_entity() {
    let mut e = started();
    define(&mut e, b"secret");
    let mut s = start_session(&mut e, SE_HMAC, (0x0006, 128), Some((INDEX, b"secret")));
    let mut p = tpm2b(b"bound");
    p.extend_from_slice(&0u16.to_be_bytes());
    let (code, _) = run(
        &mut e,
        cc::NV_WRITE,
        &[INDEX, INDEX],
        &[name(), name()],
        &mut [Ok(Use {
            session: &mut s,
            attrs: CONTINUE,
            auth: None,
            password: false,
        })],
        &p,
        false,
    );
    assert_eq!(code, TpmRc::SUCCESS);
    // The same session for another entity (owner, empty auth) includes that auth.
    let (code, _) = run(
        &mut e,
        cc::NV_WRITE,
        &[OWNER, INDEX],
        &[OWNER.to_be_bytes().to_vec(), written_name()],
        &mut [Ok(Use {
            session: &mut s,
            attrs: CONTINUE,
            auth: Some(Vec::new()),
            password: false,
        })],
        &p,
        false,
    );
    assert_eq!(code, TpmRc::SUCCESS);
}

#[test]
fn session_without_continue_is_flushed_and_slots_run_out() {
    let mut e = started();
    define(&mut e, b"");
    let mut s = start_session(&mut e, SE_HMAC, (0x10, 0), None);
    let mut p = tpm2b(b"x");
    p.extend_from_slice(&0u16.to_be_bytes());
    let (code, _) = run(
        &mut e,
        cc::NV_WRITE,
        &[OWNER, INDEX],
        &[OWNER.to_be_bytes().to_vec(), name()],
        &mut [Ok(Use {
            session: &mut s,
            attrs: 0,
            auth: Some(Vec::new()),
            password: false,
        })],
        &p,
        false,
    );
    assert_eq!(code, TpmRc::SUCCESS);
    // Gone: the handle no longer refers to a loaded session.
    let (code, _) = run(
        &mut e,
        cc::NV_WRITE,
        &[OWNER, INDEX],
        &[OWNER.to_be_bytes().to_vec(), written_name()],
        &mut [Ok(Use {
            session: &mut s,
            attrs: 0,
            auth: Some(Vec::new()),
            password: false,
        })],
        &p,
        false,
    );
    assert_eq!(code, TpmRc(0x918));
    let mut n = 0;
    loop {
        let mut p = tpm2b(&[7u8; 16]);
        p.extend_from_slice(&tpm2b(&[]));
        p.extend_from_slice(&[0, 0, 0x10, 0, 0x0B]);
        let r = e.execute(0, &frame(cc::START_AUTH_SESSION, &[NULL, NULL], None, &p));
        if rc(&r) != TpmRc::SUCCESS {
            assert_eq!(rc(&r), TpmRc::SESSION_MEMORY);
            break;
        }
        n += 1;
        assert!(n < 100);
    }
    assert!(n >= 3);
}

#[test]
fn start_auth_session_parameter_checks() {
    let mut e = started();
    // nonceCaller shorter than 16 octets.
    let mut p = tpm2b(&[1; 8]);
    p.extend_from_slice(&tpm2b(&[]));
    p.extend_from_slice(&[0, 0, 0x10, 0, 0x0B]);
    let r = e.execute(0, &frame(cc::START_AUTH_SESSION, &[NULL, NULL], None, &p));
    assert_eq!(rc(&r), TpmRc::SIZE.param(1));
    // Salt without a tpmKey.
    let mut p = tpm2b(&[1; 16]);
    p.extend_from_slice(&tpm2b(&[1, 2]));
    p.extend_from_slice(&[0, 0, 0x10, 0, 0x0B]);
    let r = e.execute(0, &frame(cc::START_AUTH_SESSION, &[NULL, NULL], None, &p));
    assert_eq!(rc(&r), TpmRc::VALUE.param(2));
    // AES in a mode other than CFB.
    let mut p = tpm2b(&[1; 16]);
    p.extend_from_slice(&tpm2b(&[]));
    p.extend_from_slice(&[0, 0, 0x06, 0, 128, 0, 0x42, 0, 0x0B]);
    let r = e.execute(0, &frame(cc::START_AUTH_SESSION, &[NULL, NULL], None, &p));
    assert_eq!(rc(&r), TpmRc::MODE.param(4));
    // Unknown session type.
    let mut p = tpm2b(&[1; 16]);
    p.extend_from_slice(&tpm2b(&[]));
    p.extend_from_slice(&[2, 0, 0x10, 0, 0x0B]);
    let r = e.execute(0, &frame(cc::START_AUTH_SESSION, &[NULL, NULL], None, &p));
    assert_eq!(rc(&r), TpmRc::VALUE.param(3));
}

#[test]
fn audit_session_digest_chains_cp_and_rp_hashes() {
    use ukvtpm_tpm_core::crypto::hash::HashAlg;
    let mut e = started();
    let mut s = start_session(&mut e, SE_HMAC, (0x10, 0), None);
    let mut digest = vec![0u8; 32];
    for _ in 0..2 {
        let params = 8u16.to_be_bytes();
        let (code, out) = run(
            &mut e,
            cc::GET_RANDOM,
            &[],
            &[],
            &mut [Ok(Use {
                session: &mut s,
                attrs: CONTINUE | 0x80,
                auth: None,
                password: false,
            })],
            &params,
            false,
        );
        assert_eq!(code, TpmRc::SUCCESS);
        let cp = HashAlg::Sha256.digest(&[&cc::GET_RANDOM.to_be_bytes(), &params]);
        let rp =
            HashAlg::Sha256.digest(&[&0u32.to_be_bytes(), &cc::GET_RANDOM.to_be_bytes(), &out]);
        digest = HashAlg::Sha256.digest(&[&digest, &cp, &rp]);
    }
    // GetSessionAuditDigest(endorsement, TPM_RH_NULL signer, session): unsigned attestation.
    let mut p = tpm2b(&[]);
    p.extend_from_slice(&0x0010u16.to_be_bytes());
    let r = run_pw(
        &mut e,
        0x14D,
        &[0x4000_000B, NULL, s.handle],
        &[b"", b""],
        &p,
    );
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    let out = resp_params(&r, false, true);
    let n = u16::from_be_bytes([out[0], out[1]]) as usize;
    let attest = &out[2..2 + n];
    assert_eq!(&attest[4..6], &[0x80, 0x16]);
    // ... exclusiveSession (YES), sessionDigest at the end.
    assert_eq!(&attest[attest.len() - 32..], &digest[..]);
    assert_eq!(attest[attest.len() - 35], 1);
}

#[test]
fn command_audit_digest() {
    use ukvtpm_tpm_core::crypto::hash::HashAlg;
    let h = |parts: &[&[u8]]| HashAlg::Sha256.digest(parts);
    let mut e = started();
    // SetCommandCodeAuditStatus(owner, TPM_ALG_NULL, set {GetRandom}, clear {}) is itself
    // audited: it starts the digest.
    let mut p = 0x0010u16.to_be_bytes().to_vec();
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&cc::GET_RANDOM.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    let r = run_pw(&mut e, 0x140, &[OWNER], &[b""], &p);
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    let cp = h(&[&0x140u32.to_be_bytes(), &OWNER.to_be_bytes(), &p]);
    let rp = h(&[&0u32.to_be_bytes(), &0x140u32.to_be_bytes()]);
    let mut digest = h(&[&[0u8; 32], &cp, &rp]);
    for _ in 0..2 {
        let r = e.execute(0, &frame(cc::GET_RANDOM, &[], None, &8u16.to_be_bytes()));
        assert_eq!(rc(&r), TpmRc::SUCCESS);
        let out = resp_params(&r, false, false);
        let cp = h(&[&cc::GET_RANDOM.to_be_bytes(), &8u16.to_be_bytes()]);
        let rp = h(&[&0u32.to_be_bytes(), &cc::GET_RANDOM.to_be_bytes(), &out]);
        digest = h(&[&digest, &cp, &rp]);
    }
    let mut p = tpm2b(&[]);
    p.extend_from_slice(&0x0010u16.to_be_bytes());
    let r = run_pw(&mut e, 0x133, &[0x4000_000B, NULL], &[b"", b""], &p);
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    let out = resp_params(&r, false, true);
    let n = u16::from_be_bytes([out[0], out[1]]) as usize;
    let attest = &out[2..2 + n];
    assert_eq!(&attest[4..6], &[0x80, 0x15]);
    // TPMS_COMMAND_AUDIT_INFO at the end: auditCounter, digestAlg, auditDigest, commandDigest.
    let command_digest = h(&[&0x140u32.to_be_bytes(), &cc::GET_RANDOM.to_be_bytes()]);
    let tail_len = 8 + 2 + 34 + 34;
    let info = &attest[attest.len() - tail_len..];
    assert_eq!(&info[..8], &1u64.to_be_bytes());
    assert_eq!(&info[8..10], &[0, 0x0B]);
    assert_eq!(&info[12..44], &digest[..]);
    assert_eq!(&info[46..], &command_digest[..]);
}
