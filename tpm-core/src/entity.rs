//! Entities referenced by handles (Part 1, 15-16): one place to get the object behind a
//! transient or persistent handle, its Name (for cpHash/rpHash and policies), its authValue
//! and authPolicy, and the role rules of objects (Part 1, 19.7 and Part 2, 8.3.3.x:
//! userWithAuth, adminWithPolicy).
//!
//! Session code calls [`name`], [`auth_value`] and [`auth_policy`]; command handlers call
//! [`object`] to get the loaded object (persistent objects are rebuilt from NV once per
//! power cycle and cached).

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::auth::AuthRole;
use crate::context::Ctx;
use crate::handle::{Handle, HandleType};
use crate::object::public::{Public, name_of};
use crate::object::{Object, Sensitive, attr};
use crate::rc::{TpmRc, TpmResult};
use crate::state::persistent::StoredObject;
use crate::state::{AuthValue, Slot};

/// The loaded object at `h` (transient or persistent), TPM_RC_HANDLE when there is none.
pub fn object(ctx: &mut Ctx<'_>, h: Handle) -> TpmResult<Arc<Object>> {
    match h.kind() {
        HandleType::Transient => ctx.tpm.vs.objects.object(h).cloned().ok_or(TpmRc::HANDLE),
        HandleType::Persistent => {
            if let Some(o) = ctx.tpm.vs.objects.persistent_cache.get(&h.0) {
                return Ok(o.clone());
            }
            let stored = ctx.ps().persistent.get(h).ok_or(TpmRc::HANDLE)?;
            let o = Arc::new(rebuild(stored, h)?);
            ctx.tpm.vs.objects.persistent_cache.insert(h.0, o.clone());
            Ok(o)
        }
        _ => Err(TpmRc::HANDLE),
    }
}

/// Rebuilds a persistent object from its stored form.
pub fn rebuild(stored: &StoredObject, h: Handle) -> TpmResult<Object> {
    let public = Public::parse(&stored.public).map_err(|_| TpmRc::FAILURE)?;
    let sensitive =
        Sensitive::parse(&stored.sensitive, public.object_type()).map_err(|_| TpmRc::FAILURE)?;
    let mut o = Object::new(public, Some(sensitive), Handle(stored.hierarchy), &[])?;
    o.qualified_name.clone_from(&stored.qualified_name);
    o.primary = stored.primary;
    o.evict = Some(h);
    Ok(o)
}

/// True when `h` names a loaded transient object or a persistent object.
pub fn is_object(ctx: &Ctx<'_>, h: Handle) -> bool {
    match h.kind() {
        HandleType::Transient => ctx.tpm.vs.objects.object(h).is_some(),
        HandleType::Persistent => ctx.ps().persistent.contains(h),
        _ => false,
    }
}

/// The hierarchy an object belongs to.
pub fn hierarchy(ctx: &Ctx<'_>, h: Handle) -> Option<Handle> {
    match h.kind() {
        HandleType::Transient => ctx.tpm.vs.objects.object(h).map(|o| o.hierarchy),
        HandleType::Persistent => ctx.ps().persistent.get(h).map(|s| Handle(s.hierarchy)),
        _ => None,
    }
}

/// Name of an object (Part 1, 16: nameAlg || H(publicArea)); `None` when `h` is not an
/// object this module knows (sessions code handles PCRs, permanent handles and NV itself).
pub fn name(ctx: &Ctx<'_>, h: Handle) -> Option<Vec<u8>> {
    match h.kind() {
        // A hash/HMAC/event sequence has no public area: its Name is the Empty Buffer
        // (reference AllocateSequenceSlot), which is what cpHash and tpm2-tss use.
        HandleType::Transient => match ctx.tpm.vs.objects.get(h)? {
            Slot::Object(o) => Some(o.name.clone()),
            Slot::Sequence(_) => Some(Vec::new()),
        },
        HandleType::Persistent => {
            let s = ctx.ps().persistent.get(h)?;
            let public = Public::parse(&s.public).ok()?;
            Some(name_of(public.name_alg, &s.public))
        }
        _ => None,
    }
}

fn stored_public_and_auth(s: &StoredObject) -> Option<(Public, AuthValue)> {
    let public = Public::parse(&s.public).ok()?;
    let sens = Sensitive::parse(&s.sensitive, public.object_type()).ok()?;
    Some((public, sens.auth))
}

/// authValue of an object.
pub fn auth_value(ctx: &Ctx<'_>, h: Handle) -> Option<AuthValue> {
    match h.kind() {
        HandleType::Transient => ctx.tpm.vs.objects.object(h).map(|o| o.auth()),
        HandleType::Persistent => {
            stored_public_and_auth(ctx.ps().persistent.get(h)?).map(|(_, a)| a)
        }
        _ => None,
    }
}

/// authPolicy of an object with its nameAlg (TPM_ALG_ID).
pub fn auth_policy(ctx: &Ctx<'_>, h: Handle) -> Option<(u16, Vec<u8>)> {
    let public = match h.kind() {
        HandleType::Transient => ctx.tpm.vs.objects.object(h)?.public.clone(),
        HandleType::Persistent => Public::parse(&ctx.ps().persistent.get(h)?.public).ok()?,
        _ => return None,
    };
    Some((public.name_alg.alg_id(), public.auth_policy))
}

/// TPMA_OBJECT of an object.
pub fn attributes(ctx: &Ctx<'_>, h: Handle) -> Option<u32> {
    match h.kind() {
        HandleType::Transient => ctx.tpm.vs.objects.object(h).map(|o| o.public.attributes),
        HandleType::Persistent => Public::parse(&ctx.ps().persistent.get(h)?.public)
            .ok()
            .map(|p| p.attributes),
        _ => None,
    }
}

/// Whether an object may be authorized in `role` with an authValue-based session (password or
/// HMAC); policy sessions are always allowed to try. Part 1, 19.7.x / Part 2, 8.3.3:
/// USER needs userWithAuth, ADMIN needs adminWithPolicy clear, DUP always needs a policy.
/// TPM_RC_AUTH_UNAVAILABLE otherwise. Non-objects always pass.
pub fn check_role(ctx: &Ctx<'_>, h: Handle, role: AuthRole, policy_session: bool) -> TpmResult<()> {
    if policy_session {
        return Ok(());
    }
    let Some(a) = attributes(ctx, h) else {
        return Ok(());
    };
    let ok = match role {
        AuthRole::User => a & attr::USER_WITH_AUTH != 0,
        AuthRole::Admin => a & attr::ADMIN_WITH_POLICY == 0,
        AuthRole::Dup => false,
    };
    if ok {
        Ok(())
    } else {
        Err(TpmRc::AUTH_UNAVAILABLE)
    }
}

/// Whether an object is subject to dictionary-attack protection (noDA clear).
pub fn is_da_protected(ctx: &Ctx<'_>, h: Handle) -> Option<bool> {
    attributes(ctx, h).map(|a| a & attr::NO_DA == 0)
}
