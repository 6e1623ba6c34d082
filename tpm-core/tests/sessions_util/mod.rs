//! Shared helpers of the `sessions_*`, `nv_*` and `policy_*` engine tests: a deterministic
//! platform, and a small client that does what tpm2-tss ESYS does with HMAC and policy
//! sessions (cpHash, command HMAC, response HMAC check, nonce rolling, parameter encryption),
//! written from Part 1, 19.6 independently of the engine's session code.

#![allow(dead_code)]

use ukvtpm_tpm_core::crypto::hash::HashAlg;
use ukvtpm_tpm_core::crypto::kdf;
use ukvtpm_tpm_core::{Engine, TpmRc};

#[path = "../common/mod.rs"]
mod common;
// Not every test binary uses every shared helper.
#[allow(unused_imports)]
pub use common::{LOCKOUT, NULL, OWNER, PLATFORM, PW, TestPlatform, rc, restart, started, tpm2b};

pub mod cc {
    pub const NV_UNDEFINE_SPACE_SPECIAL: u32 = 0x11F;
    pub const NV_UNDEFINE_SPACE: u32 = 0x122;
    pub const NV_DEFINE_SPACE: u32 = 0x12A;
    pub const NV_INCREMENT: u32 = 0x134;
    pub const NV_EXTEND: u32 = 0x136;
    pub const NV_WRITE: u32 = 0x137;
    pub const NV_WRITE_LOCK: u32 = 0x138;
    pub const DA_LOCK_RESET: u32 = 0x139;
    pub const NV_SET_BITS: u32 = 0x135;
    pub const NV_CHANGE_AUTH: u32 = 0x13B;
    pub const NV_READ: u32 = 0x14E;
    pub const NV_READ_LOCK: u32 = 0x14F;
    pub const POLICY_SECRET: u32 = 0x151;
    pub const FLUSH_CONTEXT: u32 = 0x165;
    pub const NV_READ_PUBLIC: u32 = 0x169;
    pub const POLICY_AUTH_VALUE: u32 = 0x16B;
    pub const POLICY_COMMAND_CODE: u32 = 0x16C;
    pub const POLICY_OR: u32 = 0x171;
    pub const START_AUTH_SESSION: u32 = 0x176;
    pub const GET_RANDOM: u32 = 0x17B;
    pub const POLICY_PCR: u32 = 0x17F;
    pub const PCR_EXTEND: u32 = 0x182;
    pub const POLICY_RESTART: u32 = 0x180;
    pub const POLICY_GET_DIGEST: u32 = 0x189;
    pub const POLICY_PASSWORD: u32 = 0x18C;
    pub const POLICY_NV_WRITTEN: u32 = 0x18F;
}

pub fn u32b(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// Frames a command: handles, optional authorization area, parameters.
pub fn frame(cc: u32, handles: &[u32], auth: Option<&[u8]>, params: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for h in handles {
        body.extend_from_slice(&h.to_be_bytes());
    }
    if let Some(a) = auth {
        body.extend_from_slice(&(a.len() as u32).to_be_bytes());
        body.extend_from_slice(a);
    }
    body.extend_from_slice(params);
    let tag: u16 = if auth.is_some() { 0x8002 } else { 0x8001 };
    let mut c = tag.to_be_bytes().to_vec();
    c.extend_from_slice(&((body.len() + 10) as u32).to_be_bytes());
    c.extend_from_slice(&cc.to_be_bytes());
    c.extend_from_slice(&body);
    c
}

/// A password session entry.
pub fn pw(password: &[u8]) -> Vec<u8> {
    let mut v = u32b(PW).to_vec();
    v.extend_from_slice(&[0, 0, 1]);
    v.extend_from_slice(&tpm2b(password));
    v
}

/// Runs a command with password sessions and no further checks; returns the response.
pub fn run_pw(
    e: &mut Engine<TestPlatform>,
    cc: u32,
    handles: &[u32],
    passwords: &[&[u8]],
    params: &[u8],
) -> Vec<u8> {
    let area: Vec<u8> = passwords.iter().flat_map(|p| pw(p)).collect();
    let auth = if passwords.is_empty() {
        None
    } else {
        Some(area.as_slice())
    };
    e.execute(0, &frame(cc, handles, auth, params))
}

/// Parameter area of a successful response (after the handle when `has_handle`).
pub fn resp_params(resp: &[u8], has_handle: bool, sessions: bool) -> Vec<u8> {
    let mut at = 10 + if has_handle { 4 } else { 0 };
    if sessions {
        let n = u32::from_be_bytes(resp[at..at + 4].try_into().unwrap()) as usize;
        at += 4;
        return resp[at..at + n].to_vec();
    }
    resp[at..].to_vec()
}

/// Client view of an HMAC or policy session.
#[derive(Clone, Debug)]
pub struct ClientSession {
    pub handle: u32,
    pub alg: HashAlg,
    pub session_key: Vec<u8>,
    pub nonce_tpm: Vec<u8>,
    pub nonce_caller: Vec<u8>,
    /// Symmetric: (alg, key bits) with alg 0x6 AES-CFB, 0xA XOR (key bits = hash), 0x10 NULL.
    pub sym: (u16, u16),
    /// Bound entity auth (the client skips the authValue for the bound entity).
    pub bound_to: Option<(u32, Vec<u8>)>,
}

pub const SE_HMAC: u8 = 0;
pub const SE_POLICY: u8 = 1;
pub const SE_TRIAL: u8 = 3;

/// StartAuthSession, unsalted; `bind` with its authValue.
pub fn start_session(
    e: &mut Engine<TestPlatform>,
    kind: u8,
    sym: (u16, u16),
    bind: Option<(u32, &[u8])>,
) -> ClientSession {
    let alg = HashAlg::Sha256;
    let nonce_caller: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(3).wrapping_add(1))
        .collect();
    let mut p = tpm2b(&nonce_caller);
    p.extend_from_slice(&tpm2b(&[]));
    p.push(kind);
    p.extend_from_slice(&sym.0.to_be_bytes());
    match sym.0 {
        0x0006 => {
            p.extend_from_slice(&sym.1.to_be_bytes());
            p.extend_from_slice(&0x0043u16.to_be_bytes());
        }
        0x000A => p.extend_from_slice(&sym.1.to_be_bytes()),
        _ => {}
    }
    p.extend_from_slice(&0x000Bu16.to_be_bytes());
    let bind_h = bind.map_or(NULL, |b| b.0);
    let r = e.execute(0, &frame(cc::START_AUTH_SESSION, &[NULL, bind_h], None, &p));
    assert_eq!(rc(&r), TpmRc::SUCCESS, "StartAuthSession");
    let handle = u32::from_be_bytes(r[10..14].try_into().unwrap());
    let n = u16::from_be_bytes([r[14], r[15]]) as usize;
    let nonce_tpm = r[16..16 + n].to_vec();
    let session_key = match bind {
        Some((_, auth)) => kdf::kdfa(alg, auth, b"ATH", &nonce_tpm, &nonce_caller, 256),
        None => Vec::new(),
    };
    ClientSession {
        handle,
        alg,
        session_key,
        nonce_tpm,
        nonce_caller,
        sym,
        bound_to: bind.map(|(h, a)| (h, a.to_vec())),
    }
}

/// How one session takes part in a command.
pub struct Use<'a> {
    pub session: &'a mut ClientSession,
    pub attrs: u8,
    /// The authorized entity's authValue (None: not an authorization session, or policy
    /// without PolicyAuthValue).
    pub auth: Option<Vec<u8>>,
    /// PolicyPassword: send the password in the clear.
    pub password: bool,
}

pub const CONTINUE: u8 = 0x01;
pub const DECRYPT: u8 = 0x20;
pub const ENCRYPT: u8 = 0x40;

fn crypt(
    s: &ClientSession,
    key: &[u8],
    newer: &[u8],
    older: &[u8],
    decrypt: bool,
    data: &mut [u8],
) {
    match s.sym.0 {
        0x000A => {
            let mask = kdf::kdfa(
                HashAlg::Sha256,
                key,
                b"XOR",
                newer,
                older,
                (data.len() * 8) as u32,
            );
            for (d, m) in data.iter_mut().zip(mask) {
                *d ^= m;
            }
        }
        0x0006 => {
            use aes::cipher::KeyIvInit;
            let kb = s.sym.1 as usize / 8;
            let m = kdf::kdfa(s.alg, key, b"CFB", newer, older, (kb * 8 + 128) as u32);
            let (k, iv) = m.split_at(kb);
            if decrypt {
                cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(k, iv)
                    .unwrap()
                    .decrypt(data);
            } else {
                cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(k, iv)
                    .unwrap()
                    .encrypt(data);
            }
        }
        _ => panic!("no symmetric"),
    }
}

/// Sends a command with the given sessions (password sessions as `Err(password)`),
/// encrypting the first parameter and checking response HMACs; returns (rc, response
/// parameters decrypted).
pub fn run(
    e: &mut Engine<TestPlatform>,
    cc: u32,
    handles: &[u32],
    names: &[Vec<u8>],
    sessions: &mut [Result<Use<'_>, Vec<u8>>],
    params: &[u8],
    response_handle: bool,
) -> (TpmRc, Vec<u8>) {
    let mut params = params.to_vec();
    // Fresh caller nonces.
    for (i, s) in sessions.iter_mut().enumerate() {
        if let Ok(u) = s {
            u.session.nonce_caller = (0..32u8)
                .map(|j| j ^ (i as u8 * 17) ^ u.session.nonce_tpm[0])
                .collect();
        }
    }
    // Parameter encryption of the first TPM2B.
    for s in sessions.iter() {
        if let Ok(u) = s
            && u.attrs & DECRYPT != 0
        {
            let mut key = u.session.session_key.clone();
            if let Some(a) = &u.auth {
                key.extend_from_slice(a);
            }
            let n = u16::from_be_bytes([params[0], params[1]]) as usize;
            crypt(
                u.session,
                &key,
                &u.session.nonce_caller,
                &u.session.nonce_tpm,
                false,
                &mut params[2..2 + n],
            );
        }
    }
    let mut cp = Vec::new();
    cp.extend_from_slice(&cc.to_be_bytes());
    for n in names {
        cp.extend_from_slice(n);
    }
    cp.extend_from_slice(&params);
    let cp_hash = HashAlg::Sha256.digest(&[&cp]);
    let mut area = Vec::new();
    for s in sessions.iter() {
        match s {
            Err(pwd) => area.extend_from_slice(&pw(pwd)),
            Ok(u) => {
                let hmac = if u.password {
                    u.auth.clone().unwrap_or_default()
                } else {
                    let mut key = u.session.session_key.clone();
                    if let Some(a) = &u.auth {
                        key.extend_from_slice(a);
                    }
                    kdf::hmac(
                        u.session.alg,
                        &key,
                        &[
                            &cp_hash,
                            &u.session.nonce_caller,
                            &u.session.nonce_tpm,
                            &[u.attrs],
                        ],
                    )
                };
                area.extend_from_slice(&u32b(u.session.handle));
                area.extend_from_slice(&tpm2b(&u.session.nonce_caller));
                area.push(u.attrs);
                area.extend_from_slice(&tpm2b(&hmac));
            }
        }
    }
    let r = e.execute(0, &frame(cc, handles, Some(&area), &params));
    let code = rc(&r);
    if code != TpmRc::SUCCESS {
        return (code, Vec::new());
    }
    let mut at = 10 + if response_handle { 4 } else { 0 };
    let psize = u32::from_be_bytes(r[at..at + 4].try_into().unwrap()) as usize;
    at += 4;
    let mut rparams = r[at..at + psize].to_vec();
    at += psize;
    let rp_hash = HashAlg::Sha256.digest(&[&0u32.to_be_bytes(), &cc.to_be_bytes(), &rparams]);
    for s in sessions.iter_mut() {
        let n = u16::from_be_bytes([r[at], r[at + 1]]) as usize;
        let nonce = r[at + 2..at + 2 + n].to_vec();
        at += 2 + n;
        let attrs = r[at];
        at += 1;
        let m = u16::from_be_bytes([r[at], r[at + 1]]) as usize;
        let hmac = r[at + 2..at + 2 + m].to_vec();
        at += 2 + m;
        if let Ok(u) = s {
            u.session.nonce_tpm = nonce;
            if !u.password {
                let mut key = u.session.session_key.clone();
                if let Some(a) = &u.auth {
                    key.extend_from_slice(a);
                }
                let expected = kdf::hmac(
                    u.session.alg,
                    &key,
                    &[
                        &rp_hash,
                        &u.session.nonce_tpm,
                        &u.session.nonce_caller,
                        &[attrs],
                    ],
                );
                assert_eq!(hmac, expected, "response HMAC of cc {cc:#x}");
            }
        }
    }
    for s in sessions.iter() {
        if let Ok(u) = s
            && u.attrs & ENCRYPT != 0
        {
            let mut key = u.session.session_key.clone();
            if let Some(a) = &u.auth {
                key.extend_from_slice(a);
            }
            let n = u16::from_be_bytes([rparams[0], rparams[1]]) as usize;
            crypt(
                u.session,
                &key,
                &u.session.nonce_tpm,
                &u.session.nonce_caller,
                true,
                &mut rparams[2..2 + n],
            );
        }
    }
    (code, rparams)
}

/// TPM2B_NV_PUBLIC for an index.
pub fn nv_public(index: u32, attributes: u32, policy: &[u8], size: u16) -> Vec<u8> {
    let mut p = index.to_be_bytes().to_vec();
    p.extend_from_slice(&0x000Bu16.to_be_bytes());
    p.extend_from_slice(&attributes.to_be_bytes());
    p.extend_from_slice(&tpm2b(policy));
    p.extend_from_slice(&size.to_be_bytes());
    tpm2b(&p)
}

/// Name of an NV index as the TPM computes it.
pub fn nv_name(index: u32, attributes: u32, policy: &[u8], size: u16) -> Vec<u8> {
    let public = nv_public(index, attributes, policy, size);
    let mut n = 0x000Bu16.to_be_bytes().to_vec();
    n.extend_from_slice(&HashAlg::Sha256.digest(&[&public[2..]]));
    n
}

pub mod nva {
    pub const PPWRITE: u32 = 1 << 0;
    pub const OWNERWRITE: u32 = 1 << 1;
    pub const AUTHWRITE: u32 = 1 << 2;
    pub const POLICYWRITE: u32 = 1 << 3;
    pub const COUNTER: u32 = 1 << 4;
    pub const BITS: u32 = 2 << 4;
    pub const EXTEND: u32 = 4 << 4;
    pub const POLICY_DELETE: u32 = 1 << 10;
    pub const WRITELOCKED: u32 = 1 << 11;
    pub const WRITEALL: u32 = 1 << 12;
    pub const WRITEDEFINE: u32 = 1 << 13;
    pub const WRITE_STCLEAR: u32 = 1 << 14;
    pub const GLOBALLOCK: u32 = 1 << 15;
    pub const PPREAD: u32 = 1 << 16;
    pub const OWNERREAD: u32 = 1 << 17;
    pub const AUTHREAD: u32 = 1 << 18;
    pub const POLICYREAD: u32 = 1 << 19;
    pub const NO_DA: u32 = 1 << 25;
    pub const CLEAR_STCLEAR: u32 = 1 << 27;
    pub const WRITTEN: u32 = 1 << 29;
    pub const PLATFORMCREATE: u32 = 1 << 30;
    pub const READ_STCLEAR: u32 = 1 << 31;
}
