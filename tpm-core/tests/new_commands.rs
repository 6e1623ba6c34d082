//! Malformed and truncated parameters for the commands tpm2-pytss's tests brought in
//! (ChangePPS, ChangeEPS, PP_Commands, SetAlgorithmSet, PCR_Allocate, PCR_SetAuthValue,
//! PCR_SetAuthPolicy, Rewrap, EC_Ephemeral, Commit, ZGen_2Phase): every prefix and every
//! one-octet corruption of a well-formed command gets a response code, never a panic, and
//! the engine keeps answering. What the commands do is checked against swtpm in tests/pytss.

#![allow(dead_code)]

mod keys_util;

use keys_util::*;
use ukvtpm_tpm_core::TpmRc;

/// The test platform's PLATFORM handle and the password session handle.
const PLATFORM: u32 = 0x4000_000C;

const TRANSIENT: u32 = 0x8000_0000;

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// (command code, handles, password sessions, well-formed parameters).
fn commands() -> Vec<(u32, Vec<u32>, usize, Vec<u8>)> {
    let point = tpm2b(&cat(&[&tpm2b(&[1; 32]), &tpm2b(&[2; 32])]));
    vec![
        (0x125, vec![PLATFORM], 1, vec![]), // ChangePPS
        (0x124, vec![PLATFORM], 1, vec![]), // ChangeEPS
        (
            0x12D,
            vec![PLATFORM],
            1,
            cat(&[&[0, 0, 0, 1, 0, 0, 1, 0x2D], &[0; 4]]),
        ), // PP_Commands
        (0x13F, vec![PLATFORM], 1, vec![0, 0, 0, 7]), // SetAlgorithmSet
        (
            0x12B, // PCR_Allocate
            vec![PLATFORM],
            1,
            cat(&[
                &[0, 0, 0, 2],
                &[0, 4, 3, 8, 0, 0],
                &[0, 0x0B, 3, 0xFF, 0xFF, 0xFF],
            ]),
        ),
        (0x183, vec![20], 1, tpm2b(b"pcr password")), // PCR_SetAuthValue
        (
            0x12C, // PCR_SetAuthPolicy
            vec![PLATFORM],
            1,
            cat(&[&tpm2b(&[7; 32]), &[0, 0x0B], &[0, 0, 0, 20]]),
        ),
        (
            0x152, // Rewrap
            vec![TRANSIENT, TRANSIENT + 1],
            1,
            cat(&[&tpm2b(&[9; 80]), &tpm2b(&[0; 34]), &tpm2b(&[3; 64])]),
        ),
        (0x18E, vec![], 0, vec![0, 3]), // EC_Ephemeral
        (
            0x18B, // Commit
            vec![TRANSIENT],
            1,
            cat(&[&point, &tpm2b(b"s2"), &tpm2b(&[5; 32])]),
        ),
        (
            0x18D, // ZGen_2Phase
            vec![TRANSIENT],
            1,
            cat(&[&point, &point, &[0, 0x19], &[0, 0]]),
        ),
    ]
}

fn build(code: u32, handles: &[u32], sessions: usize, params: &[u8]) -> Vec<u8> {
    command(code, handles, &vec![&b""[..]; sessions], params)
}

#[test]
fn truncated_and_corrupted_parameters_get_a_response_code() {
    let mut e = started();
    // Two storage keys at 0x80000000 and 0x80000001, so Rewrap and ZGen_2Phase get past
    // their handle checks and parse their parameters.
    create_primary(&mut e, OWNER, &srk_ecc_template()).unwrap();
    create_primary(&mut e, OWNER, &srk_rsa_template()).unwrap();
    for (code, handles, sessions, params) in commands() {
        // The well-formed command answers (success or a TPM error, depending on state).
        let full = build(code, &handles, sessions, &params);
        let _ = rc(&e.execute(0, &full));
        for n in 0..params.len() {
            let r = e.execute(0, &build(code, &handles, sessions, &params[..n]));
            assert_ne!(
                rc(&r),
                TpmRc::SUCCESS,
                "{code:#x} with {n} parameter octets"
            );
        }
        for i in 0..params.len() {
            let mut bad = params.clone();
            bad[i] ^= 0xA5;
            let _ = rc(&e.execute(0, &build(code, &handles, sessions, &bad)));
        }
        // Trailing garbage is TPM_RC_SIZE or an earlier error.
        let mut long = params.clone();
        long.push(0);
        let r = e.execute(0, &build(code, &handles, sessions, &long));
        assert_ne!(rc(&r), TpmRc::SUCCESS, "{code:#x} with a trailing octet");
    }
    // Still serving.
    let r = e.execute(0, &command(0x17B, &[], &[], &[0, 8]));
    assert_eq!(rc(&r), TpmRc::SUCCESS);
}

#[test]
fn pp_commands_is_refused_for_physical_presence() {
    let mut e = started();
    let r = e.execute(0, &command(0x12D, &[PLATFORM], &[b""], &[0; 8]));
    // TPM_RC_PP + TPM_RC_S + TPM_RC_1
    assert_eq!(rc(&r), TpmRc(0x990));
}
