//! NV indices through the engine: every index type, locks, undefine, capacity, durability,
//! dictionary-attack protection of index authValues.

mod sessions_util;

use sessions_util::*;
use ukvtpm_tpm_core::{Engine, TpmRc};

type E = Engine<TestPlatform>;

fn define(e: &mut E, index: u32, attrs: u32, size: u16, auth: &[u8]) -> TpmRc {
    let mut p = tpm2b(auth);
    p.extend_from_slice(&nv_public(index, attrs, &[], size));
    let owner = if attrs & nva::PLATFORMCREATE != 0 {
        PLATFORM
    } else {
        OWNER
    };
    rc(&run_pw(e, cc::NV_DEFINE_SPACE, &[owner], &[b""], &p))
}

fn write(e: &mut E, index: u32, data: &[u8], offset: u16) -> TpmRc {
    let mut p = tpm2b(data);
    p.extend_from_slice(&offset.to_be_bytes());
    rc(&run_pw(e, cc::NV_WRITE, &[OWNER, index], &[b""], &p))
}

fn read(e: &mut E, index: u32, size: u16, offset: u16) -> Result<Vec<u8>, TpmRc> {
    let mut p = size.to_be_bytes().to_vec();
    p.extend_from_slice(&offset.to_be_bytes());
    let r = run_pw(e, cc::NV_READ, &[OWNER, index], &[b""], &p);
    if rc(&r) != TpmRc::SUCCESS {
        return Err(rc(&r));
    }
    let out = resp_params(&r, false, true);
    Ok(out[2..].to_vec())
}

fn simple(e: &mut E, cc: u32, index: u32, params: &[u8]) -> TpmRc {
    rc(&run_pw(e, cc, &[OWNER, index], &[b""], params))
}

const RW: u32 = nva::OWNERWRITE | nva::OWNERREAD;

#[test]
fn ordinary_write_read_and_ranges() {
    let mut e = started();
    assert_eq!(define(&mut e, 0x0150_0001, RW, 16, b""), TpmRc::SUCCESS);
    assert_eq!(define(&mut e, 0x0150_0001, RW, 16, b""), TpmRc::NV_DEFINED);
    assert_eq!(
        read(&mut e, 0x0150_0001, 4, 0),
        Err(TpmRc::NV_UNINITIALIZED)
    );
    assert_eq!(write(&mut e, 0x0150_0001, b"abcd", 2), TpmRc::SUCCESS);
    assert_eq!(read(&mut e, 0x0150_0001, 6, 0).unwrap(), b"\0\0abcd");
    assert_eq!(write(&mut e, 0x0150_0001, &[1; 10], 8), TpmRc::NV_RANGE);
    assert_eq!(read(&mut e, 0x0150_0001, 10, 8), Err(TpmRc::NV_RANGE));
    // NV_ReadPublic reports WRITTEN and the matching Name.
    let r = e.execute(0, &frame(cc::NV_READ_PUBLIC, &[0x0150_0001], None, &[]));
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    let p = resp_params(&r, false, false);
    let expected_pub = nv_public(0x0150_0001, RW | nva::WRITTEN, &[], 16);
    assert_eq!(&p[..expected_pub.len()], &expected_pub[..]);
    assert_eq!(
        &p[expected_pub.len() + 2..],
        &nv_name(0x0150_0001, RW | nva::WRITTEN, &[], 16)[..]
    );
    // Wrong hierarchy for the attributes, no read or write authority, bad types.
    assert_eq!(
        define(&mut e, 0x0150_0002, nva::OWNERWRITE, 8, b""),
        TpmRc::ATTRIBUTES.param(2)
    );
    assert_eq!(
        define(&mut e, 0x0150_0002, RW | nva::COUNTER, 4, b""),
        TpmRc::SIZE.param(2)
    );
    // An index without OWNERWRITE refuses owner writes.
    assert_eq!(
        define(&mut e, 0x0150_0003, nva::AUTHWRITE | nva::OWNERREAD, 8, b""),
        TpmRc::SUCCESS
    );
    assert_eq!(write(&mut e, 0x0150_0003, b"x", 0), TpmRc::NV_AUTHORIZATION);
    // WRITEALL needs the whole index.
    assert_eq!(
        define(&mut e, 0x0150_0004, RW | nva::WRITEALL, 4, b""),
        TpmRc::SUCCESS
    );
    assert_eq!(write(&mut e, 0x0150_0004, b"ab", 0), TpmRc::NV_RANGE);
    assert_eq!(write(&mut e, 0x0150_0004, b"abcd", 0), TpmRc::SUCCESS);
}

#[test]
fn counter_bits_extend() {
    let mut e = started();
    let ctr = 0x0150_0010;
    assert_eq!(
        define(&mut e, ctr, RW | nva::COUNTER, 8, b""),
        TpmRc::SUCCESS
    );
    assert_eq!(write(&mut e, ctr, &[0; 8], 0), TpmRc::ATTRIBUTES);
    for _ in 0..5 {
        assert_eq!(simple(&mut e, cc::NV_INCREMENT, ctr, &[]), TpmRc::SUCCESS);
    }
    assert_eq!(read(&mut e, ctr, 8, 0).unwrap(), 5u64.to_be_bytes());
    // Undefine and define again: the counter starts above its old value.
    assert_eq!(
        rc(&run_pw(
            &mut e,
            cc::NV_UNDEFINE_SPACE,
            &[OWNER, ctr],
            &[b""],
            &[]
        )),
        TpmRc::SUCCESS
    );
    assert_eq!(
        define(&mut e, ctr, RW | nva::COUNTER, 8, b""),
        TpmRc::SUCCESS
    );
    assert_eq!(simple(&mut e, cc::NV_INCREMENT, ctr, &[]), TpmRc::SUCCESS);
    assert_eq!(read(&mut e, ctr, 8, 0).unwrap(), 6u64.to_be_bytes());

    let bits = 0x0150_0011;
    assert_eq!(define(&mut e, bits, RW | nva::BITS, 8, b""), TpmRc::SUCCESS);
    assert_eq!(
        simple(&mut e, cc::NV_SET_BITS, bits, &0x11u64.to_be_bytes()),
        TpmRc::SUCCESS
    );
    assert_eq!(
        simple(&mut e, cc::NV_SET_BITS, bits, &0x0100u64.to_be_bytes()),
        TpmRc::SUCCESS
    );
    assert_eq!(read(&mut e, bits, 8, 0).unwrap(), 0x0111u64.to_be_bytes());
    assert_eq!(
        simple(&mut e, cc::NV_INCREMENT, bits, &[]),
        TpmRc::ATTRIBUTES.handle(2)
    );

    let ext = 0x0150_0012;
    assert_eq!(
        define(&mut e, ext, RW | nva::EXTEND, 32, b""),
        TpmRc::SUCCESS
    );
    assert_eq!(
        simple(&mut e, cc::NV_EXTEND, ext, &tpm2b(b"event")),
        TpmRc::SUCCESS
    );
    use ukvtpm_tpm_core::crypto::hash::HashAlg;
    let expected = HashAlg::Sha256.digest(&[&[0; 32], b"event"]);
    assert_eq!(read(&mut e, ext, 32, 0).unwrap(), expected);
}

#[test]
fn locks_and_startup() {
    let mut e = started();
    let wl = 0x0150_0020;
    let wd = 0x0150_0021;
    let rl = 0x0150_0022;
    let gl = 0x0150_0023;
    assert_eq!(
        define(&mut e, wl, RW | nva::WRITE_STCLEAR, 8, b""),
        TpmRc::SUCCESS
    );
    assert_eq!(
        define(&mut e, wd, RW | nva::WRITEDEFINE, 8, b""),
        TpmRc::SUCCESS
    );
    assert_eq!(
        define(&mut e, rl, RW | nva::READ_STCLEAR, 8, b""),
        TpmRc::SUCCESS
    );
    assert_eq!(
        define(&mut e, gl, RW | nva::GLOBALLOCK, 8, b""),
        TpmRc::SUCCESS
    );
    for ix in [wl, wd, rl, gl] {
        assert_eq!(write(&mut e, ix, b"12345678", 0), TpmRc::SUCCESS);
    }
    assert_eq!(simple(&mut e, cc::NV_WRITE_LOCK, wl, &[]), TpmRc::SUCCESS);
    assert_eq!(simple(&mut e, cc::NV_WRITE_LOCK, wd, &[]), TpmRc::SUCCESS);
    assert_eq!(
        simple(&mut e, cc::NV_WRITE_LOCK, rl, &[]),
        TpmRc::ATTRIBUTES.handle(2)
    );
    assert_eq!(simple(&mut e, cc::NV_READ_LOCK, rl, &[]), TpmRc::SUCCESS);
    assert_eq!(
        rc(&run_pw(&mut e, 0x132, &[OWNER], &[b""], &[])),
        TpmRc::SUCCESS
    );
    assert_eq!(write(&mut e, wl, b"x", 0), TpmRc::NV_LOCKED);
    assert_eq!(write(&mut e, wd, b"x", 0), TpmRc::NV_LOCKED);
    assert_eq!(write(&mut e, gl, b"x", 0), TpmRc::NV_LOCKED);
    assert_eq!(read(&mut e, rl, 8, 0), Err(TpmRc::NV_LOCKED));
    // A restart ends the per-boot locks; WRITEDEFINE stays locked for good.
    let mut e = restart(e);
    assert_eq!(write(&mut e, wl, b"x", 0), TpmRc::SUCCESS);
    assert_eq!(write(&mut e, gl, b"x", 0), TpmRc::SUCCESS);
    assert_eq!(write(&mut e, wd, b"x", 0), TpmRc::NV_LOCKED);
    assert_eq!(read(&mut e, rl, 8, 0).unwrap(), b"12345678");
    assert_eq!(read(&mut e, wl, 8, 0).unwrap(), b"x2345678");
}

#[test]
fn clear_stclear_forgets_written() {
    let mut e = started();
    let ix = 0x0150_0030;
    assert_eq!(
        define(&mut e, ix, RW | nva::CLEAR_STCLEAR, 8, b""),
        TpmRc::SUCCESS
    );
    assert_eq!(write(&mut e, ix, b"abc", 0), TpmRc::SUCCESS);
    let mut e = restart(e);
    assert_eq!(read(&mut e, ix, 3, 0), Err(TpmRc::NV_UNINITIALIZED));
}

#[test]
fn undefine_rules_and_platform_indices() {
    let mut e = started();
    let pix = 0x0140_0001;
    let attrs = nva::PPWRITE | nva::PPREAD | nva::OWNERREAD | nva::PLATFORMCREATE;
    assert_eq!(define(&mut e, pix, attrs, 8, b""), TpmRc::SUCCESS);
    // The owner may not create platform indices, nor delete them.
    let mut p = tpm2b(b"");
    p.extend_from_slice(&nv_public(0x0140_0002, attrs, &[], 8));
    assert_eq!(
        rc(&run_pw(&mut e, cc::NV_DEFINE_SPACE, &[OWNER], &[b""], &p)),
        TpmRc::ATTRIBUTES.handle(1)
    );
    assert_eq!(
        rc(&run_pw(
            &mut e,
            cc::NV_UNDEFINE_SPACE,
            &[OWNER, pix],
            &[b""],
            &[]
        )),
        TpmRc::NV_AUTHORIZATION
    );
    assert_eq!(
        rc(&run_pw(
            &mut e,
            cc::NV_UNDEFINE_SPACE,
            &[PLATFORM, pix],
            &[b""],
            &[]
        )),
        TpmRc::SUCCESS
    );
    assert_eq!(
        rc(&run_pw(
            &mut e,
            cc::NV_UNDEFINE_SPACE,
            &[PLATFORM, pix],
            &[b""],
            &[]
        )),
        TpmRc::HANDLE.handle(2)
    );
}

#[test]
fn nv_space_is_enforced() {
    let mut e = started();
    let mut defined = 0;
    for i in 0..1000u32 {
        match define(&mut e, 0x0150_1000 + i, RW, 2048, b"") {
            TpmRc::SUCCESS => defined += 1,
            rc => {
                assert_eq!(rc, TpmRc::NV_SPACE);
                break;
            }
        }
    }
    assert!(defined > 4 && defined < 1000);
}

#[test]
fn commit_failure_keeps_state() {
    let mut e = started();
    let ix = 0x0150_0040;
    assert_eq!(define(&mut e, ix, RW, 8, b""), TpmRc::SUCCESS);
    assert_eq!(write(&mut e, ix, b"old", 0), TpmRc::SUCCESS);
    e.platform_mut().fail_commits = true;
    assert_eq!(write(&mut e, ix, b"new", 0), TpmRc::NV_UNAVAILABLE);
    e.platform_mut().fail_commits = false;
    assert_eq!(read(&mut e, ix, 3, 0).unwrap(), b"old");
    let mut e = restart(e);
    assert_eq!(read(&mut e, ix, 3, 0).unwrap(), b"old");
}

#[test]
fn index_auth_and_dictionary_attack() {
    let mut e = started();
    let ix = 0x0150_0050;
    let attrs = nva::AUTHWRITE | nva::AUTHREAD;
    assert_eq!(define(&mut e, ix, attrs, 8, b"pin"), TpmRc::SUCCESS);
    let mut p = tpm2b(b"data");
    p.extend_from_slice(&0u16.to_be_bytes());
    assert_eq!(
        rc(&run_pw(&mut e, cc::NV_WRITE, &[ix, ix], &[b"pin"], &p)),
        TpmRc::SUCCESS
    );
    // Default maxTries is 3: three failures lock out DA-protected entities.
    for _ in 0..3 {
        assert_eq!(
            rc(&run_pw(&mut e, cc::NV_WRITE, &[ix, ix], &[b"bad"], &p)),
            TpmRc::AUTH_FAIL.session(1)
        );
    }
    assert_eq!(
        rc(&run_pw(&mut e, cc::NV_WRITE, &[ix, ix], &[b"pin"], &p)),
        TpmRc::LOCKOUT
    );
    // A NO_DA index is still usable.
    let nd = 0x0150_0051;
    assert_eq!(
        define(&mut e, nd, attrs | nva::NO_DA, 8, b"pin"),
        TpmRc::SUCCESS
    );
    assert_eq!(
        rc(&run_pw(&mut e, cc::NV_WRITE, &[nd, nd], &[b"bad"], &p)),
        TpmRc::BAD_AUTH.session(1)
    );
    assert_eq!(
        rc(&run_pw(&mut e, cc::NV_WRITE, &[nd, nd], &[b"pin"], &p)),
        TpmRc::SUCCESS
    );
    // DictionaryAttackLockReset with lockoutAuth ends the lockout; the state survives restarts.
    let mut e = restart(e);
    assert_eq!(
        rc(&run_pw(&mut e, cc::NV_WRITE, &[ix, ix], &[b"pin"], &p)),
        TpmRc::LOCKOUT
    );
    assert_eq!(
        rc(&run_pw(&mut e, cc::DA_LOCK_RESET, &[LOCKOUT], &[b""], &[])),
        TpmRc::SUCCESS
    );
    assert_eq!(
        rc(&run_pw(&mut e, cc::NV_WRITE, &[ix, ix], &[b"pin"], &p)),
        TpmRc::SUCCESS
    );
    // Owner authorization of an AUTHREAD-only index is refused.
    assert_eq!(read(&mut e, ix, 4, 0), Err(TpmRc::NV_AUTHORIZATION));
}

#[test]
fn counter_high_water_mark_survives_clear() {
    let mut e = started();
    let ctr = 0x0150_0060;
    assert_eq!(
        define(&mut e, ctr, RW | nva::COUNTER, 8, b""),
        TpmRc::SUCCESS
    );
    for _ in 0..7 {
        assert_eq!(simple(&mut e, cc::NV_INCREMENT, ctr, &[]), TpmRc::SUCCESS);
    }
    // TPM2_Clear(lockout) removes owner indices.
    assert_eq!(
        rc(&run_pw(&mut e, 0x126, &[LOCKOUT], &[b""], &[])),
        TpmRc::SUCCESS
    );
    let r = e.execute(0, &frame(cc::NV_READ_PUBLIC, &[ctr], None, &[]));
    assert_eq!(rc(&r), TpmRc::HANDLE.handle(1));
    assert_eq!(
        define(&mut e, ctr, RW | nva::COUNTER, 8, b""),
        TpmRc::SUCCESS
    );
    assert_eq!(simple(&mut e, cc::NV_INCREMENT, ctr, &[]), TpmRc::SUCCESS);
    assert_eq!(read(&mut e, ctr, 8, 0).unwrap(), 8u64.to_be_bytes());
}

#[test]
fn pin_fail_and_pin_pass_indices() {
    let mut e = started();
    let pin_fail = 0x0150_0070;
    let attrs = RW | nva::AUTHREAD | nva::NO_DA | (8 << 4);
    assert_eq!(define(&mut e, pin_fail, attrs, 8, b"1234"), TpmRc::SUCCESS);
    // Not written yet: the PIN cannot be used.
    let p = {
        let mut p = 8u16.to_be_bytes().to_vec();
        p.extend_from_slice(&0u16.to_be_bytes());
        p
    };
    assert_eq!(
        rc(&run_pw(
            &mut e,
            cc::NV_READ,
            &[pin_fail, pin_fail],
            &[b"1234"],
            &p
        )),
        TpmRc::AUTH_UNAVAILABLE.session(1)
    );
    // pinCount 0, pinLimit 2.
    assert_eq!(
        write(&mut e, pin_fail, &[0, 0, 0, 0, 0, 0, 0, 2], 0),
        TpmRc::SUCCESS
    );
    assert_eq!(
        rc(&run_pw(
            &mut e,
            cc::NV_READ,
            &[pin_fail, pin_fail],
            &[b"1234"],
            &p
        )),
        TpmRc::SUCCESS
    );
    for _ in 0..2 {
        assert_eq!(
            rc(&run_pw(
                &mut e,
                cc::NV_READ,
                &[pin_fail, pin_fail],
                &[b"bad"],
                &p
            )),
            TpmRc::BAD_AUTH.session(1)
        );
    }
    assert_eq!(
        read(&mut e, pin_fail, 8, 0).unwrap(),
        [0, 0, 0, 2, 0, 0, 0, 2]
    );
    assert_eq!(
        rc(&run_pw(
            &mut e,
            cc::NV_READ,
            &[pin_fail, pin_fail],
            &[b"1234"],
            &p
        )),
        TpmRc::AUTH_UNAVAILABLE.session(1)
    );

    let pin_pass = 0x0150_0071;
    let attrs = RW | nva::AUTHREAD | (9 << 4);
    assert_eq!(define(&mut e, pin_pass, attrs, 8, b"pw"), TpmRc::SUCCESS);
    assert_eq!(
        write(&mut e, pin_pass, &[0, 0, 0, 0, 0, 0, 0, 1], 0),
        TpmRc::SUCCESS
    );
    assert_eq!(
        rc(&run_pw(
            &mut e,
            cc::NV_READ,
            &[pin_pass, pin_pass],
            &[b"pw"],
            &p
        )),
        TpmRc::SUCCESS
    );
    assert_eq!(
        rc(&run_pw(
            &mut e,
            cc::NV_READ,
            &[pin_pass, pin_pass],
            &[b"pw"],
            &p
        )),
        TpmRc::AUTH_UNAVAILABLE.session(1)
    );
}
