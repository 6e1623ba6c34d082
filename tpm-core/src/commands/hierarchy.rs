//! Part 3, 24 "Hierarchy Commands": TPM2_Clear, TPM2_ClearControl, TPM2_HierarchyChangeAuth,
//! TPM2_HierarchyControl, TPM2_SetPrimaryPolicy, TPM2_ChangePPS, TPM2_ChangeEPS; and the
//! platform's Part 3, 26 "Miscellaneous Management Functions": TPM2_PP_Commands,
//! TPM2_SetAlgorithmSet.

use alloc::vec::Vec;

use crate::auth::AuthRole;
use crate::commands::pcr::hash_alg;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc};
use crate::context::Ctx;
use crate::crypto::hash::MAX_DIGEST_SIZE;
use crate::handle::Handle;
use crate::marshal::Reader;
use crate::rc::{TpmRc, TpmResult};
use crate::state::{AuthValue, DaState, PolicyDigest};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::CLEAR,
        handles: &[auth(HandleKind::Clear, AuthRole::User)],
        response_handle: false,
        run: clear,
    },
    CommandDef {
        cc: cc::CLEAR_CONTROL,
        handles: &[auth(HandleKind::Clear, AuthRole::User)],
        response_handle: false,
        run: clear_control,
    },
    CommandDef {
        cc: cc::HIERARCHY_CHANGE_AUTH,
        handles: &[auth(HandleKind::HierarchyAuth, AuthRole::User)],
        response_handle: false,
        run: hierarchy_change_auth,
    },
    CommandDef {
        cc: cc::HIERARCHY_CONTROL,
        handles: &[auth(HandleKind::Hierarchy, AuthRole::User)],
        response_handle: false,
        run: hierarchy_control,
    },
    CommandDef {
        cc: cc::SET_PRIMARY_POLICY,
        handles: &[auth(HandleKind::HierarchyPolicy, AuthRole::User)],
        response_handle: false,
        run: set_primary_policy,
    },
    CommandDef {
        cc: cc::CHANGE_PPS,
        handles: &[auth(HandleKind::Platform, AuthRole::User)],
        response_handle: false,
        run: change_pps,
    },
    CommandDef {
        cc: cc::CHANGE_EPS,
        handles: &[auth(HandleKind::Platform, AuthRole::User)],
        response_handle: false,
        run: change_eps,
    },
    CommandDef {
        cc: cc::PP_COMMANDS,
        handles: &[auth(HandleKind::Platform, AuthRole::User)],
        response_handle: false,
        run: pp_commands,
    },
    CommandDef {
        cc: cc::SET_ALGORITHM_SET,
        handles: &[auth(HandleKind::Platform, AuthRole::User)],
        response_handle: false,
        run: set_algorithm_set,
    },
];

/// Largest TPM2B_AUTH / TPM2B_DIGEST on the wire (sizeof(TPMU_HA) in libtpms).
const MAX_TPM2B_DIGEST: usize = 64;

fn fresh(ctx: &mut Ctx<'_>) -> Vec<u8> {
    let mut v = alloc::vec![0u8; 48];
    ctx.random(&mut v);
    v
}

/// TPM2_Clear's removal of owner- and endorsement-hierarchy NV indices and persistent
/// objects (reference NvFlushHierarchy for TPM_RH_OWNER and TPM_RH_ENDORSEMENT): platform
/// indices (TPMA_NV_PLATFORMCREATE) and platform persistent objects stay.
pub fn remove_owner_nv_and_persistent(ctx: &mut Ctx<'_>) {
    let ps = ctx.ps_mut();
    ps.nv.clear_owner();
    ps.persistent
        .objects
        .retain(|_, o| o.hierarchy == Handle::PLATFORM.0);
    let keep: Vec<u32> = ctx.ps().persistent.objects.keys().copied().collect();
    ctx.tpm
        .vs
        .objects
        .persistent_cache
        .retain(|h, _| keep.contains(h));
}

/// Part 3, 24.6 TPM2_Clear: a new owner: new storage seed and owner/endorsement proofs (the
/// endorsement seed is kept), owner/endorsement/lockout auth and policies emptied, their
/// objects flushed, NV and persistent objects of those hierarchies removed, DA parameters
/// back to their defaults, clock and reset counts to zero (reference TPM2_Clear).
#[doc(alias = "TPM2_Clear")]
fn clear(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    if ctx.ps().disable_clear {
        return Err(TpmRc::DISABLED);
    }
    let owner_seed = fresh(ctx);
    let owner_proof = fresh(ctx);
    let endorsement_proof = fresh(ctx);
    {
        let ps = ctx.ps_mut();
        ps.owner_seed = owner_seed;
        ps.owner_proof = owner_proof;
        ps.endorsement_proof = endorsement_proof;
        ps.owner_auth = AuthValue::default();
        ps.endorsement_auth = AuthValue::default();
        ps.lockout_auth = AuthValue::default();
        ps.owner_policy = PolicyDigest::none();
        ps.endorsement_policy = PolicyDigest::none();
        ps.lockout_policy = PolicyDigest::none();
        ps.da = DaState::default();
        ps.clock = 0;
        ps.reset_count = 0;
        ps.restart_count = 0;
    }
    ctx.tpm.vs.sh_enable = true;
    ctx.tpm.vs.eh_enable = true;
    ctx.tpm.vs.clock_safe = true;
    // PCR_ClearAuth: the PCR group's authValue is emptied (its policy is the platform's).
    ctx.tpm.vs.pcr_auth = AuthValue::default();
    ctx.tpm.vs.objects.flush_hierarchy(Handle::OWNER);
    ctx.tpm.vs.objects.flush_hierarchy(Handle::ENDORSEMENT);
    remove_owner_nv_and_persistent(ctx);
    // PCRChanged(0): policies that depend on PCRs see the change.
    ctx.tpm.vs.pcr_update_counter = ctx.tpm.vs.pcr_update_counter.wrapping_add(1);
    Ok(Response::empty())
}

/// Part 3, 24.7 TPM2_ClearControl: platform may set or clear disableClear, lockout may only
/// set it (TPM_RC_AUTH_FAIL otherwise, as the reference implementation answers).
#[doc(alias = "TPM2_ClearControl")]
fn clear_control(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let disable = r.yes_no()?;
    r.finish()?;
    if req.handles.first() == Some(&Handle::LOCKOUT) && !disable {
        return Err(TpmRc::AUTH_FAIL);
    }
    if ctx.ps().disable_clear != disable {
        ctx.ps_mut().disable_clear = disable;
    }
    Ok(Response::empty())
}

/// Part 3, 24.8 TPM2_HierarchyChangeAuth: trailing zeros are dropped; a value longer than the
/// largest digest is TPM_RC_SIZE + P1.
#[doc(alias = "TPM2_HierarchyChangeAuth")]
fn hierarchy_change_auth(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let new_auth = AuthValue::new(r.tpm2b(MAX_TPM2B_DIGEST)?);
    r.finish()?;
    if new_auth.as_bytes().len() > MAX_DIGEST_SIZE {
        return Err(TpmRc::SIZE.param(1));
    }
    match req.handles.first().copied() {
        Some(Handle::OWNER) => ctx.ps_mut().owner_auth = new_auth,
        Some(Handle::ENDORSEMENT) => ctx.ps_mut().endorsement_auth = new_auth,
        Some(Handle::LOCKOUT) => ctx.ps_mut().lockout_auth = new_auth,
        Some(Handle::PLATFORM) => ctx.tpm.vs.platform_auth = new_auth,
        _ => return Err(TpmRc::VALUE.handle(1)),
    }
    Ok(Response::empty())
}

/// Part 3, 24.9 TPM2_HierarchyControl: the platform may disable anything (and re-enable
/// sh/eh); owner and endorsement may only disable their own hierarchy. Disabling a
/// hierarchy flushes its transient objects.
#[doc(alias = "TPM2_HierarchyControl")]
fn hierarchy_control(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let enable = Handle(r.u32()?);
    if !matches!(
        enable,
        Handle::OWNER | Handle::ENDORSEMENT | Handle::PLATFORM | Handle::PLATFORM_NV
    ) {
        return Err(r.err(TpmRc::VALUE));
    }
    let state = r.yes_no()?;
    r.finish()?;
    let by = req.handles.first().copied().unwrap_or(Handle::NULL);
    let vs = &mut ctx.tpm.vs;
    let allowed = match enable {
        Handle::PLATFORM | Handle::PLATFORM_NV => by == Handle::PLATFORM,
        Handle::OWNER => {
            (by == Handle::PLATFORM || by == Handle::OWNER)
                && (vs.sh_enable || !state || by == Handle::PLATFORM)
        }
        _ => {
            (by == Handle::PLATFORM || by == Handle::ENDORSEMENT)
                && (vs.eh_enable || !state || by == Handle::PLATFORM)
        }
    };
    if !allowed {
        return Err(TpmRc::AUTH_TYPE);
    }
    let selected = match enable {
        Handle::OWNER => &mut vs.sh_enable,
        Handle::ENDORSEMENT => &mut vs.eh_enable,
        Handle::PLATFORM => &mut vs.ph_enable,
        _ => &mut vs.ph_enable_nv,
    };
    if *selected != state {
        *selected = state;
        if !state && enable != Handle::PLATFORM_NV {
            vs.objects.flush_hierarchy(enable);
        }
    }
    Ok(Response::empty())
}

/// Part 3, 24.10 TPM2_SetPrimaryPolicy: the policy must have the digest size of its hash
/// algorithm (empty with TPM_ALG_NULL), TPM_RC_SIZE + P1 otherwise.
#[doc(alias = "TPM2_SetPrimaryPolicy")]
fn set_primary_policy(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let digest = r.tpm2b(MAX_TPM2B_DIGEST)?;
    let alg_id = r.u16()?;
    let alg = hash_alg(alg_id, true).map_err(|rc| r.err(rc))?;
    r.finish()?;
    if digest.len() != alg.map_or(0, |a| a.digest_size()) {
        return Err(TpmRc::SIZE.param(1));
    }
    let policy = PolicyDigest {
        alg: alg_id,
        digest: digest.to_vec(),
    };
    match req.handles.first().copied() {
        Some(Handle::OWNER) => ctx.ps_mut().owner_policy = policy,
        Some(Handle::ENDORSEMENT) => ctx.ps_mut().endorsement_policy = policy,
        Some(Handle::LOCKOUT) => ctx.ps_mut().lockout_policy = policy,
        Some(Handle::PLATFORM) => ctx.tpm.vs.platform_policy = policy,
        _ => return Err(TpmRc::VALUE.handle(1)),
    }
    Ok(Response::empty())
}

/// Removes the persistent objects of `hierarchy` (reference NvFlushHierarchy for
/// TPM_RH_PLATFORM or TPM_RH_ENDORSEMENT: NV indices stay).
fn remove_persistent_objects(ctx: &mut Ctx<'_>, hierarchy: Handle) {
    if !ctx
        .ps()
        .persistent
        .objects
        .values()
        .any(|o| o.hierarchy == hierarchy.0)
    {
        return;
    }
    ctx.ps_mut()
        .persistent
        .objects
        .retain(|_, o| o.hierarchy != hierarchy.0);
    ctx.tpm
        .vs
        .objects
        .persistent_cache
        .retain(|_, o| o.hierarchy != hierarchy);
}

/// Part 3, 24.4 TPM2_ChangePPS: a new platform seed (new platform primaries) and proof (saved
/// platform contexts no longer load); the platform policy is emptied (the platform authValue
/// is kept), platform objects are flushed and its persistent objects removed.
#[doc(alias = "TPM2_ChangePPS")]
fn change_pps(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let seed = fresh(ctx);
    let proof = fresh(ctx);
    {
        let ps = ctx.ps_mut();
        ps.platform_seed = seed;
        ps.platform_proof = proof;
    }
    ctx.tpm.vs.platform_policy = PolicyDigest::none();
    // The PCR policies are the platform's (reference: re-initialized here).
    if ctx.ps().pcr_policy != PolicyDigest::none() {
        ctx.ps_mut().pcr_policy = PolicyDigest::none();
    }
    ctx.tpm.vs.objects.flush_hierarchy(Handle::PLATFORM);
    remove_persistent_objects(ctx, Handle::PLATFORM);
    Ok(Response::empty())
}

/// Part 3, 24.5 TPM2_ChangeEPS: a new endorsement seed and proof; the endorsement hierarchy
/// is enabled with an empty authValue and policy, its objects flushed and its persistent
/// objects removed.
#[doc(alias = "TPM2_ChangeEPS")]
fn change_eps(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let seed = fresh(ctx);
    let proof = fresh(ctx);
    {
        let ps = ctx.ps_mut();
        ps.endorsement_seed = seed;
        ps.endorsement_proof = proof;
        ps.endorsement_auth = AuthValue::default();
        ps.endorsement_policy = PolicyDigest::none();
    }
    ctx.tpm.vs.eh_enable = true;
    ctx.tpm.vs.objects.flush_hierarchy(Handle::ENDORSEMENT);
    remove_persistent_objects(ctx, Handle::ENDORSEMENT);
    Ok(Response::empty())
}

/// Part 3, 26.2 TPM2_PP_Commands needs physical presence, which a virtual TPM never has
/// (the platform signals it; nothing does here): `auth::authorize` already answers TPM_RC_PP
/// for its session, as the reference implementation does without an asserted PP
/// (CheckAuthSession). This handler is not reached; it refuses the same way.
#[doc(alias = "TPM2_PP_Commands")]
fn pp_commands(_ctx: &mut Ctx<'_>, _req: &Request<'_>) -> TpmResult<Response> {
    Err(TpmRc::PP.session(1))
}

/// Part 3, 26.3 TPM2_SetAlgorithmSet: the vendor-defined algorithm set selector, reported as
/// TPM_PT_ALGORITHM_SET. ukvtpm has one algorithm set, so the value changes nothing else.
#[doc(alias = "TPM2_SetAlgorithmSet")]
fn set_algorithm_set(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let set = r.u32()?;
    r.finish()?;
    if ctx.ps().algorithm_set != set {
        ctx.ps_mut().algorithm_set = set;
    }
    Ok(Response::empty())
}
