//! Part 3, 31 "Non-volatile Storage": the NV_* commands. Access checks follow the reference
//! implementation's NvReadAccessChecks / NvWriteAccessChecks so error codes match.

use alloc::vec::Vec;

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc, plain};
use crate::context::Ctx;
use crate::crypto::hash::{HashAlg, MAX_DIGEST_SIZE};
use crate::handle::{Handle, HandleType};
use crate::marshal::{Reader, Writer};
use crate::rc::{TpmRc, TpmResult};
use crate::state::AuthValue;
use crate::state::nv::{
    MAX_NV_BUFFER_SIZE, MAX_NV_INDEX_SIZE, MAX_NV_INDICES, NV_MEMORY_SIZE, NvIndex, NvType, attr,
};

const NV_AUTH_AND_INDEX: &[crate::commands::HandleSlot] = &[
    auth(HandleKind::NvAuth, AuthRole::User),
    plain(HandleKind::NvIndex),
];

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::NV_DEFINE_SPACE,
        handles: &[auth(HandleKind::Provision, AuthRole::User)],
        response_handle: false,
        run: nv_define_space,
    },
    CommandDef {
        cc: cc::NV_UNDEFINE_SPACE,
        handles: &[
            auth(HandleKind::Provision, AuthRole::User),
            plain(HandleKind::NvIndex),
        ],
        response_handle: false,
        run: nv_undefine_space,
    },
    CommandDef {
        cc: cc::NV_UNDEFINE_SPACE_SPECIAL,
        handles: &[
            auth(HandleKind::NvIndex, AuthRole::Admin),
            auth(HandleKind::Platform, AuthRole::User),
        ],
        response_handle: false,
        run: nv_undefine_space_special,
    },
    CommandDef {
        cc: cc::NV_READ_PUBLIC,
        handles: &[plain(HandleKind::NvIndex)],
        response_handle: false,
        run: nv_read_public,
    },
    CommandDef {
        cc: cc::NV_WRITE,
        handles: NV_AUTH_AND_INDEX,
        response_handle: false,
        run: nv_write,
    },
    CommandDef {
        cc: cc::NV_INCREMENT,
        handles: NV_AUTH_AND_INDEX,
        response_handle: false,
        run: nv_increment,
    },
    CommandDef {
        cc: cc::NV_EXTEND,
        handles: NV_AUTH_AND_INDEX,
        response_handle: false,
        run: nv_extend,
    },
    CommandDef {
        cc: cc::NV_SET_BITS,
        handles: NV_AUTH_AND_INDEX,
        response_handle: false,
        run: nv_set_bits,
    },
    CommandDef {
        cc: cc::NV_WRITE_LOCK,
        handles: NV_AUTH_AND_INDEX,
        response_handle: false,
        run: nv_write_lock,
    },
    CommandDef {
        cc: cc::NV_GLOBAL_WRITE_LOCK,
        handles: &[auth(HandleKind::Provision, AuthRole::User)],
        response_handle: false,
        run: nv_global_write_lock,
    },
    CommandDef {
        cc: cc::NV_READ,
        handles: NV_AUTH_AND_INDEX,
        response_handle: false,
        run: nv_read,
    },
    CommandDef {
        cc: cc::NV_READ_LOCK,
        handles: NV_AUTH_AND_INDEX,
        response_handle: false,
        run: nv_read_lock,
    },
    CommandDef {
        cc: cc::NV_CERTIFY,
        handles: &[
            auth(HandleKind::ObjectOrNull, AuthRole::User),
            auth(HandleKind::NvAuth, AuthRole::User),
            plain(HandleKind::NvIndex),
        ],
        response_handle: false,
        run: nv_certify,
    },
    CommandDef {
        cc: cc::NV_CHANGE_AUTH,
        handles: &[auth(HandleKind::NvIndex, AuthRole::Admin)],
        response_handle: false,
        run: nv_change_auth,
    },
];

fn handle(req: &Request<'_>, i: usize) -> Handle {
    req.handles.get(i).copied().unwrap_or(Handle::NULL)
}

fn index<'a>(ctx: &'a Ctx<'_>, h: Handle) -> TpmResult<&'a NvIndex> {
    ctx.ps().nv.get(h).ok_or(TpmRc::HANDLE.handle(2))
}

/// Reference NvReadAccessChecks.
fn read_access(auth_handle: Handle, nv_handle: Handle, a: u32) -> TpmResult<()> {
    if a & attr::READLOCKED != 0 {
        return Err(TpmRc::NV_LOCKED);
    }
    match auth_handle {
        Handle::OWNER if a & attr::OWNERREAD == 0 => return Err(TpmRc::NV_AUTHORIZATION),
        Handle::PLATFORM if a & attr::PPREAD == 0 => return Err(TpmRc::NV_AUTHORIZATION),
        Handle::OWNER | Handle::PLATFORM => {}
        h if h != nv_handle => return Err(TpmRc::NV_AUTHORIZATION),
        _ => {}
    }
    if a & attr::WRITTEN == 0 {
        return Err(TpmRc::NV_UNINITIALIZED);
    }
    Ok(())
}

/// Reference NvWriteAccessChecks.
fn write_access(auth_handle: Handle, nv_handle: Handle, a: u32) -> TpmResult<()> {
    if a & attr::WRITELOCKED != 0 {
        return Err(TpmRc::NV_LOCKED);
    }
    match auth_handle {
        Handle::OWNER if a & attr::OWNERWRITE == 0 => Err(TpmRc::NV_AUTHORIZATION),
        Handle::PLATFORM if a & attr::PPWRITE == 0 => Err(TpmRc::NV_AUTHORIZATION),
        Handle::OWNER | Handle::PLATFORM => Ok(()),
        h if h != nv_handle => Err(TpmRc::NV_AUTHORIZATION),
        _ => Ok(()),
    }
}

/// Reads a TPM2B_NV_PUBLIC (Part 2, 13.6) as parameter `r`'s next field.
fn read_nv_public(r: &mut Reader<'_>) -> TpmResult<(Handle, HashAlg, u32, Vec<u8>, u16)> {
    r.begin();
    let size = usize::from(r.raw_u16()?);
    if size == 0 {
        return Err(r.err(TpmRc::SIZE));
    }
    let body = r.raw_bytes(size)?;
    let mut inner = Reader::params(body);
    let h = Handle(inner.raw_u32().map_err(|_| r.err(TpmRc::INSUFFICIENT))?);
    if h.kind() != HandleType::NvIndex {
        return Err(r.err(TpmRc::VALUE));
    }
    let alg = inner.raw_u16().map_err(|_| r.err(TpmRc::INSUFFICIENT))?;
    let alg = HashAlg::from_alg_id(alg).ok_or(r.err(TpmRc::HASH))?;
    let attributes = inner.raw_u32().map_err(|_| r.err(TpmRc::INSUFFICIENT))?;
    if attributes & attr::RESERVED != 0 {
        return Err(r.err(TpmRc::RESERVED_BITS));
    }
    let policy = inner
        .raw_tpm2b(MAX_DIGEST_SIZE)
        .map_err(|rc| r.err(rc.base()))?
        .to_vec();
    let data_size = inner.raw_u16().map_err(|_| r.err(TpmRc::INSUFFICIENT))?;
    if !inner.remaining().is_empty() {
        return Err(r.err(TpmRc::SIZE));
    }
    Ok((h, alg, attributes, policy, data_size))
}

/// Part 3, 31.3 TPM2_NV_DefineSpace.
#[doc(alias = "TPM2_NV_DefineSpace")]
fn nv_define_space(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let auth_handle = handle(req, 0);
    let mut r = Reader::params(req.params);
    let auth = AuthValue::new(r.tpm2b(MAX_DIGEST_SIZE)?);
    let (h, alg, a, policy, data_size) = read_nv_public(&mut r)?;
    r.finish()?;
    let p2 = |rc: TpmRc| rc.param(2);
    let name_size = alg.digest_size();
    if !policy.is_empty() && policy.len() != name_size {
        return Err(p2(TpmRc::SIZE));
    }
    if auth.as_bytes().len() > name_size {
        return Err(TpmRc::SIZE.param(1));
    }
    if auth_handle == Handle::PLATFORM && !ctx.tpm.vs.ph_enable_nv {
        return Err(TpmRc::HIERARCHY.handle(1));
    }
    let Some(kind) = NvType::from_attributes(a) else {
        return Err(p2(TpmRc::ATTRIBUTES));
    };
    match kind {
        NvType::Ordinary if data_size > MAX_NV_INDEX_SIZE => return Err(p2(TpmRc::SIZE)),
        NvType::Ordinary => {}
        NvType::Extend if usize::from(data_size) != name_size => return Err(p2(TpmRc::SIZE)),
        NvType::Extend => {}
        _ if data_size != 8 => return Err(p2(TpmRc::SIZE)),
        _ => {}
    }
    match kind {
        NvType::Counter if a & attr::CLEAR_STCLEAR != 0 => return Err(p2(TpmRc::ATTRIBUTES)),
        NvType::PinFail if a & attr::NO_DA == 0 => return Err(p2(TpmRc::ATTRIBUTES)),
        NvType::PinFail | NvType::PinPass
            if a & (attr::AUTHWRITE | attr::GLOBALLOCK | attr::WRITEDEFINE) != 0 =>
        {
            return Err(p2(TpmRc::ATTRIBUTES));
        }
        _ => {}
    }
    let any = |bits: u32| a & bits != 0;
    if any(attr::WRITTEN | attr::WRITELOCKED | attr::READLOCKED)
        || !any(attr::OWNERREAD | attr::PPREAD | attr::AUTHREAD | attr::POLICYREAD)
        || !any(attr::OWNERWRITE | attr::PPWRITE | attr::AUTHWRITE | attr::POLICYWRITE)
        || (any(attr::CLEAR_STCLEAR) && any(attr::WRITEDEFINE))
    {
        return Err(p2(TpmRc::ATTRIBUTES));
    }
    let platform_create = any(attr::PLATFORMCREATE);
    if platform_create != (auth_handle == Handle::PLATFORM) {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    if any(attr::POLICY_DELETE) && auth_handle != Handle::PLATFORM {
        return Err(p2(TpmRc::ATTRIBUTES));
    }
    if data_size > MAX_NV_BUFFER_SIZE && any(attr::WRITEALL) {
        return Err(p2(TpmRc::SIZE));
    }
    if ctx.ps().nv.contains(h) {
        return Err(TpmRc::NV_DEFINED);
    }
    let ix = NvIndex {
        handle: h,
        name_alg: alg,
        attributes: a,
        auth_policy: policy,
        data_size,
        auth,
        data: alloc::vec![0u8; usize::from(data_size)],
    };
    let nv = &ctx.ps().nv;
    if nv.indices.len() >= MAX_NV_INDICES || nv.used() + ix.footprint() > NV_MEMORY_SIZE {
        return Err(TpmRc::NV_SPACE);
    }
    ctx.ps_mut().nv.indices.insert(h.0, ix);
    Ok(Response::empty())
}

fn remove_index(ctx: &mut Ctx<'_>, h: Handle) {
    let nv = &mut ctx.ps_mut().nv;
    if let Some(ix) = nv.indices.remove(&h.0)
        && ix.nv_type() == NvType::Counter
        && ix.has(attr::WRITTEN)
    {
        nv.note_counter(ix.u64_value());
    }
}

/// Part 3, 31.4 TPM2_NV_UndefineSpace.
#[doc(alias = "TPM2_NV_UndefineSpace")]
fn nv_undefine_space(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let (auth_handle, h) = (handle(req, 0), handle(req, 1));
    let ix = index(ctx, h)?;
    if ix.has(attr::POLICY_DELETE) {
        return Err(TpmRc::ATTRIBUTES.handle(2));
    }
    if auth_handle == Handle::OWNER && ix.has(attr::PLATFORMCREATE) {
        return Err(TpmRc::NV_AUTHORIZATION);
    }
    remove_index(ctx, h);
    Ok(Response::empty())
}

/// Part 3, 31.5 TPM2_NV_UndefineSpaceSpecial: deletes a POLICY_DELETE index with its policy
/// (ADMIN role) and platformAuth.
#[doc(alias = "TPM2_NV_UndefineSpaceSpecial")]
fn nv_undefine_space_special(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let h = handle(req, 0);
    if !index(ctx, h)?.has(attr::POLICY_DELETE) {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    remove_index(ctx, h);
    Ok(Response::empty())
}

/// Part 3, 31.6 TPM2_NV_ReadPublic.
#[doc(alias = "TPM2_NV_ReadPublic")]
fn nv_read_public(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let ix = ctx
        .ps()
        .nv
        .get(handle(req, 0))
        .ok_or(TpmRc::HANDLE.handle(1))?;
    let public = ix.public_bytes();
    let mut out = Writer::with_capacity(public.len() + 64);
    out.tpm2b(&public).tpm2b(&ix.name());
    Ok(Response::params(out))
}

/// Part 3, 31.7 TPM2_NV_Write.
#[doc(alias = "TPM2_NV_Write")]
fn nv_write(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let (auth_handle, h) = (handle(req, 0), handle(req, 1));
    let mut r = Reader::params(req.params);
    let data = r.tpm2b(usize::from(MAX_NV_BUFFER_SIZE))?;
    let offset = usize::from(r.u16()?);
    r.finish()?;
    let ix = index(ctx, h)?;
    write_access(auth_handle, h, ix.attributes)?;
    // Ordinary and PIN indices take NV_Write; counters, bit fields and extend indices have
    // their own commands.
    if matches!(
        ix.nv_type(),
        NvType::Counter | NvType::Bits | NvType::Extend
    ) {
        return Err(TpmRc::ATTRIBUTES);
    }
    let size = usize::from(ix.data_size);
    if data.len() + offset > size {
        return Err(TpmRc::NV_RANGE);
    }
    if ix.has(attr::WRITEALL) && data.len() != size {
        return Err(TpmRc::NV_RANGE);
    }
    let ix = ctx.ps_mut().nv.get_mut(h).ok_or(TpmRc::HANDLE.handle(2))?;
    if let Some(dst) = ix.data.get_mut(offset..offset + data.len()) {
        dst.copy_from_slice(data);
    }
    ix.attributes |= attr::WRITTEN;
    Ok(Response::empty())
}

/// Part 3, 31.8 TPM2_NV_Increment: a counter never goes backwards; its first value is above
/// every counter this TPM has had (Part 1, 37.7.2).
#[doc(alias = "TPM2_NV_Increment")]
fn nv_increment(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let (auth_handle, h) = (handle(req, 0), handle(req, 1));
    let ix = index(ctx, h)?;
    write_access(auth_handle, h, ix.attributes)?;
    if ix.nv_type() != NvType::Counter {
        return Err(TpmRc::ATTRIBUTES.handle(2));
    }
    let old = if ix.has(attr::WRITTEN) {
        ix.u64_value()
    } else {
        ctx.ps().nv.max_counter
    };
    let new = old.checked_add(1).ok_or(TpmRc::NV_RANGE)?;
    let nv = &mut ctx.ps_mut().nv;
    nv.note_counter(new);
    let ix = nv.get_mut(h).ok_or(TpmRc::HANDLE.handle(2))?;
    ix.data = new.to_be_bytes().to_vec();
    ix.attributes |= attr::WRITTEN;
    Ok(Response::empty())
}

/// Part 3, 31.9 TPM2_NV_Extend: data = H_nameAlg(data || extension).
#[doc(alias = "TPM2_NV_Extend")]
fn nv_extend(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let (auth_handle, h) = (handle(req, 0), handle(req, 1));
    let mut r = Reader::params(req.params);
    let data = r.tpm2b(usize::from(MAX_NV_BUFFER_SIZE))?;
    r.finish()?;
    let ix = index(ctx, h)?;
    write_access(auth_handle, h, ix.attributes)?;
    if ix.nv_type() != NvType::Extend {
        return Err(TpmRc::ATTRIBUTES.handle(2));
    }
    let old = if ix.has(attr::WRITTEN) {
        ix.data.clone()
    } else {
        alloc::vec![0u8; ix.name_alg.digest_size()]
    };
    let new = ix.name_alg.digest(&[&old, data]);
    let ix = ctx.ps_mut().nv.get_mut(h).ok_or(TpmRc::HANDLE.handle(2))?;
    ix.data = new;
    ix.attributes |= attr::WRITTEN;
    Ok(Response::empty())
}

/// Part 3, 31.10 TPM2_NV_SetBits: data = data | bits.
#[doc(alias = "TPM2_NV_SetBits")]
fn nv_set_bits(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let (auth_handle, h) = (handle(req, 0), handle(req, 1));
    let mut r = Reader::params(req.params);
    let bits = r.u64()?;
    r.finish()?;
    let ix = index(ctx, h)?;
    write_access(auth_handle, h, ix.attributes)?;
    if ix.nv_type() != NvType::Bits {
        return Err(TpmRc::ATTRIBUTES.handle(2));
    }
    let old = if ix.has(attr::WRITTEN) {
        ix.u64_value()
    } else {
        0
    };
    let ix = ctx.ps_mut().nv.get_mut(h).ok_or(TpmRc::HANDLE.handle(2))?;
    ix.data = (old | bits).to_be_bytes().to_vec();
    ix.attributes |= attr::WRITTEN;
    Ok(Response::empty())
}

/// Part 3, 31.11 TPM2_NV_WriteLock: locks until the next Startup (WRITE_STCLEAR) or for
/// good (WRITEDEFINE, once written).
#[doc(alias = "TPM2_NV_WriteLock")]
fn nv_write_lock(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let (auth_handle, h) = (handle(req, 0), handle(req, 1));
    let ix = index(ctx, h)?;
    match write_access(auth_handle, h, ix.attributes) {
        Ok(()) => {}
        Err(rc) if rc == TpmRc::NV_AUTHORIZATION => return Err(rc),
        // Already locked: nothing to do.
        Err(_) => return Ok(Response::empty()),
    }
    if !ix.has(attr::WRITEDEFINE) && !ix.has(attr::WRITE_STCLEAR) {
        return Err(TpmRc::ATTRIBUTES.handle(2));
    }
    if let Some(ix) = ctx.ps_mut().nv.get_mut(h) {
        ix.attributes |= attr::WRITELOCKED;
    }
    Ok(Response::empty())
}

/// Part 3, 31.12 TPM2_NV_GlobalWriteLock: write-locks every GLOBALLOCK index until the next
/// Startup.
#[doc(alias = "TPM2_NV_GlobalWriteLock")]
fn nv_global_write_lock(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    if ctx
        .ps()
        .nv
        .indices
        .values()
        .any(|ix| ix.has(attr::GLOBALLOCK))
    {
        for ix in ctx.ps_mut().nv.indices.values_mut() {
            if ix.has(attr::GLOBALLOCK) {
                ix.attributes |= attr::WRITELOCKED;
            }
        }
    }
    Ok(Response::empty())
}

/// Part 3, 31.13 TPM2_NV_Read.
#[doc(alias = "TPM2_NV_Read")]
fn nv_read(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let (auth_handle, h) = (handle(req, 0), handle(req, 1));
    let mut r = Reader::params(req.params);
    let size = usize::from(r.u16()?);
    let offset = usize::from(r.u16()?);
    r.finish()?;
    let ix = index(ctx, h)?;
    read_access(auth_handle, h, ix.attributes)?;
    if size + offset > usize::from(ix.data_size) {
        return Err(TpmRc::NV_RANGE);
    }
    if size > usize::from(MAX_NV_BUFFER_SIZE) {
        return Err(TpmRc::VALUE.param(1));
    }
    let data = ix.data.get(offset..offset + size).unwrap_or_default();
    let mut out = Writer::with_capacity(2 + size);
    out.tpm2b(data);
    Ok(Response::params(out))
}

/// Part 3, 31.14 TPM2_NV_ReadLock: blocks reads until the next Startup (READ_STCLEAR).
#[doc(alias = "TPM2_NV_ReadLock")]
fn nv_read_lock(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let (auth_handle, h) = (handle(req, 0), handle(req, 1));
    let ix = index(ctx, h)?;
    match read_access(auth_handle, h, ix.attributes) {
        Err(rc) if rc == TpmRc::NV_AUTHORIZATION => return Err(rc),
        Err(rc) if rc == TpmRc::NV_LOCKED => return Ok(Response::empty()),
        _ => {}
    }
    if !ix.has(attr::READ_STCLEAR) {
        return Err(TpmRc::ATTRIBUTES.handle(2));
    }
    if let Some(ix) = ctx.ps_mut().nv.get_mut(h) {
        ix.attributes |= attr::READLOCKED;
    }
    Ok(Response::empty())
}

/// Part 3, 31.15 TPM2_NV_ChangeAuth (ADMIN role: policy session with
/// PolicyCommandCode(NV_ChangeAuth)).
#[doc(alias = "TPM2_NV_ChangeAuth")]
fn nv_change_auth(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let h = handle(req, 0);
    let mut r = Reader::params(req.params);
    let new_auth = AuthValue::new(r.tpm2b(MAX_DIGEST_SIZE)?);
    r.finish()?;
    let ix = ctx.ps().nv.get(h).ok_or(TpmRc::HANDLE.handle(1))?;
    if new_auth.as_bytes().len() > ix.name_alg.digest_size() {
        return Err(TpmRc::SIZE.param(1));
    }
    if let Some(ix) = ctx.ps_mut().nv.get_mut(h) {
        ix.auth = new_auth;
    }
    Ok(Response::empty())
}

/// TPM_ST_ATTEST_NV (Part 2, 6.9).
const ST_ATTEST_NV: u16 = 0x8014;

/// Part 3, 31.16 TPM2_NV_Certify: signs NV contents together with the index Name.
#[doc(alias = "TPM2_NV_Certify")]
fn nv_certify(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    use crate::commands::attestation::{Signer, read_qualifying};
    use crate::commands::signature::read_sig_scheme;
    let (sign_handle, auth_handle, h) = (handle(req, 0), handle(req, 1), handle(req, 2));
    let mut r = Reader::params(req.params);
    let extra = read_qualifying(&mut r)?;
    let requested = read_sig_scheme(&mut r)?;
    let size = usize::from(r.u16()?);
    let offset = usize::from(r.u16()?);
    r.finish()?;
    let ix = ctx.ps().nv.get(h).ok_or(TpmRc::HANDLE.handle(3))?.clone();
    read_access(auth_handle, h, ix.attributes)?;
    if size + offset > usize::from(ix.data_size) {
        return Err(TpmRc::NV_RANGE);
    }
    if size > usize::from(MAX_NV_BUFFER_SIZE) {
        return Err(TpmRc::VALUE.param(3));
    }
    let signer = Signer::new(ctx, sign_handle, 1, requested, 2)?;
    let contents = ix.data.get(offset..offset + size).unwrap_or_default();
    let mut a = Writer::new();
    a.tpm2b(&ix.name()).u16(offset as u16).tpm2b(contents);
    let attest = signer.attest(ctx, ST_ATTEST_NV, &extra, a.as_slice());
    signer.respond(ctx, &attest)
}
