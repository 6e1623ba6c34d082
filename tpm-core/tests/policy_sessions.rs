//! Policy and trial sessions through the engine: digests as Part 3, 23 defines them, and the
//! checks at authorization (policyDigest, command code, password/authValue, PCR changes).

mod sessions_util;

use sessions_util::*;
use ukvtpm_tpm_core::crypto::hash::HashAlg;
use ukvtpm_tpm_core::{Engine, TpmRc};

type E = Engine<TestPlatform>;

fn h(parts: &[&[u8]]) -> Vec<u8> {
    HashAlg::Sha256.digest(parts)
}

fn extend(d: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut all: Vec<&[u8]> = vec![d];
    all.extend_from_slice(parts);
    h(&all)
}

fn policy(e: &mut E, s: &ClientSession, cc: u32, params: &[u8]) -> TpmRc {
    rc(&e.execute(0, &frame(cc, &[s.handle], None, params)))
}

fn get_digest(e: &mut E, s: &ClientSession) -> Vec<u8> {
    let r = e.execute(0, &frame(cc::POLICY_GET_DIGEST, &[s.handle], None, &[]));
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    resp_params(&r, false, false)[2..].to_vec()
}

const IX: u32 = 0x0150_0100;

fn define_with_policy(e: &mut E, attrs: u32, policy: &[u8], auth: &[u8]) {
    let mut p = tpm2b(auth);
    p.extend_from_slice(&nv_public(IX, attrs, policy, 8));
    assert_eq!(
        rc(&run_pw(e, cc::NV_DEFINE_SPACE, &[OWNER], &[b""], &p)),
        TpmRc::SUCCESS
    );
}

fn nv_write_with(
    e: &mut E,
    s: &mut ClientSession,
    auth: Option<Vec<u8>>,
    password: bool,
    attrs: u32,
    policy: &[u8],
) -> TpmRc {
    let mut p = tpm2b(b"12345678");
    p.extend_from_slice(&0u16.to_be_bytes());
    let name = nv_name(IX, attrs, policy, 8);
    run(
        e,
        cc::NV_WRITE,
        &[IX, IX],
        &[name.clone(), name],
        &mut [Ok(Use {
            session: s,
            attrs: CONTINUE,
            auth,
            password,
        })],
        &p,
        false,
    )
    .0
}

#[test]
fn trial_digest_matches_spec_and_policy_session() {
    let mut e = started();
    let t = start_session(&mut e, SE_TRIAL, (0x10, 0), None);
    assert_eq!(
        policy(&mut e, &t, cc::POLICY_COMMAND_CODE, &u32b(cc::NV_WRITE)),
        TpmRc::SUCCESS
    );
    assert_eq!(
        policy(&mut e, &t, cc::POLICY_AUTH_VALUE, &[]),
        TpmRc::SUCCESS
    );
    let d = get_digest(&mut e, &t);
    let expected = extend(
        &extend(&[0; 32], &[&u32b(0x16C), &u32b(cc::NV_WRITE)]),
        &[&u32b(0x16B)],
    );
    assert_eq!(d, expected);
    // PolicyRestart starts over.
    assert_eq!(policy(&mut e, &t, cc::POLICY_RESTART, &[]), TpmRc::SUCCESS);
    assert_eq!(get_digest(&mut e, &t), vec![0; 32]);
    // A trial session cannot authorize.
    let attrs = nva::POLICYWRITE | nva::OWNERREAD;
    define_with_policy(&mut e, attrs, &d, b"pw");
    let mut t = t;
    assert_eq!(
        nv_write_with(&mut e, &mut t, None, false, attrs, &d),
        TpmRc::ATTRIBUTES.session(1)
    );
}

#[test]
fn policy_auth_value_and_command_code() {
    let mut e = started();
    let d = extend(
        &extend(&[0; 32], &[&u32b(0x16C), &u32b(cc::NV_WRITE)]),
        &[&u32b(0x16B)],
    );
    let attrs = nva::POLICYWRITE | nva::OWNERREAD;
    define_with_policy(&mut e, attrs, &d, b"pw");
    let mut s = start_session(&mut e, SE_POLICY, (0x0006, 128), None);
    // Wrong order of assertions gives a different digest.
    assert_eq!(
        policy(&mut e, &s, cc::POLICY_AUTH_VALUE, &[]),
        TpmRc::SUCCESS
    );
    assert_eq!(
        policy(&mut e, &s, cc::POLICY_COMMAND_CODE, &u32b(cc::NV_WRITE)),
        TpmRc::SUCCESS
    );
    assert_eq!(
        nv_write_with(&mut e, &mut s, Some(b"pw".to_vec()), false, attrs, &d),
        TpmRc::POLICY_FAIL.session(1)
    );
    assert_eq!(policy(&mut e, &s, cc::POLICY_RESTART, &[]), TpmRc::SUCCESS);
    assert_eq!(
        policy(&mut e, &s, cc::POLICY_COMMAND_CODE, &u32b(cc::NV_WRITE)),
        TpmRc::SUCCESS
    );
    assert_eq!(
        policy(&mut e, &s, cc::POLICY_AUTH_VALUE, &[]),
        TpmRc::SUCCESS
    );
    assert_eq!(get_digest(&mut e, &s), d);
    // The HMAC must include the index authValue.
    assert_eq!(
        nv_write_with(&mut e, &mut s, Some(b"pw".to_vec()), false, attrs, &d),
        TpmRc::SUCCESS
    );
    // The policy was reset after use (continueSession): the digest no longer matches.
    let wattrs = attrs | nva::WRITTEN;
    assert_eq!(
        nv_write_with(&mut e, &mut s, Some(b"pw".to_vec()), false, wattrs, &d),
        TpmRc::POLICY_FAIL.session(1)
    );
}

#[test]
fn policy_password_sends_the_password() {
    let mut e = started();
    let d = extend(&[0; 32], &[&u32b(0x16B)]);
    let attrs = nva::POLICYWRITE | nva::OWNERREAD;
    define_with_policy(&mut e, attrs, &d, b"pw");
    let mut s = start_session(&mut e, SE_POLICY, (0x10, 0), None);
    assert_eq!(policy(&mut e, &s, cc::POLICY_PASSWORD, &[]), TpmRc::SUCCESS);
    assert_eq!(get_digest(&mut e, &s), d);
    assert_eq!(
        nv_write_with(&mut e, &mut s, Some(b"bad".to_vec()), true, attrs, &d),
        TpmRc::AUTH_FAIL.session(1)
    );
    // A failed authorization leaves the policy as it was.
    assert_eq!(
        nv_write_with(&mut e, &mut s, Some(b"pw".to_vec()), true, attrs, &d),
        TpmRc::SUCCESS
    );
}

#[test]
fn policy_or_and_pcr() {
    let mut e = started();
    // PolicyPCR over sha256:0 (all zeros after startup). PCR 0 counts in pcrUpdateCounter
    // (PCR 16 and 21-23 do not, so changes to them are not detected, as on a real TPM).
    let sel = [0, 0, 0, 1, 0, 0x0B, 3, 1, 0, 0];
    let pcr16 = [0u8; 32];
    let pcr_digest = h(&[&pcr16]);
    let d_pcr = extend(&[0; 32], &[&u32b(0x17F), &sel, &pcr_digest]);
    let d_other = extend(&[0; 32], &[&u32b(0x16B)]);
    let d_or = extend(&[0; 32], &[&u32b(0x171), &d_other, &d_pcr]);
    let attrs = nva::POLICYWRITE | nva::OWNERREAD;
    define_with_policy(&mut e, attrs, &d_or, b"");

    let mut s = start_session(&mut e, SE_POLICY, (0x10, 0), None);
    let mut p = tpm2b(&[]);
    p.extend_from_slice(&sel);
    assert_eq!(policy(&mut e, &s, cc::POLICY_PCR, &p), TpmRc::SUCCESS);
    let mut or = u32b(2).to_vec();
    or.extend_from_slice(&tpm2b(&d_other));
    or.extend_from_slice(&tpm2b(&d_pcr));
    assert_eq!(policy(&mut e, &s, cc::POLICY_OR, &or), TpmRc::SUCCESS);
    assert_eq!(get_digest(&mut e, &s), d_or);
    assert_eq!(
        nv_write_with(&mut e, &mut s, None, false, attrs, &d_or),
        TpmRc::SUCCESS
    );

    // Satisfy the policy, then change PCR 0: TPM_RC_PCR_CHANGED.
    assert_eq!(policy(&mut e, &s, cc::POLICY_PCR, &p), TpmRc::SUCCESS);
    assert_eq!(policy(&mut e, &s, cc::POLICY_OR, &or), TpmRc::SUCCESS);
    let mut ext = u32b(1).to_vec();
    ext.extend_from_slice(&0x000Bu16.to_be_bytes());
    ext.extend_from_slice(&[0xAA; 32]);
    assert_eq!(
        rc(&run_pw(&mut e, cc::PCR_EXTEND, &[0], &[b""], &ext)),
        TpmRc::SUCCESS
    );
    let wattrs = attrs | nva::WRITTEN;
    assert_eq!(
        nv_write_with(&mut e, &mut s, None, false, wattrs, &d_or),
        TpmRc::PCR_CHANGED.session(1)
    );
    // With the new PCR value the digest differs: PolicyOR refuses it.
    assert_eq!(policy(&mut e, &s, cc::POLICY_RESTART, &[]), TpmRc::SUCCESS);
    assert_eq!(policy(&mut e, &s, cc::POLICY_PCR, &p), TpmRc::SUCCESS);
    assert_eq!(
        policy(&mut e, &s, cc::POLICY_OR, &or),
        TpmRc::VALUE.param(1)
    );
}

#[test]
fn policy_secret_with_owner_auth() {
    let mut e = started();
    let owner_name = u32b(OWNER).to_vec();
    let d = extend(&extend(&[0; 32], &[&u32b(0x151), &owner_name]), &[&[]]);
    let attrs = nva::POLICYWRITE | nva::OWNERREAD;
    define_with_policy(&mut e, attrs, &d, b"");
    let mut s = start_session(&mut e, SE_POLICY, (0x10, 0), None);
    let mut p = tpm2b(&s.nonce_tpm);
    p.extend_from_slice(&tpm2b(&[]));
    p.extend_from_slice(&tpm2b(&[]));
    p.extend_from_slice(&0u32.to_be_bytes());
    let r = run_pw(&mut e, cc::POLICY_SECRET, &[OWNER, s.handle], &[b""], &p);
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    assert_eq!(get_digest(&mut e, &s), d);
    assert_eq!(
        nv_write_with(&mut e, &mut s, None, false, attrs, &d),
        TpmRc::SUCCESS
    );
    // Wrong owner password for PolicySecret: hierarchy auth has no DA.
    let r = run_pw(
        &mut e,
        cc::POLICY_SECRET,
        &[OWNER, s.handle],
        &[b"nope"],
        &p,
    );
    assert_eq!(rc(&r), TpmRc::BAD_AUTH.session(1));
}

#[test]
fn policy_nv_written_and_change_auth() {
    let mut e = started();
    // Policy: PolicyCommandCode(NV_ChangeAuth) for the ADMIN role.
    let d = extend(&[0; 32], &[&u32b(0x16C), &u32b(cc::NV_CHANGE_AUTH)]);
    let attrs = nva::OWNERWRITE | nva::AUTHREAD | nva::OWNERREAD;
    define_with_policy(&mut e, attrs, &d, b"old");
    // A password cannot authorize the ADMIN role.
    let r = run_pw(&mut e, cc::NV_CHANGE_AUTH, &[IX], &[b"old"], &tpm2b(b"new"));
    assert_eq!(rc(&r), TpmRc::AUTH_TYPE.session(1));
    let mut s = start_session(&mut e, SE_POLICY, (0x10, 0), None);
    assert_eq!(
        policy(
            &mut e,
            &s,
            cc::POLICY_COMMAND_CODE,
            &u32b(cc::NV_CHANGE_AUTH)
        ),
        TpmRc::SUCCESS
    );
    let name = nv_name(IX, attrs, &d, 8);
    let (code, _) = run(
        &mut e,
        cc::NV_CHANGE_AUTH,
        &[IX],
        &[name],
        &mut [Ok(Use {
            session: &mut s,
            attrs: CONTINUE,
            auth: None,
            password: false,
        })],
        &tpm2b(b"new"),
        false,
    );
    assert_eq!(code, TpmRc::SUCCESS);
    // PolicyNvWritten(NO) digest.
    let t = start_session(&mut e, SE_TRIAL, (0x10, 0), None);
    assert_eq!(
        policy(&mut e, &t, cc::POLICY_NV_WRITTEN, &[0]),
        TpmRc::SUCCESS
    );
    assert_eq!(
        get_digest(&mut e, &t),
        extend(&[0; 32], &[&u32b(0x18F), &[0]])
    );
    assert_eq!(
        policy(&mut e, &t, cc::POLICY_NV_WRITTEN, &[1]),
        TpmRc::VALUE.param(1)
    );
}
