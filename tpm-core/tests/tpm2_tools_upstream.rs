//! Regressions found by running tpm2-tools' own integration tests (test/integration/tests/*.sh,
//! tpm2-tools 5.4) against `ukvtpm serve`: each test is the engine-level form of what one of
//! those scripts does, with the answer swtpm (libtpms) gives.

mod sessions_util;

use sessions_util::*;
use ukvtpm_tpm_core::{Engine, TpmRc};

type E = Engine<TestPlatform>;

const IX: u32 = 0x0150_0001;
const CREATE_PRIMARY: u32 = 0x131;
const SET_COMMAND_CODE_AUDIT_STATUS: u32 = 0x140;
const POLICY_NV: u32 = 0x149;
const POLICY_SIGNED: u32 = 0x160;
const GET_CAPABILITY: u32 = 0x17A;

/// CreatePrimary under the owner hierarchy; the response.
fn create_primary(e: &mut E, template: &[u8]) -> Vec<u8> {
    let mut p = tpm2b(&[0, 0, 0, 0]); // TPM2B_SENSITIVE_CREATE: empty userAuth and data
    p.extend_from_slice(&tpm2b(template));
    p.extend_from_slice(&tpm2b(b""));
    p.extend_from_slice(&0u32.to_be_bytes());
    run_pw(e, CREATE_PRIMARY, &[OWNER], &[b""], &p)
}

/// keyedhash.sh/create.sh: `tpm2 create -G keyedhash` asks for a KEYEDHASH object with sign and
/// decrypt SET, scheme NULL and sensitiveDataOrigin SET. That is a key (not sealed data), so the
/// TPM generates it (reference CryptGenerateKeyedHash: size from nameAlg when the scheme is NULL).
#[test]
fn keyedhash_key_with_null_scheme_is_generated() {
    let mut e = started();
    for name_alg in [0x0004u16, 0x000B, 0x000C] {
        let mut t = vec![0, 8];
        t.extend_from_slice(&name_alg.to_be_bytes());
        t.extend_from_slice(&0x0006_0072u32.to_be_bytes()); // fixedTPM|fixedParent|sdo|uwa|decrypt|sign
        t.extend_from_slice(&[0, 0, 0, 0x10, 0, 0]); // no policy, scheme NULL, empty unique
        let r = create_primary(&mut e, &t);
        assert_eq!(rc(&r), TpmRc::SUCCESS, "nameAlg {name_alg:#x}");
        let h = u32::from_be_bytes(r[10..14].try_into().unwrap());
        assert_eq!(
            rc(&e.execute(0, &frame(0x165, &[h], None, &[]))),
            TpmRc::SUCCESS
        );
    }
    // Sealed data (neither sign nor decrypt) still cannot have the TPM as its origin.
    let mut t = vec![0, 8, 0, 0x0B];
    t.extend_from_slice(&0x0000_0072u32.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0x10, 0, 0]);
    assert_eq!(rc(&create_primary(&mut e, &t)), TpmRc::ATTRIBUTES.param(2));
}

/// abrmd_policysigned.sh: `tpm2 policysigned --cphash-input` in a trial session sends an empty
/// RSASSA signature whatever the key (here ECC). The signature parses and is never verified in a
/// trial session (Part 3, 23.3), so the policy is extended; a real policy session rejects it.
#[test]
fn policy_signed_trial_accepts_unverified_signature_of_other_type() {
    let mut e = started();
    // ECC P-256 ECDSA-SHA256 signing key.
    let mut t = vec![0, 0x23, 0, 0x0B];
    t.extend_from_slice(&0x0004_0072u32.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0x10, 0, 0x18, 0, 0x0B, 0, 3, 0, 0x10, 0, 0, 0, 0]);
    let r = create_primary(&mut e, &t);
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    let key = u32::from_be_bytes(r[10..14].try_into().unwrap());

    let params = |sig: &[u8]| {
        let mut p = tpm2b(b""); // nonceTPM
        p.extend_from_slice(&tpm2b(&[0x5A; 32])); // cpHashA
        p.extend_from_slice(&tpm2b(b"")); // policyRef
        p.extend_from_slice(&0u32.to_be_bytes()); // expiration
        p.extend_from_slice(sig);
        p
    };
    let rsassa_empty = [0, 0x14, 0, 0x0B, 0, 0];
    let trial = start_session(&mut e, SE_TRIAL, (0x10, 0), None);
    let r = e.execute(
        0,
        &frame(
            POLICY_SIGNED,
            &[key, trial.handle],
            None,
            &params(&rsassa_empty),
        ),
    );
    assert_eq!(rc(&r), TpmRc::SUCCESS);

    let real = start_session(&mut e, SE_POLICY, (0x10, 0), None);
    let r = e.execute(
        0,
        &frame(
            POLICY_SIGNED,
            &[key, real.handle],
            None,
            &params(&rsassa_empty),
        ),
    );
    assert_ne!(rc(&r), TpmRc::SUCCESS);

    // Malformed signatures are parameter errors, in trial sessions too.
    for sig in [
        &[0, 0x14, 0, 0x0B][..],       // no signature TPM2B
        &[0, 0x14, 0, 0x0B, 0, 4, 1],  // short TPM2B
        &[0, 0x18, 0, 0x0B, 0, 0],     // ECDSA without s
        &[0, 0x14, 0x12, 0x34, 0, 0],  // unknown hash
        &[0x12, 0x34, 0, 0x0B, 0, 0],  // unknown scheme
        &[0, 0x05, 0, 0x0B, 0, 0, 0],  // HMAC digest shorter than SHA-256
        &[0, 0x14, 0, 0x0B, 0, 0, 99], // trailing byte
    ] {
        let r = e.execute(
            0,
            &frame(POLICY_SIGNED, &[key, trial.handle], None, &params(sig)),
        );
        assert_ne!(rc(&r), TpmRc::SUCCESS, "{sig:?}");
    }
    // NULL signature parses (trial: nothing to verify).
    let r = e.execute(
        0,
        &frame(
            POLICY_SIGNED,
            &[key, trial.handle],
            None,
            &params(&[0, 0x10]),
        ),
    );
    assert_eq!(rc(&r), TpmRc::SUCCESS);
}

/// abrmd_policynv.sh: an index holding 0x81 (-127) passes "sgt" against 0x82 and "slt" against
/// 0x80 on swtpm. Reference CryptCompareSigned reverses the comparison when both operands are
/// negative; the matrix below is what swtpm answers.
#[test]
fn policy_nv_signed_comparisons_match_reference() {
    let mut e = started();
    let mut p = tpm2b(b"nvpass");
    p.extend_from_slice(&nv_public(IX, nva::AUTHWRITE | nva::AUTHREAD, &[], 1));
    assert_eq!(
        rc(&run_pw(&mut e, cc::NV_DEFINE_SPACE, &[OWNER], &[b""], &p)),
        TpmRc::SUCCESS
    );
    // ops: sgt ugt slt ult sge uge sle ule
    let cases: &[(u8, u8, [bool; 8])] = &[
        (
            0x81,
            0x82,
            [true, false, false, true, true, false, false, true],
        ),
        (
            0x81,
            0x80,
            [false, true, true, false, false, true, true, false],
        ),
        (
            0x81,
            0x01,
            [false, true, true, false, false, true, true, false],
        ),
        (
            0x81,
            0xFF,
            [true, false, false, true, true, false, false, true],
        ),
        (
            0x01,
            0x82,
            [true, false, false, true, true, false, false, true],
        ),
        (
            0x01,
            0x01,
            [false, false, false, false, true, true, true, true],
        ),
        (
            0x01,
            0x7F,
            [false, false, true, true, false, false, true, true],
        ),
        (
            0x7F,
            0x01,
            [true, true, false, false, true, true, false, false],
        ),
    ];
    for &(a, b, expect) in cases {
        let mut w = tpm2b(&[a]);
        w.extend_from_slice(&0u16.to_be_bytes());
        assert_eq!(
            rc(&run_pw(&mut e, cc::NV_WRITE, &[IX, IX], &[b"nvpass"], &w)),
            TpmRc::SUCCESS
        );
        for (i, want) in expect.iter().enumerate() {
            let s = start_session(&mut e, SE_POLICY, (0x10, 0), None);
            let mut q = tpm2b(&[b]);
            q.extend_from_slice(&0u16.to_be_bytes()); // offset
            q.extend_from_slice(&(i as u16 + 2).to_be_bytes()); // TPM_EO_SIGNED_GT..
            let r = run_pw(&mut e, POLICY_NV, &[IX, IX, s.handle], &[b"nvpass"], &q);
            let got = rc(&r);
            if *want {
                assert_eq!(got, TpmRc::SUCCESS, "A={a:#x} B={b:#x} op {}", i + 2);
            } else {
                assert_eq!(got, TpmRc::POLICY, "A={a:#x} B={b:#x} op {}", i + 2);
            }
            assert_eq!(
                rc(&e.execute(0, &frame(0x165, &[s.handle], None, &[]))),
                TpmRc::SUCCESS
            );
        }
    }
}

/// TPM_PT_AUDIT_COUNTER_0/1 (high, low word) from GetCapability(TPM_PROPERTIES).
fn audit_counter(e: &mut E) -> (u32, u32) {
    let mut p = 6u32.to_be_bytes().to_vec();
    p.extend_from_slice(&0x213u32.to_be_bytes());
    p.extend_from_slice(&2u32.to_be_bytes());
    let r = e.execute(0, &frame(GET_CAPABILITY, &[], None, &p));
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    let body = &r[10..];
    assert_eq!(u32::from_be_bytes(body[5..9].try_into().unwrap()), 2);
    let prop = |i: usize| {
        let at = 9 + i * 8;
        let tag = u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        let value = u32::from_be_bytes(body[at + 4..at + 8].try_into().unwrap());
        (tag, value)
    };
    let ((t0, hi), (t1, lo)) = (prop(0), prop(1));
    assert_eq!((t0, t1), (0x213, 0x214));
    (hi, lo)
}

/// commandaudit.sh: the audit counter reads zero after manufacture and one once
/// SetCommandCodeAuditStatus has started a new audit digest (Part 2, 6.13; Part 3, 21.2).
#[test]
fn audit_counter_is_reported() {
    let mut e = started();
    assert_eq!(audit_counter(&mut e), (0, 0));
    let mut p = 0x000Bu16.to_be_bytes().to_vec();
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(
        rc(&run_pw(
            &mut e,
            SET_COMMAND_CODE_AUDIT_STATUS,
            &[OWNER],
            &[b""],
            &p
        )),
        TpmRc::SUCCESS
    );
    assert_eq!(audit_counter(&mut e), (0, 1));
}
