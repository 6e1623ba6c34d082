//! Shared helpers of the `keys_*` engine tests: a deterministic platform, command builders
//! with password sessions, and the templates tpm2-tss and the TCG EK profile use.

#![allow(dead_code)]

use ukvtpm_tpm_core::{Engine, TpmRc};

pub use ukvtpm_tpm_core::Handle;

#[path = "../common/mod.rs"]
mod common;
// Not every test binary uses every shared helper.
#[allow(unused_imports)]
pub use common::{ENDORSEMENT, NULL, OWNER, TestPlatform, rc, restart, started, tpm2b};

/// A command with one password session per entry of `passwords` (after the handles).
pub fn command(cc: u32, handles: &[u32], passwords: &[&[u8]], params: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for h in handles {
        body.extend_from_slice(&h.to_be_bytes());
    }
    let tag: u16 = if passwords.is_empty() { 0x8001 } else { 0x8002 };
    if !passwords.is_empty() {
        let mut area = Vec::new();
        for p in passwords {
            area.extend_from_slice(&0x4000_0009u32.to_be_bytes());
            area.extend_from_slice(&[0, 0, 1]);
            area.extend_from_slice(&tpm2b(p));
        }
        body.extend_from_slice(&(area.len() as u32).to_be_bytes());
        body.extend_from_slice(&area);
    }
    body.extend_from_slice(params);
    let mut c = tag.to_be_bytes().to_vec();
    c.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
    c.extend_from_slice(&cc.to_be_bytes());
    c.extend_from_slice(&body);
    c
}

/// Runs a command; Ok((response handle, parameters)) on success.
pub fn run(
    e: &mut Engine<TestPlatform>,
    cc: u32,
    handles: &[u32],
    passwords: &[&[u8]],
    params: &[u8],
    response_handle: bool,
) -> Result<(u32, Vec<u8>), TpmRc> {
    let r = e.execute(0, &command(cc, handles, passwords, params));
    let code = rc(&r);
    if code != TpmRc::SUCCESS {
        return Err(code);
    }
    let mut rest = &r[10..];
    let mut handle = 0;
    if response_handle {
        handle = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        rest = &rest[4..];
    }
    if !passwords.is_empty() {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..4 + n];
    }
    Ok((handle, rest.to_vec()))
}

/// Splits a TPM2B off the front of `buf`.
pub fn take2b(buf: &mut &[u8]) -> Vec<u8> {
    let n = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    let v = buf[2..2 + n].to_vec();
    *buf = &buf[2 + n..];
    v
}

fn sensitive_create(auth: &[u8], data: &[u8]) -> Vec<u8> {
    let mut inner = tpm2b(auth);
    inner.extend_from_slice(&tpm2b(data));
    tpm2b(&inner)
}

pub fn create_primary(
    e: &mut Engine<TestPlatform>,
    hierarchy: u32,
    template: &[u8],
) -> Result<(u32, Vec<u8>), TpmRc> {
    let mut p = sensitive_create(b"", b"");
    p.extend_from_slice(&tpm2b(template));
    p.extend_from_slice(&tpm2b(b""));
    p.extend_from_slice(&0u32.to_be_bytes());
    let (h, out) = run(e, 0x131, &[hierarchy], &[b""], &p, true)?;
    let mut rest = out.as_slice();
    let _public = take2b(&mut rest);
    let _creation_data = take2b(&mut rest);
    let _creation_hash = take2b(&mut rest);
    rest = &rest[6..];
    let _ticket = take2b(&mut rest);
    let name = take2b(&mut rest);
    assert!(rest.is_empty());
    Ok((h, name))
}

/// Create: (TPM2B_PRIVATE payload, TPM2B_PUBLIC payload).
pub fn create(
    e: &mut Engine<TestPlatform>,
    parent: u32,
    template: &[u8],
    auth: &[u8],
    data: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), TpmRc> {
    let mut p = sensitive_create(auth, data);
    p.extend_from_slice(&tpm2b(template));
    p.extend_from_slice(&tpm2b(b""));
    p.extend_from_slice(&0u32.to_be_bytes());
    let (_, out) = run(e, 0x153, &[parent], &[b""], &p, false)?;
    let mut rest = out.as_slice();
    let private = take2b(&mut rest);
    let public = take2b(&mut rest);
    Ok((private, public))
}

pub fn load(
    e: &mut Engine<TestPlatform>,
    parent: u32,
    private: &[u8],
    public: &[u8],
) -> Result<(u32, Vec<u8>), TpmRc> {
    let mut p = tpm2b(private);
    p.extend_from_slice(&tpm2b(public));
    let (h, out) = run(e, 0x157, &[parent], &[b""], &p, true)?;
    let mut rest = out.as_slice();
    Ok((h, take2b(&mut rest)))
}

pub fn read_public(e: &mut Engine<TestPlatform>, h: Handle) -> Result<(Vec<u8>, Vec<u8>), TpmRc> {
    let (_, out) = run(e, 0x173, &[h.0], &[], &[], false)?;
    let mut rest = out.as_slice();
    let public = take2b(&mut rest);
    let name = take2b(&mut rest);
    Ok((public, name))
}

pub fn flush(e: &mut Engine<TestPlatform>, h: u32) {
    run(e, 0x165, &[], &[], &h.to_be_bytes(), false).expect("flush");
}

pub fn unseal(e: &mut Engine<TestPlatform>, h: u32, pw: &[u8]) -> Result<Vec<u8>, TpmRc> {
    let (_, out) = run(e, 0x15E, &[h], &[pw], &[], false)?;
    let mut rest = out.as_slice();
    Ok(take2b(&mut rest))
}

pub fn context_save(e: &mut Engine<TestPlatform>, h: u32) -> Result<Vec<u8>, TpmRc> {
    run(e, 0x162, &[h], &[], &[], false).map(|(_, out)| out)
}

pub fn context_load(e: &mut Engine<TestPlatform>, saved: &[u8]) -> Result<u32, TpmRc> {
    run(e, 0x161, &[], &[], saved, true).map(|(h, _)| h)
}

pub fn evict(
    e: &mut Engine<TestPlatform>,
    auth: u32,
    object: u32,
    persistent: u32,
) -> Result<(), TpmRc> {
    run(
        e,
        0x120,
        &[auth, object],
        &[b""],
        &persistent.to_be_bytes(),
        false,
    )
    .map(|_| ())
}

const SRK_ATTRS: u32 = 0x0003_0072;
const SIGN_ATTRS: u32 = 0x0004_0072;

/// tpm2-tss SRK: RSA 2048, AES-128-CFB, restricted decrypt.
pub fn srk_rsa_template() -> Vec<u8> {
    let mut t = vec![0, 1, 0, 0x0b];
    t.extend_from_slice(&SRK_ATTRS.to_be_bytes());
    t.extend_from_slice(&[
        0, 0, 0, 6, 0, 0x80, 0, 0x43, 0, 0x10, 0x08, 0x00, 0, 0, 0, 0, 0, 0,
    ]);
    t
}

/// tpm2-tss ECC SRK: P-256, AES-128-CFB.
pub fn srk_ecc_template() -> Vec<u8> {
    let mut t = vec![0, 0x23, 0, 0x0b];
    t.extend_from_slice(&SRK_ATTRS.to_be_bytes());
    t.extend_from_slice(&[
        0, 0, 0, 6, 0, 0x80, 0, 0x43, 0, 0x10, 0, 3, 0, 0x10, 0, 0, 0, 0,
    ]);
    t
}

/// RSA 1024 signing key (small for debug-build speed), scheme chosen at Sign time.
pub fn rsa_sign_template() -> Vec<u8> {
    let mut t = vec![0, 1, 0, 0x0b];
    t.extend_from_slice(&SIGN_ATTRS.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0x10, 0, 0x10, 0x04, 0x00, 0, 0, 0, 0, 0, 0]);
    t
}

/// ECC P-256 ECDSA-SHA256 signing key.
pub fn ecc_sign_template() -> Vec<u8> {
    let mut t = vec![0, 0x23, 0, 0x0b];
    t.extend_from_slice(&SIGN_ATTRS.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0x10, 0, 0x18, 0, 0x0b, 0, 3, 0, 0x10, 0, 0, 0, 0]);
    t
}

/// A sealed data object (KEYEDHASH, no scheme, userWithAuth).
pub fn sealed_template() -> Vec<u8> {
    let mut t = vec![0, 8, 0, 0x0b];
    t.extend_from_slice(&0x0000_0052u32.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0x10, 0, 0]);
    t
}
