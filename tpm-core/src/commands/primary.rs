//! Part 3, 24.1 CreatePrimary: primary objects derived from the hierarchy seeds (Part 1,
//! 27.x), so the same template and sensitive data give the same key after any restart.

use alloc::sync::Arc;

use crate::auth::AuthRole;
use crate::commands::object::{insert, read_template, write_public};
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc};
use crate::context::Ctx;
use crate::handle::Handle;
use crate::marshal::{Reader, Writer};
use crate::object::creation::{self, read_pcr_selection, read_sensitive_create};
use crate::object::{self, Object, alg};
use crate::rc::TpmResult;

pub const COMMANDS: &[CommandDef] = &[CommandDef {
    cc: cc::CREATE_PRIMARY,
    handles: &[auth(HandleKind::HierarchyOrNull, AuthRole::User)],
    response_handle: true,
    run: create_primary,
}];

/// The primary seed of a hierarchy (Part 1, 14.3); the null seed changes at every TPM Reset.
pub fn seed(ctx: &Ctx<'_>, hierarchy: Handle) -> alloc::vec::Vec<u8> {
    let ps = ctx.ps();
    match hierarchy {
        Handle::OWNER => ps.owner_seed.clone(),
        Handle::ENDORSEMENT => ps.endorsement_seed.clone(),
        Handle::PLATFORM => ps.platform_seed.clone(),
        _ => ctx.tpm.vs.null_seed.clone(),
    }
}

/// Part 3, 24.1 TPM2_CreatePrimary.
#[doc(alias = "TPM2_CreatePrimary")]
fn create_primary(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let hierarchy = req.handles[0];
    let mut r = Reader::params(req.params);
    let sc = read_sensitive_create(&mut r)?;
    let template = read_template(&mut r)?;
    let outside = r.tpm2b(64)?;
    let sel = read_pcr_selection(&mut r)?;
    r.finish()?;
    template.validate().map_err(|rc| rc.param(2))?;
    let src = object::primary_source(&seed(ctx, hierarchy), &template, &sc.data);
    let (public, sensitive) =
        object::generate(&template, &sc.auth, &sc.data, src).map_err(|rc| rc.param(2))?;
    let h_bytes = hierarchy.0.to_be_bytes();
    let mut obj = Object::new(public, Some(sensitive), hierarchy, &h_bytes)?;
    obj.primary = true;
    let c = creation::creation_data(
        ctx,
        obj.name_alg(),
        &sel,
        &h_bytes,
        &h_bytes,
        alg::NULL,
        outside,
    );
    let mut w = Writer::new();
    write_public(&mut w, &obj.public_bytes);
    creation::write_creation(ctx, &mut w, &c, hierarchy, obj.name_alg(), &obj.name);
    w.tpm2b(&obj.name);
    let handle = insert(ctx, Arc::new(obj))?;
    Ok(Response {
        handle: Some(handle),
        params: w,
    })
}
