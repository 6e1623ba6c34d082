//! HMAC and policy session processing for one command (Part 1, 19.6 "Session-Based
//! Authorizations", 19.7 "Policy Authorization", 21 "Session-based encryption"), in the order of
//! the reference implementation's ParseSessionBuffer / BuildResponseSession:
//!
//! 1. [`process`]: consistency checks of every session (encrypt/decrypt/audit attributes,
//!    trial sessions, DA binding), then the HMAC or policy check of each one (password
//!    sessions are checked by [`crate::auth`]);
//! 2. [`decrypt_first_param`]: the first command parameter is decrypted for the handler;
//! 3. [`respond`]: nonces roll, the first response parameter is encrypted, audit digests are
//!    extended, response HMACs are computed and sessions without continueSession are flushed.

use alloc::vec::Vec;

use crate::auth::{self, AuthRole, SessionIn, attr};
use crate::commands::{CommandDef, cc};
use crate::context::Ctx;
use crate::crypto::hash::HashAlg;
use crate::crypto::kdf;
use crate::handle::{Handle, HandleType};
use crate::marshal::Writer;
use crate::rc::{TpmRc, TpmResult};
use crate::state::AuthValue;
use crate::state::nv;
use crate::state::sessions::{CpHashKind, Session, SessionKind};

/// TPM_ALG_ID values used by session symmetric definitions.
pub const ALG_AES: u16 = 0x0006;
pub const ALG_XOR: u16 = 0x000A;
pub const ALG_NULL: u16 = 0x0010;
pub const ALG_CFB: u16 = 0x0043;

/// One session of the command being executed.
#[derive(Debug, Clone)]
struct Entry {
    handle: Handle,
    nonce_caller: Vec<u8>,
    attributes: u8,
    /// The HMAC (or, for PolicyPassword, the password) the caller sent.
    hmac: Vec<u8>,
    /// Handle this session authorizes, if any.
    associated: Option<Handle>,
    /// The entity's authValue is part of the HMAC key.
    include_auth: bool,
}

/// Per-command session bookkeeping carried from authorization to the response.
#[derive(Debug, Default)]
pub struct CommandSessions {
    entries: Vec<Entry>,
    decrypt: Option<usize>,
    encrypt: Option<usize>,
    audit: Option<usize>,
    cc: u32,
    /// cpHash per session hash algorithm.
    cp_hashes: Vec<(HashAlg, Vec<u8>)>,
}

impl CommandSessions {
    /// True when at least one HMAC or policy session is present.
    pub fn any(&self) -> bool {
        self.entries.iter().any(|e| e.handle != Handle::PASSWORD)
    }
}

/// Commands whose first parameter is a TPM2B and may be encrypted by the caller
/// (Part 3 command tables, "Decrypt" column).
const DECRYPT_CCS: &[u32] = &[
    0x129, 0x12A, 0x12C, 0x12E, 0x12F, 0x131, 0x133, 0x136, 0x137, 0x13B, 0x13C, 0x13E, 0x141,
    0x146, 0x147, 0x148, 0x149, 0x14A, 0x14B, 0x14C, 0x14D, 0x150, 0x151, 0x152, 0x153, 0x154,
    0x156, 0x157, 0x158, 0x159, 0x15C, 0x15D, 0x160, 0x167, 0x168, 0x16A, 0x16D, 0x16E, 0x170,
    0x172, 0x174, 0x176, 0x177, 0x17D, 0x17F, 0x183, 0x184, 0x185, 0x186, 0x188, 0x18B, 0x18D,
    0x190, 0x191, 0x193, 0x195, 0x196, 0x197, 0x199, 0x19A, 0x19B, 0x19C, 0x19D, 0x19F, 0x1A1,
];

/// Commands whose first response parameter is a TPM2B the TPM may encrypt ("Encrypt" column).
const ENCRYPT_CCS: &[u32] = &[
    0x131, 0x133, 0x13E, 0x147, 0x148, 0x14A, 0x14B, 0x14C, 0x14D, 0x14E, 0x150, 0x151, 0x152,
    0x153, 0x154, 0x156, 0x157, 0x158, 0x159, 0x15E, 0x160, 0x163, 0x164, 0x167, 0x168, 0x169,
    0x173, 0x174, 0x176, 0x179, 0x17B, 0x17C, 0x17D, 0x184, 0x189, 0x18B, 0x18D, 0x18E, 0x191,
    0x193, 0x197, 0x199, 0x19A, 0x19E,
];

/// NV commands that "write" for the AUTHWRITE/AUTHREAD availability rule (reference
/// IsWriteOperation).
fn is_nv_write(cc: u32) -> bool {
    matches!(
        cc,
        cc::NV_WRITE | cc::NV_INCREMENT | cc::NV_SET_BITS | cc::NV_EXTEND | cc::NV_WRITE_LOCK
    )
}

// ---------------------------------------------------------------------------------------------
// Entities: names, authValues, policies (Part 1, 16 "Names"; 19.6.4).

/// The Name of the entity `h` (Part 1, 16): the handle for PCRs, permanent handles and
/// sessions; nameAlg || H(public) for NV indices and objects.
pub fn entity_name(ctx: &Ctx<'_>, h: Handle) -> Vec<u8> {
    match h.kind() {
        HandleType::NvIndex => match ctx.ps().nv.get(h) {
            Some(ix) => ix.name(),
            None => h.0.to_be_bytes().to_vec(),
        },
        HandleType::Transient | HandleType::Persistent => {
            object_name(ctx, h).unwrap_or_else(|| h.0.to_be_bytes().to_vec())
        }
        _ => h.0.to_be_bytes().to_vec(),
    }
}

/// The authValue of `h`, or empty when the entity is gone (e.g. UndefineSpaceSpecial deleted
/// it during the command).
pub fn entity_auth(ctx: &Ctx<'_>, h: Handle) -> AuthValue {
    auth::auth_value(ctx, h).unwrap_or_default()
}

/// authPolicy of `h` and its hash algorithm (reference EntityGetAuthPolicy); `None` when
/// the entity has no policy.
pub fn entity_policy(ctx: &Ctx<'_>, h: Handle) -> Option<(HashAlg, Vec<u8>)> {
    let ps = ctx.ps();
    let from = |p: &crate::state::PolicyDigest| {
        let alg = HashAlg::from_alg_id(p.alg)?;
        if p.digest.is_empty() {
            None
        } else {
            Some((alg, p.digest.clone()))
        }
    };
    match h {
        Handle::OWNER => from(&ps.owner_policy),
        Handle::ENDORSEMENT => from(&ps.endorsement_policy),
        Handle::LOCKOUT => from(&ps.lockout_policy),
        Handle::PLATFORM => from(&ctx.tpm.vs.platform_policy),
        h if h.kind() == HandleType::Pcr => match h.pcr_index() {
            Some(i) if crate::state::pcr::in_pcr_group(i) => from(&ps.pcr_policy),
            _ => None,
        },
        h if h.kind() == HandleType::NvIndex => {
            let ix = ps.nv.get(h)?;
            if ix.auth_policy.is_empty() {
                None
            } else {
                Some((ix.name_alg, ix.auth_policy.clone()))
            }
        }
        h if matches!(h.kind(), HandleType::Transient | HandleType::Persistent) => {
            object_policy(ctx, h)
        }
        _ => None,
    }
}

// Objects (transient and persistent) are the keys work's (`crate::entity`).

fn object_name(ctx: &Ctx<'_>, h: Handle) -> Option<Vec<u8>> {
    crate::entity::name(ctx, h)
}

fn object_policy(ctx: &Ctx<'_>, h: Handle) -> Option<(HashAlg, Vec<u8>)> {
    let (alg, digest) = crate::entity::auth_policy(ctx, h)?;
    if digest.is_empty() {
        return None;
    }
    Some((HashAlg::from_alg_id(alg)?, digest))
}

fn object_admin_with_policy(ctx: &Ctx<'_>, h: Handle) -> bool {
    crate::entity::attributes(ctx, h)
        .is_some_and(|a| a & crate::object::attr::ADMIN_WITH_POLICY != 0)
}

fn object_auth_value_available(ctx: &Ctx<'_>, h: Handle, role: AuthRole) -> bool {
    crate::entity::check_role(ctx, h, role, false).is_ok()
}

/// Decrypts the salt of a salted session with `tpm_key` (Part 1, 24 "Secret sharing" and
/// Part 3, 11.1; reference CryptSecretDecrypt): RSA-OAEP with the key's nameAlg and label
/// "SECRET", or ECDH with an ephemeral point and KDFe(nameAlg, Z, "SECRET", Qe.x, Qs.x).
/// A key that cannot decrypt is TPM_RC_KEY/ATTRIBUTES on tpmKey; a bad secret is
/// TPM_RC_VALUE on encryptedSalt.
pub fn decrypt_salt(ctx: &mut Ctx<'_>, tpm_key: Handle, secret: &[u8]) -> TpmResult<Vec<u8>> {
    use crate::crypto::ecc::{self, Point};
    use crate::crypto::rng::FillRng;
    use crate::crypto::rsa_ops::{self, Padding};
    use crate::object::Key;

    let key = crate::entity::object(ctx, tpm_key).map_err(|rc| rc.handle(1))?;
    if !key.has_private() {
        return Err(TpmRc::HANDLE.handle(1));
    }
    if !key.public.has(crate::object::attr::DECRYPT) {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    let alg = key.name_alg();
    let bad = TpmRc::VALUE.param(2);
    match &key.key {
        Key::RsaPrivate(k) => {
            let mut fill = |b: &mut [u8]| ctx.random(b);
            let mut rng = FillRng(&mut fill);
            let salt = rsa_ops::decrypt(&mut rng, k, Padding::Oaep(alg), b"SECRET", secret)
                .map_err(|_| bad)?;
            if salt.len() > alg.digest_size() {
                return Err(bad);
            }
            Ok(salt)
        }
        Key::Ecc {
            curve,
            d: Some(d),
            q,
        } => {
            // TPMS_ECC_POINT: x and y as TPM2Bs.
            let mut r = crate::marshal::Reader::params(secret);
            let x = r
                .raw_tpm2b(crate::crypto::hash::MAX_DIGEST_SIZE)
                .map_err(|_| bad)?;
            let y = r
                .raw_tpm2b(crate::crypto::hash::MAX_DIGEST_SIZE)
                .map_err(|_| bad)?;
            if !r.remaining().is_empty() {
                return Err(bad);
            }
            let size = curve.size();
            let qe = Point {
                x: ecc::fit(x, size).ok_or(bad)?,
                y: ecc::fit(y, size).ok_or(bad)?,
            };
            let z = ecc::mul(*curve, d, &qe).map_err(|_| bad)?;
            // The x-coordinates exactly as marshalled, not padded (see
            // `object::protect::recover_secret`).
            Ok(kdf::kdfe(
                alg,
                &z.x,
                b"SECRET",
                x,
                crate::object::protect::public_x(&key, q),
                (alg.digest_size() * 8) as u32,
            ))
        }
        _ => Err(TpmRc::KEY.handle(1)),
    }
}

/// Bind value of an entity: Name || authValue (reference SessionComputeBoundEntity, without
/// the XOR folding, which only matters for fixed-size storage).
pub fn bind_value(ctx: &Ctx<'_>, h: Handle) -> Vec<u8> {
    let mut v = entity_name(ctx, h);
    v.extend_from_slice(entity_auth(ctx, h).as_bytes());
    v
}

// ---------------------------------------------------------------------------------------------
// Command side.

fn cp_hash(
    ctx: &Ctx<'_>,
    cs: &mut CommandSessions,
    alg: HashAlg,
    handles: &[Handle],
    params: &[u8],
) -> Vec<u8> {
    if let Some((_, d)) = cs.cp_hashes.iter().find(|(a, _)| *a == alg) {
        return d.clone();
    }
    let mut h = alg.hasher();
    h.update(&cs.cc.to_be_bytes());
    for &handle in handles {
        h.update(&entity_name(ctx, handle));
    }
    h.update(params);
    let d = h.finish();
    cs.cp_hashes.push((alg, d.clone()));
    d
}

/// Checks the HMAC and policy sessions of a command whose password sessions `auth` has
/// already accepted. `params` is the parameter area as sent (still encrypted).
pub fn process(
    ctx: &mut Ctx<'_>,
    def: &CommandDef,
    handles: &[Handle],
    sessions: &[SessionIn<'_>],
    params: &[u8],
) -> TpmResult<CommandSessions> {
    let mut cs = CommandSessions {
        cc: def.cc,
        ..CommandSessions::default()
    };
    let auth_slots: Vec<(Handle, AuthRole)> = def
        .handles
        .iter()
        .zip(handles)
        .filter_map(|(slot, h)| slot.auth.map(|role| (*h, role)))
        .collect();
    // Pass 1 (reference RetrieveSessionData): attribute consistency.
    for (i, s) in sessions.iter().enumerate() {
        let n = (i + 1) as u8;
        cs.entries.push(Entry {
            handle: s.handle,
            nonce_caller: s.nonce.to_vec(),
            attributes: s.attributes,
            hmac: s.hmac.to_vec(),
            associated: auth_slots.get(i).map(|(h, _)| *h),
            include_auth: false,
        });
        if s.handle == Handle::PASSWORD {
            continue;
        }
        let Some(sess) = ctx.tpm.vs.sessions.get(s.handle) else {
            return Err(TpmRc(TpmRc::REFERENCE_S0.0 + i as u32));
        };
        let sym_null = sess.symmetric.alg == ALG_NULL;
        if s.attributes & attr::DECRYPT != 0 {
            if !DECRYPT_CCS.contains(&def.cc) || cs.decrypt.is_some() {
                return Err(TpmRc::ATTRIBUTES.session(n));
            }
            if sym_null {
                return Err(TpmRc::SYMMETRIC.session(n));
            }
            cs.decrypt = Some(i);
        }
        if s.attributes & attr::ENCRYPT != 0 {
            if !ENCRYPT_CCS.contains(&def.cc) || cs.encrypt.is_some() {
                return Err(TpmRc::ATTRIBUTES.session(n));
            }
            if sym_null {
                return Err(TpmRc::SYMMETRIC.session(n));
            }
            cs.encrypt = Some(i);
        }
        if s.attributes & attr::AUDIT != 0 {
            if cs.audit.is_some() || s.handle.kind() == HandleType::PolicySession {
                return Err(TpmRc::ATTRIBUTES.session(n));
            }
            cs.audit = Some(i);
        }
    }
    // Pass 2 (reference ParseSessionBuffer): authorization.
    for i in 0..cs.entries.len() {
        let n = (i + 1) as u8;
        let entry = cs.entries[i].clone();
        if entry.handle == Handle::PASSWORD {
            // A password session must authorize a handle (reference ParseSessionBuffer).
            let Some(&(h, role)) = auth_slots.get(i) else {
                return Err(TpmRc::HANDLE.session(n));
            };
            check_password_session(ctx, def.cc, h, role, &entry.hmac)
                .map_err(|rc| rc.session(n))?;
            continue;
        }
        let Some(sess) = ctx.tpm.vs.sessions.get(entry.handle).cloned() else {
            return Err(TpmRc(TpmRc::REFERENCE_S0.0 + i as u32));
        };
        if sess.kind == SessionKind::Trial {
            return Err(TpmRc::ATTRIBUTES.session(n));
        }
        if sess.da_bound {
            let h = if sess.lockout_bound {
                Handle::LOCKOUT
            } else {
                Handle::OWNER
            };
            lockout_check(ctx, h, sess.lockout_bound)?;
        }
        match auth_slots.get(i) {
            Some(&(h, role)) => {
                check_auth_session(ctx, &mut cs, i, &sess, h, role, handles, params)
                    .map_err(|rc| rc.session(n))?;
            }
            None => {
                let usage = attr::AUDIT | attr::ENCRYPT | attr::DECRYPT;
                if entry.attributes & usage == 0 {
                    return Err(TpmRc::ATTRIBUTES.session(n));
                }
                cs.entries[i].include_auth = false;
                check_hmac(ctx, &mut cs, i, &sess, None, handles, params)
                    .map_err(|rc| {
                        if rc == TpmRc::AUTH_FAIL {
                            TpmRc::BAD_AUTH
                        } else {
                            rc
                        }
                    })
                    .map_err(|rc| rc.session(n))?;
            }
        }
    }
    // The audit digest needs cpHash even when no HMAC was computed with it.
    if let Some(i) = cs.audit
        && let Some(alg) = cs
            .entries
            .get(i)
            .and_then(|e| ctx.tpm.vs.sessions.get(e.handle))
            .map(|s| s.alg)
    {
        cp_hash(ctx, &mut cs, alg, handles, params);
    }
    Ok(cs)
}

/// A password authorization (reference CheckAuthSession for TPM_RS_PW).
fn check_password_session(
    ctx: &mut Ctx<'_>,
    cc: u32,
    h: Handle,
    role: AuthRole,
    password: &[u8],
) -> TpmResult<()> {
    if policy_required(ctx, role, h) {
        return Err(TpmRc::AUTH_TYPE);
    }
    if !auth_value_available(ctx, cc, role, h) {
        return Err(TpmRc::AUTH_UNAVAILABLE);
    }
    let result = auth::check_password(ctx, h, password);
    pin_count(ctx, h, result.is_ok());
    result
}

/// PIN indices (Part 2, 13.4 TPM_NT_PIN_FAIL / TPM_NT_PIN_PASS; reference CheckAuthSession):
/// data = pinCount (u32) || pinLimit (u32). A PIN Fail index counts failures and resets on
/// success; a PIN Pass index counts successes. Only written indices count.
fn pin_count(ctx: &mut Ctx<'_>, h: Handle, success: bool) {
    let Some(ix) = ctx.ps().nv.get(h) else {
        return;
    };
    if !ix.has(nv::attr::WRITTEN) {
        return;
    }
    let kind = ix.nv_type();
    let value = ix.u64_value();
    let (count, limit) = ((value >> 32) as u32, value as u32);
    let new = match (kind, success) {
        (nv::NvType::PinFail, false) | (nv::NvType::PinPass, true) => count.saturating_add(1),
        (nv::NvType::PinFail, true) if count != 0 => 0,
        _ => return,
    };
    if let Some(ix) = ctx.ps_mut().nv.get_mut(h) {
        ix.data = ((u64::from(new) << 32) | u64::from(limit))
            .to_be_bytes()
            .to_vec();
    }
}

/// For PIN indices the authValue is usable while pinCount < pinLimit (and once written).
fn pin_available(ix: &nv::NvIndex) -> Option<bool> {
    match ix.nv_type() {
        nv::NvType::PinFail | nv::NvType::PinPass => {
            let v = ix.u64_value();
            Some(ix.has(nv::attr::WRITTEN) && ((v >> 32) as u32) < (v as u32))
        }
        _ => None,
    }
}

/// TPM_RC_LOCKOUT when DA-protected authorization is not possible now.
fn lockout_check(ctx: &mut Ctx<'_>, _h: Handle, lockout: bool) -> TpmResult<()> {
    if lockout {
        auth::check_locked_out(ctx, Handle::LOCKOUT)
    } else {
        // Any DA-protected entity: use a stand-in that is not exempt.
        crate::commands::da::self_heal(ctx);
        let da = &ctx.ps().da;
        if da.failed_tries >= da.max_tries {
            return Err(TpmRc::LOCKOUT);
        }
        Ok(())
    }
}

/// Policy session required for this role and entity (reference IsPolicySessionRequired).
fn policy_required(ctx: &Ctx<'_>, role: AuthRole, h: Handle) -> bool {
    match role {
        AuthRole::Dup => true,
        AuthRole::Admin => match h.kind() {
            HandleType::Transient | HandleType::Persistent => object_admin_with_policy(ctx, h),
            _ => true,
        },
        AuthRole::User => false,
    }
}

/// authValue usable for USER authorization (reference IsAuthValueAvailable).
fn auth_value_available(ctx: &Ctx<'_>, cc: u32, role: AuthRole, h: Handle) -> bool {
    match h.kind() {
        HandleType::NvIndex => match ctx.ps().nv.get(h) {
            Some(ix) if is_nv_write(cc) => ix.has(nv::attr::AUTHWRITE),
            Some(ix) => pin_available(ix).unwrap_or(ix.has(nv::attr::AUTHREAD)),
            None => false,
        },
        HandleType::Transient | HandleType::Persistent => object_auth_value_available(ctx, h, role),
        _ => true,
    }
}

#[allow(clippy::too_many_arguments)]
fn check_auth_session(
    ctx: &mut Ctx<'_>,
    cs: &mut CommandSessions,
    i: usize,
    sess: &Session,
    h: Handle,
    role: AuthRole,
    handles: &[Handle],
    params: &[u8],
) -> TpmResult<()> {
    let include_auth = if sess.is_policy() {
        sess.policy.auth_value_needed || sess.policy.password_needed
    } else {
        sess.bound.as_deref() != Some(&bind_value(ctx, h))
    };
    cs.entries[i].include_auth = include_auth;
    if include_auth && !auth::is_da_exempt(ctx, h) {
        auth::check_locked_out(ctx, h)?;
    }
    if !sess.is_policy() {
        if policy_required(ctx, role, h) {
            return Err(TpmRc::AUTH_TYPE);
        }
        if !auth_value_available(ctx, cs.cc, role, h) {
            return Err(TpmRc::AUTH_UNAVAILABLE);
        }
    } else {
        check_policy(ctx, cs, sess, h, role, handles, params)?;
    }
    if sess.is_policy() && sess.policy.password_needed {
        let password = cs
            .entries
            .get(i)
            .map(|e| e.hmac.clone())
            .unwrap_or_default();
        let ok = entity_auth(ctx, h).matches(&password);
        if include_auth {
            pin_count(ctx, h, ok);
        }
        if ok {
            return Ok(());
        }
        return Err(failure(ctx, sess, h, include_auth));
    }
    let result = match check_hmac(ctx, cs, i, sess, Some(h), handles, params) {
        Ok(()) => Ok(()),
        Err(rc) if rc == TpmRc::AUTH_FAIL => Err(failure(ctx, sess, h, include_auth)),
        Err(rc) => return Err(rc),
    };
    if include_auth {
        pin_count(ctx, h, result.is_ok());
    }
    result
}

/// Reference IncrementLockout for a session: BAD_AUTH unless the failure involved a
/// DA-protected authValue.
fn failure(ctx: &mut Ctx<'_>, sess: &Session, h: Handle, include_auth: bool) -> TpmRc {
    let h = if sess.lockout_bound {
        Handle::LOCKOUT
    } else {
        h
    };
    if !sess.da_bound && (auth::is_da_exempt(ctx, h) || !include_auth) {
        return TpmRc::BAD_AUTH;
    }
    auth::register_auth_failure(ctx, h)
}

/// HMAC key: sessionKey || authValue (when included).
fn hmac_key(ctx: &Ctx<'_>, sess: &Session, associated: Option<Handle>, include: bool) -> Vec<u8> {
    let mut key = sess.session_key.clone();
    if include && let Some(h) = associated {
        key.extend_from_slice(entity_auth(ctx, h).as_bytes());
    }
    key
}

/// Compares the command HMAC (Part 1, 19.6.5; reference ComputeCommandHMAC):
/// HMAC(sessionKey || authValue, cpHash || nonceCaller || nonceTPM [|| nonceTPMdecrypt]
/// [|| nonceTPMencrypt] || sessionAttributes). `AUTH_FAIL` on mismatch.
#[allow(clippy::too_many_arguments)]
fn check_hmac(
    ctx: &Ctx<'_>,
    cs: &mut CommandSessions,
    i: usize,
    sess: &Session,
    associated: Option<Handle>,
    handles: &[Handle],
    params: &[u8],
) -> TpmResult<()> {
    let entry = cs.entries.get(i).cloned().ok_or(TpmRc::FAILURE)?;
    let key = hmac_key(ctx, sess, associated, entry.include_auth);
    if key.is_empty() && entry.hmac.is_empty() {
        return Ok(());
    }
    // The first authorization session also covers the nonces of separate decrypt and encrypt
    // sessions, so that they cannot be removed in transit.
    let mut extra: Vec<Vec<u8>> = Vec::new();
    if i == 0 && associated.is_some() {
        let nonce_of = |j: usize| {
            cs.entries
                .get(j)
                .and_then(|e| ctx.tpm.vs.sessions.get(e.handle))
                .map(|s| s.nonce_tpm.clone())
        };
        if let Some(d) = cs.decrypt.filter(|&d| d != i) {
            extra.extend(nonce_of(d));
        }
        if let Some(e) = cs.encrypt.filter(|&e| e != i && Some(e) != cs.decrypt) {
            extra.extend(nonce_of(e));
        }
    }
    let cp = cp_hash(ctx, cs, sess.alg, handles, params);
    let mut parts: Vec<&[u8]> = alloc::vec![&cp, &entry.nonce_caller, &sess.nonce_tpm];
    for x in &extra {
        parts.push(x);
    }
    let attrs = [entry.attributes];
    parts.push(&attrs);
    let expected = kdf::hmac(sess.alg, &key, &parts);
    use subtle::ConstantTimeEq;
    if expected.len() == entry.hmac.len() && bool::from(expected.ct_eq(&entry.hmac)) {
        Ok(())
    } else {
        Err(TpmRc::AUTH_FAIL)
    }
}

/// Policy session checks at authorization (Part 1, 19.7.1; reference CheckPolicyAuthSession).
fn check_policy(
    ctx: &Ctx<'_>,
    cs: &mut CommandSessions,
    sess: &Session,
    h: Handle,
    role: AuthRole,
    handles: &[Handle],
    params: &[u8],
) -> TpmResult<()> {
    // Reference IsAuthPolicyAvailable: objects always offer their policy (an empty one then
    // fails the comparison below); NV indices only a non-empty one, for reads/writes only
    // with POLICYREAD/POLICYWRITE (ADMIN/DUP roles always); hierarchies a non-empty one.
    let (alg, policy) = match h.kind() {
        HandleType::Transient | HandleType::Persistent if crate::entity::is_object(ctx, h) => {
            let (alg, digest) =
                crate::entity::auth_policy(ctx, h).ok_or(TpmRc::AUTH_UNAVAILABLE)?;
            (HashAlg::from_alg_id(alg), digest)
        }
        HandleType::NvIndex => {
            let ix = ctx.ps().nv.get(h).ok_or(TpmRc::AUTH_UNAVAILABLE)?;
            let ok = !ix.auth_policy.is_empty()
                && match role {
                    AuthRole::Admin | AuthRole::Dup => true,
                    AuthRole::User if is_nv_write(cs.cc) => ix.has(nv::attr::POLICYWRITE),
                    AuthRole::User => ix.has(nv::attr::POLICYREAD),
                };
            if !ok {
                return Err(TpmRc::AUTH_UNAVAILABLE);
            }
            (Some(ix.name_alg), ix.auth_policy.clone())
        }
        _ => {
            let (alg, digest) = entity_policy(ctx, h).ok_or(TpmRc::AUTH_UNAVAILABLE)?;
            (Some(alg), digest)
        }
    };
    if cs.cc == cc::POLICY_SECRET && !sess.policy.password_needed && !sess.policy.auth_value_needed
    {
        return Err(TpmRc::MODE);
    }
    if let Some(counter) = sess.policy.pcr_counter
        && counter != ctx.tpm.vs.pcr_update_counter
    {
        return Err(TpmRc::PCR_CHANGED);
    }
    use subtle::ConstantTimeEq;
    if policy.len() != sess.policy_digest.len()
        || !bool::from(policy.ct_eq(&sess.policy_digest))
        || alg != Some(sess.alg)
    {
        return Err(TpmRc::POLICY_FAIL);
    }
    if sess.policy.timeout_ms != 0 && ctx.time() > sess.policy.timeout_ms {
        return Err(TpmRc::EXPIRED);
    }
    match sess.policy.command_code {
        Some(code) if code != cs.cc => return Err(TpmRc::POLICY_CC),
        None if matches!(role, AuthRole::Admin | AuthRole::Dup) => {
            return Err(TpmRc::POLICY_FAIL);
        }
        _ => {}
    }
    let loc = sess.policy.locality;
    if loc != 0 {
        let ok = if ctx.locality < 5 {
            loc <= 31 && loc & (1 << ctx.locality) != 0
        } else {
            loc == ctx.locality
        };
        if !ok {
            return Err(TpmRc::LOCALITY);
        }
    }
    // No physical-presence signal exists on this platform (as on swtpm): a policy that
    // requires it cannot be satisfied.
    if sess.policy.pp_required {
        return Err(TpmRc::PP);
    }
    if let Some((kind, digest)) = &sess.policy.cp_hash {
        let ok = match kind {
            CpHashKind::CpHash => cp_hash(ctx, cs, sess.alg, handles, params) == *digest,
            CpHashKind::NameHash => {
                let mut hs = sess.alg.hasher();
                for &handle in handles {
                    hs.update(&entity_name(ctx, handle));
                }
                hs.finish() == *digest
            }
            CpHashKind::Template => template_hash(cs.cc, sess.alg, params).as_ref() == Some(digest),
        };
        if !ok {
            return Err(TpmRc::POLICY_FAIL);
        }
    }
    if let Some(written) = sess.policy.nv_written {
        let Some(ix) = ctx.ps().nv.get(h) else {
            return Err(TpmRc::POLICY_FAIL);
        };
        if ix.has(nv::attr::WRITTEN) != written {
            return Err(TpmRc::POLICY_FAIL);
        }
    }
    Ok(())
}

/// Hash of the inPublic template of Create/CreatePrimary/CreateLoaded (the second parameter,
/// after inSensitive), for PolicyTemplate.
fn template_hash(code: u32, alg: HashAlg, params: &[u8]) -> Option<Vec<u8>> {
    if !matches!(code, cc::CREATE | cc::CREATE_PRIMARY | cc::CREATE_LOADED) {
        return None;
    }
    let size = usize::from(u16::from_be_bytes([*params.first()?, *params.get(1)?]));
    let rest = params.get(2 + size..)?;
    let tsize = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    let template = rest.get(2..2 + tsize)?;
    Some(alg.digest(&[template]))
}

// ---------------------------------------------------------------------------------------------
// Parameter encryption (Part 1, 21).

/// Encrypts (`decrypt == false`) or decrypts `data` in place with the session's symmetric
/// algorithm: AES-CFB keyed by KDFa(.., "CFB", nonceNewer, nonceOlder) or the XOR
/// obfuscation mask KDFa(.., "XOR", nonceNewer, nonceOlder).
pub fn param_crypt(
    sess: &Session,
    key: &[u8],
    nonce_newer: &[u8],
    nonce_older: &[u8],
    decrypt: bool,
    data: &mut [u8],
) -> TpmResult<()> {
    match sess.symmetric.alg {
        ALG_XOR => {
            let alg = HashAlg::from_alg_id(sess.symmetric.key_bits).ok_or(TpmRc::HASH)?;
            let bits = u32::try_from(data.len().saturating_mul(8)).map_err(|_| TpmRc::SIZE)?;
            let mask = kdf::kdfa(alg, key, b"XOR", nonce_newer, nonce_older, bits);
            for (d, m) in data.iter_mut().zip(mask.iter()) {
                *d ^= m;
            }
            Ok(())
        }
        ALG_AES => {
            let key_bits = u32::from(sess.symmetric.key_bits);
            let kb = key_bits as usize / 8;
            let material = kdf::kdfa(
                sess.alg,
                key,
                b"CFB",
                nonce_newer,
                nonce_older,
                key_bits + 128,
            );
            let (k, iv) = material.split_at(kb.min(material.len()));
            aes_cfb(k, iv, decrypt, data)
        }
        _ => Err(TpmRc::SYMMETRIC),
    }
}

fn aes_cfb(key: &[u8], iv: &[u8], decrypt: bool, data: &mut [u8]) -> TpmResult<()> {
    use aes::cipher::KeyIvInit;
    fn run<C>(key: &[u8], iv: &[u8], decrypt: bool, data: &mut [u8]) -> TpmResult<()>
    where
        C: aes::cipher::BlockCipherEncrypt + aes::cipher::KeyInit,
    {
        if decrypt {
            cfb_mode::Decryptor::<C>::new_from_slices(key, iv)
                .map_err(|_| TpmRc::KEY_SIZE)?
                .decrypt(data);
        } else {
            cfb_mode::Encryptor::<C>::new_from_slices(key, iv)
                .map_err(|_| TpmRc::KEY_SIZE)?
                .encrypt(data);
        }
        Ok(())
    }
    match key.len() {
        16 => run::<aes::Aes128>(key, iv, decrypt, data),
        24 => run::<aes::Aes192>(key, iv, decrypt, data),
        32 => run::<aes::Aes256>(key, iv, decrypt, data),
        _ => Err(TpmRc::KEY_SIZE),
    }
}

/// Key for parameter encryption: sessionKey || authValue of the associated entity (always
/// included when the session authorizes a handle, bound or not: Part 1, 21.1).
fn param_key(ctx: &Ctx<'_>, sess: &Session, entry: &Entry) -> Vec<u8> {
    let mut key = sess.session_key.clone();
    if let Some(h) = entry.associated {
        key.extend_from_slice(entity_auth(ctx, h).as_bytes());
    }
    key
}

/// Decrypts the first command parameter (a TPM2B) when a session has `decrypt` set; returns
/// the parameter area the handler sees.
pub fn decrypt_first_param(
    ctx: &Ctx<'_>,
    cs: &CommandSessions,
    params: &[u8],
) -> TpmResult<Option<Vec<u8>>> {
    let Some(i) = cs.decrypt else {
        return Ok(None);
    };
    let n = (i + 1) as u8;
    let entry = cs.entries.get(i).ok_or(TpmRc::FAILURE)?;
    let sess = ctx
        .tpm
        .vs
        .sessions
        .get(entry.handle)
        .ok_or(TpmRc::FAILURE)?;
    let mut out = params.to_vec();
    if out.len() < 2 {
        return Err(TpmRc::INSUFFICIENT.session(n));
    }
    let size = usize::from(u16::from_be_bytes([out[0], out[1]]));
    let Some(data) = out.get_mut(2..2 + size) else {
        return Err(TpmRc::SIZE.session(n));
    };
    let key = param_key(ctx, sess, entry);
    param_crypt(sess, &key, &entry.nonce_caller, &sess.nonce_tpm, true, data)
        .map_err(|rc| rc.session(n))?;
    Ok(Some(out))
}

// ---------------------------------------------------------------------------------------------
// Response side.

/// Finishes a successful command's sessions and returns the response authorization area.
/// `rparams` is the response parameter area; its first parameter is encrypted in place when
/// a session has `encrypt` set.
pub fn respond(ctx: &mut Ctx<'_>, cs: &mut CommandSessions, rparams: &mut [u8]) -> Writer {
    // New nonceTPM for every session used, before encryption (reference UpdateAllNonceTPM).
    for e in &cs.entries {
        if e.handle == Handle::PASSWORD {
            continue;
        }
        let len = ctx
            .tpm
            .vs
            .sessions
            .get(e.handle)
            .map_or(0, |s| s.nonce_tpm.len());
        let mut nonce = alloc::vec![0u8; len];
        ctx.random(&mut nonce);
        if let Some(s) = ctx.tpm.vs.sessions.get_mut(e.handle) {
            s.nonce_tpm = nonce;
        }
    }
    if let Some(i) = cs.encrypt
        && let Some(entry) = cs.entries.get(i)
        && let Some(sess) = ctx.tpm.vs.sessions.get(entry.handle)
        && let Some(size) = rparams.get(..2).map(|s| u16::from_be_bytes([s[0], s[1]]))
        && let Some(data) = rparams.get_mut(2..2 + usize::from(size))
    {
        let key = param_key(ctx, sess, entry);
        // The handler produced a well-formed TPM2B and the session's algorithm was checked
        // at StartAuthSession, so this cannot fail.
        let _ = param_crypt(
            sess,
            &key,
            &sess.nonce_tpm,
            &entry.nonce_caller,
            false,
            data,
        );
    }
    let mut rp_hashes: Vec<(HashAlg, Vec<u8>)> = Vec::new();
    let mut rp_hash = |alg: HashAlg| -> Vec<u8> {
        if let Some((_, d)) = rp_hashes.iter().find(|(a, _)| *a == alg) {
            return d.clone();
        }
        let d = alg.digest(&[&0u32.to_be_bytes(), &cs.cc.to_be_bytes(), rparams]);
        rp_hashes.push((alg, d.clone()));
        d
    };
    // Audit (Part 1, 19.6.7.2): digestNew = H(digestOld || cpHash || rpHash).
    if let Some(i) = cs.audit {
        if let Some(entry) = cs.entries.get_mut(i) {
            let h = entry.handle;
            if let Some(sess) = ctx.tpm.vs.sessions.get(h) {
                let alg = sess.alg;
                let reset = entry.attributes & attr::AUDIT_RESET != 0;
                let cp = cs
                    .cp_hashes
                    .iter()
                    .find(|(a, _)| *a == alg)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_default();
                let rp = rp_hash(alg);
                let exclusive = ctx.tpm.vs.exclusive_audit == Some(h);
                if let Some(sess) = ctx.tpm.vs.sessions.get_mut(h) {
                    let old = match (&sess.audit_digest, reset) {
                        (Some(d), false) => d.clone(),
                        _ => alloc::vec![0u8; alg.digest_size()],
                    };
                    let first = sess.audit_digest.is_none() || reset;
                    sess.audit_digest = Some(alg.digest(&[&old, &cp, &rp]));
                    sess.bound = None;
                    if first {
                        ctx.tpm.vs.exclusive_audit = Some(h);
                    } else if !exclusive {
                        ctx.tpm.vs.exclusive_audit = None;
                    }
                }
                if ctx.tpm.vs.exclusive_audit == Some(h) {
                    entry.attributes |= attr::AUDIT_EXCLUSIVE;
                } else {
                    entry.attributes &= !attr::AUDIT_EXCLUSIVE;
                }
            }
        }
    } else {
        ctx.tpm.vs.exclusive_audit = None;
    }
    let mut out = Writer::new();
    let now = ctx.time();
    for e in &cs.entries {
        if e.handle == Handle::PASSWORD {
            out.tpm2b(&[]).u8(attr::CONTINUE_SESSION).tpm2b(&[]);
            continue;
        }
        let Some(sess) = ctx.tpm.vs.sessions.get(e.handle) else {
            out.tpm2b(&[]).u8(e.attributes).tpm2b(&[]);
            continue;
        };
        let hmac = if sess.is_policy() && sess.policy.password_needed {
            Vec::new()
        } else {
            let key = hmac_key(ctx, sess, e.associated, e.include_auth);
            if key.is_empty() && e.hmac.is_empty() {
                Vec::new()
            } else {
                let rp = rp_hash(sess.alg);
                kdf::hmac(
                    sess.alg,
                    &key,
                    &[&rp, &sess.nonce_tpm, &e.nonce_caller, &[e.attributes]],
                )
            }
        };
        out.tpm2b(&sess.nonce_tpm).u8(e.attributes).tpm2b(&hmac);
        if e.attributes & attr::CONTINUE_SESSION == 0 {
            ctx.tpm.vs.sessions.flush(e.handle);
            if ctx.tpm.vs.exclusive_audit == Some(e.handle) {
                ctx.tpm.vs.exclusive_audit = None;
            }
        } else if let Some(s) = ctx.tpm.vs.sessions.get_mut(e.handle)
            && s.is_policy()
        {
            // A policy session that continues starts over (Part 1, 19.7.1).
            s.reset_policy(now);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Session contexts (Part 1, 30 "Context Management"; Part 3, 28.2-28.4).

/// Key material protecting saved session contexts: encryption key || IV and HMAC key, from
/// the platform proof (never leaves the TPM). Replays and contexts from before a TPM Reset
/// are refused by the session store itself (one valid saved copy per active handle).
fn session_context_keys(ctx: &Ctx<'_>, sequence: u64) -> (Vec<u8>, Vec<u8>) {
    let proof = &ctx.ps().platform_proof;
    let reset = ctx.ps().total_reset_count.to_be_bytes();
    let enc = kdf::kdfa(
        HashAlg::Sha256,
        proof,
        b"SESSIONCONTEXT",
        &sequence.to_be_bytes(),
        &reset,
        (32 + 16) * 8,
    );
    let mac = kdf::kdfa(
        HashAlg::Sha256,
        proof,
        b"SESSIONINTEGRITY",
        &reset,
        &[],
        256,
    );
    (enc, mac)
}

/// ContextSave of a loaded session: returns TPMS_CONTEXT (sequence, savedHandle = the session
/// handle, hierarchy = TPM_RH_NULL, contextBlob = integrity || encrypted session). The
/// session leaves memory; its handle stays active until loaded or flushed.
pub fn context_save(ctx: &mut Ctx<'_>, h: Handle) -> TpmResult<Writer> {
    if !ctx.tpm.vs.sessions.is_loaded(h) {
        return Err(crate::commands::reference_h(1));
    }
    let (session, sequence) = ctx.tpm.vs.sessions.save(h).ok_or(TpmRc::HANDLE.handle(1))?;
    let mut data = postcard::to_allocvec(&session).map_err(|_| TpmRc::FAILURE)?;
    let (enc, mac_key) = session_context_keys(ctx, sequence);
    let (k, iv) = enc.split_at(32);
    aes_cfb(k, iv, false, &mut data)?;
    let mac = kdf::hmac(
        HashAlg::Sha256,
        &mac_key,
        &[&sequence.to_be_bytes(), &h.0.to_be_bytes(), &data],
    );
    let mut blob = Writer::new();
    blob.tpm2b(&mac).bytes(&data);
    let mut w = Writer::new();
    w.u64(sequence)
        .u32(h.0)
        .u32(Handle::NULL.0)
        .tpm2b(blob.as_slice());
    Ok(w)
}

/// ContextLoad of a session context written by [`context_save`]; returns the session handle.
pub fn context_load(ctx: &mut Ctx<'_>, sequence: u64, h: Handle, blob: &[u8]) -> TpmResult<Handle> {
    if !ctx.tpm.vs.sessions.is_saved(h) {
        return Err(TpmRc::HANDLE.param(1));
    }
    let (mac, data) = match blob.get(..2) {
        Some(s) => {
            let n = usize::from(u16::from_be_bytes([s[0], s[1]]));
            let mac = blob.get(2..2 + n).ok_or(TpmRc::INSUFFICIENT.param(1))?;
            (mac, blob.get(2 + n..).unwrap_or_default())
        }
        None => return Err(TpmRc::INSUFFICIENT.param(1)),
    };
    let (enc, mac_key) = session_context_keys(ctx, sequence);
    let expected = kdf::hmac(
        HashAlg::Sha256,
        &mac_key,
        &[&sequence.to_be_bytes(), &h.0.to_be_bytes(), data],
    );
    use subtle::ConstantTimeEq;
    if expected.len() != mac.len() || !bool::from(expected.ct_eq(mac)) {
        return Err(TpmRc::INTEGRITY.param(1));
    }
    let mut plain = data.to_vec();
    let (k, iv) = enc.split_at(32);
    aes_cfb(k, iv, true, &mut plain)?;
    let session: Session = postcard::from_bytes(&plain).map_err(|_| TpmRc::INTEGRITY.param(1))?;
    match ctx.tpm.vs.sessions.load(h, sequence, session) {
        Ok(()) => Ok(h),
        Err(true) => Err(TpmRc::SESSION_MEMORY),
        Err(false) => Err(TpmRc::HANDLE.param(1)),
    }
}

/// FlushContext of a session handle (loaded or saved): `false` when there is none.
pub fn flush(ctx: &mut Ctx<'_>, h: Handle) -> bool {
    if ctx.tpm.vs.exclusive_audit == Some(h) {
        ctx.tpm.vs.exclusive_audit = None;
    }
    ctx.tpm.vs.sessions.flush(h)
}

/// cpHash for command audit, computed before the command runs (it may delete an entity
/// whose Name is part of it): `None` when the command is not audited.
pub fn audit_cp_hash(
    ctx: &Ctx<'_>,
    code: u32,
    handles: &[Handle],
    params: &[u8],
) -> Option<(HashAlg, Vec<u8>)> {
    let audit = &ctx.ps().command_audit;
    if !audit.commands.contains(&code) {
        return None;
    }
    let alg = HashAlg::from_alg_id(audit.hash_alg)?;
    let mut h = alg.hasher();
    h.update(&code.to_be_bytes());
    for &handle in handles {
        h.update(&entity_name(ctx, handle));
    }
    h.update(params);
    Some((alg, h.finish()))
}

/// Command audit (Part 1, 19.6.7.2 / reference CommandAudit): after an audited command
/// succeeded, digest = H_auditAlg(digest || cpHash || rpHash); a new digest starts from zeros
/// and bumps auditCounter. `rparams` are the response parameters as sent.
pub fn command_audit(ctx: &mut Ctx<'_>, code: u32, cp: Option<(HashAlg, Vec<u8>)>, rparams: &[u8]) {
    if core::mem::take(&mut ctx.tpm.vs.command_audit_skip) {
        return;
    }
    let Some((alg, cp)) = cp else {
        return;
    };
    let rp = alg.digest(&[&0u32.to_be_bytes(), &code.to_be_bytes(), rparams]);
    if ctx.tpm.vs.command_audit_digest.is_empty() {
        ctx.tpm.vs.command_audit_digest = alloc::vec![0u8; alg.digest_size()];
        let audit = &mut ctx.ps_mut().command_audit;
        audit.counter = audit.counter.saturating_add(1);
    }
    let old = core::mem::take(&mut ctx.tpm.vs.command_audit_digest);
    ctx.tpm.vs.command_audit_digest = alg.digest(&[&old, &cp, &rp]);
}
