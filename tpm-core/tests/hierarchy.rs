//! Clear, ClearControl, HierarchyChangeAuth, HierarchyControl, SetPrimaryPolicy, DA, clock.

mod common;
use common::*;
use ukvtpm_tpm_core::TpmRc;

fn change_auth(e: &mut Tpm, h: u32, old: &[u8], new: &[u8]) -> TpmRc {
    rc(&e.execute(0, &auth_cmd(0x129, &[h], &[old], &tpm2b(new))))
}

fn read_clock(e: &mut Tpm) -> (u64, u64, u32, u32, u8) {
    let r = e.execute(0, &cmd(0x181, &[]));
    let mut rd = Rd(params(&r));
    let v = (rd.u64(), rd.u64(), rd.u32(), rd.u32(), rd.u8());
    assert!(rd.0.is_empty());
    v
}

#[test]
fn change_auth_and_clear() {
    let mut e = started();
    for h in [OWNER, ENDORSEMENT, LOCKOUT, PLATFORM] {
        assert_eq!(change_auth(&mut e, h, b"", b"new"), TpmRc::SUCCESS);
        // Old password refused: BAD_AUTH for DA-exempt hierarchies, AUTH_FAIL for lockout.
        let want = if h == LOCKOUT { 0x98E } else { 0x9A2 };
        assert_eq!(change_auth(&mut e, h, b"", b"x"), TpmRc(want), "{h:#x}");
        if h == LOCKOUT {
            // lockoutAuth is now blocked for lockoutRecovery.
            assert_eq!(change_auth(&mut e, h, b"new", b"x"), TpmRc::LOCKOUT);
        } else {
            assert_eq!(change_auth(&mut e, h, b"new\0\0", b"new"), TpmRc::SUCCESS);
        }
    }
    // Too long (> 48 octets after trimming zeros).
    assert_eq!(change_auth(&mut e, OWNER, b"new", &[1; 49]), TpmRc(0x1D5));
    assert_eq!(change_auth(&mut e, OWNER, b"new", &[1; 65]), TpmRc(0x1D5));
    // Clear by platform resets owner auth.
    let r = e.execute(0, &auth_cmd(0x126, &[PLATFORM], &[b"new"], &[]));
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    assert_eq!(change_auth(&mut e, OWNER, b"", b""), TpmRc::SUCCESS);
    // Lockout is usable again after Clear reset the DA state.
    assert_eq!(change_auth(&mut e, LOCKOUT, b"", b""), TpmRc::SUCCESS);
}

#[test]
fn clear_control() {
    let mut e = started();
    // Lockout may set disableClear but not clear it.
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x127, &[LOCKOUT], &[b""], &[1]))),
        TpmRc::SUCCESS
    );
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x126, &[LOCKOUT], &[b""], &[]))),
        TpmRc::DISABLED
    );
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x127, &[LOCKOUT], &[b""], &[0]))),
        TpmRc::AUTH_FAIL
    );
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x127, &[PLATFORM], &[b""], &[0]))),
        TpmRc::SUCCESS
    );
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x126, &[LOCKOUT], &[b""], &[]))),
        TpmRc::SUCCESS
    );
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x126, &[OWNER], &[b""], &[]))),
        TpmRc(0x184)
    );
}

#[test]
fn hierarchy_control() {
    let mut e = started();
    let hc = |e: &mut Tpm, by: u32, which: u32, on: u8| {
        let mut p = which.to_be_bytes().to_vec();
        p.push(on);
        rc(&e.execute(0, &auth_cmd(0x121, &[by], &[b""], &p)))
    };
    // Owner may disable storage; then owner auth is refused (TPM_RC_HIERARCHY + H1).
    assert_eq!(hc(&mut e, OWNER, OWNER, 0), TpmRc::SUCCESS);
    assert_eq!(change_auth(&mut e, OWNER, b"", b"x"), TpmRc(0x185));
    // Only platform re-enables.
    assert_eq!(hc(&mut e, ENDORSEMENT, OWNER, 1), TpmRc::AUTH_TYPE);
    assert_eq!(hc(&mut e, PLATFORM, OWNER, 1), TpmRc::SUCCESS);
    assert_eq!(change_auth(&mut e, OWNER, b"", b""), TpmRc::SUCCESS);
    assert_eq!(hc(&mut e, OWNER, PLATFORM, 0), TpmRc::AUTH_TYPE);
    assert_eq!(hc(&mut e, PLATFORM, 0x4000_0005, 0), TpmRc(0x1C4));
    assert_eq!(hc(&mut e, PLATFORM, PLATFORM, 0), TpmRc::SUCCESS);
    assert_eq!(change_auth(&mut e, PLATFORM, b"", b""), TpmRc(0x185));
}

#[test]
fn set_primary_policy() {
    let mut e = started();
    let mut p = tpm2b(&[7; 32]);
    p.extend_from_slice(&SHA256.to_be_bytes());
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x12E, &[OWNER], &[b""], &p))),
        TpmRc::SUCCESS
    );
    let mut p = tpm2b(&[7; 20]);
    p.extend_from_slice(&SHA256.to_be_bytes());
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x12E, &[OWNER], &[b""], &p))),
        TpmRc(0x1D5)
    );
    let mut p = tpm2b(&[]);
    p.extend_from_slice(&0x0010u16.to_be_bytes());
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x12E, &[LOCKOUT], &[b""], &p))),
        TpmRc::SUCCESS
    );
}

#[test]
fn dictionary_attack() {
    let mut e = started();
    let mut p = 5u32.to_be_bytes().to_vec();
    p.extend_from_slice(&10u32.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x13A, &[LOCKOUT], &[b""], &p))),
        TpmRc::SUCCESS
    );
    // lockoutRecovery 0: a failure blocks lockout until the next TPM Reset.
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x139, &[LOCKOUT], &[b"bad"], &[]))),
        TpmRc(0x98E)
    );
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x139, &[LOCKOUT], &[b""], &[]))),
        TpmRc::LOCKOUT
    );
    e.power_on();
    assert_eq!(rc(&e.execute(0, &cmd(0x144, &[0, 0]))), TpmRc::SUCCESS);
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x139, &[LOCKOUT], &[b""], &[]))),
        TpmRc::SUCCESS
    );
}

#[test]
fn clock() {
    let mut e = started();
    let (time, clock, reset, restart, _safe) = read_clock(&mut e);
    assert!(time > 0 && clock > 0);
    assert_eq!((reset, restart), (1, 0));
    let set = |e: &mut Tpm, v: u64| {
        rc(&e.execute(0, &auth_cmd(0x128, &[OWNER], &[b""], &v.to_be_bytes())))
    };
    assert_eq!(set(&mut e, 1_000_000), TpmRc::SUCCESS);
    assert!(read_clock(&mut e).1 >= 1_000_000);
    assert_eq!(set(&mut e, 5), TpmRc(0x1C4));
    assert_eq!(set(&mut e, 0xFFFF_0000_0000_0001), TpmRc(0x1C4));
    assert_eq!(
        rc(&e.execute(0, &auth_cmd(0x128, &[ENDORSEMENT], &[b""], &[0; 8]))),
        TpmRc(0x184)
    );
    let adj = |e: &mut Tpm, v: u8| rc(&e.execute(0, &auth_cmd(0x130, &[PLATFORM], &[b""], &[v])));
    assert_eq!(adj(&mut e, 3), TpmRc::SUCCESS);
    assert_eq!(adj(&mut e, 0xFD), TpmRc::SUCCESS);
    assert_eq!(adj(&mut e, 4), TpmRc(0x1C4));
    assert_eq!(rc(&e.execute(0, &cmd(0x181, &[0]))), TpmRc::SIZE);
}
