//! Part 3, 12 "Object Commands": Create, Load, LoadExternal, ReadPublic, ActivateCredential
//! and MakeCredential live in `credential.rs`; here Create, CreateLoaded, Load, LoadExternal,
//! ReadPublic, ObjectChangeAuth and Unseal.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc, plain};
use crate::context::Ctx;
use crate::entity;
use crate::handle::{Handle, HandleType};
use crate::marshal::{Reader, Writer};
use crate::object::creation::{self, read_pcr_selection, read_sensitive_create};
use crate::object::public::{MAX_DIGEST, Public};
use crate::object::{self, Object, Params, Sensitive, Source, attr, protect};
use crate::rc::{TpmRc, TpmResult};
use crate::state::{AuthValue, Slot};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::CREATE,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: create,
    },
    CommandDef {
        cc: cc::CREATE_LOADED,
        handles: &[auth(HandleKind::Parent, AuthRole::User)],
        response_handle: true,
        run: create_loaded,
    },
    CommandDef {
        cc: cc::LOAD,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: true,
        run: load,
    },
    CommandDef {
        cc: cc::LOAD_EXTERNAL,
        handles: &[],
        response_handle: true,
        run: load_external,
    },
    CommandDef {
        cc: cc::READ_PUBLIC,
        handles: &[plain(HandleKind::Object)],
        response_handle: false,
        run: read_public,
    },
    CommandDef {
        cc: cc::OBJECT_CHANGE_AUTH,
        handles: &[
            auth(HandleKind::Object, AuthRole::Admin),
            plain(HandleKind::Object),
        ],
        response_handle: false,
        run: object_change_auth,
    },
    CommandDef {
        cc: cc::UNSEAL,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: unseal,
    },
];

/// Loads `obj` into a free transient slot (TPM_RC_OBJECT_MEMORY when none is free).
pub fn insert(ctx: &mut Ctx<'_>, obj: Arc<Object>) -> TpmResult<Handle> {
    ctx.tpm
        .vs
        .objects
        .insert(Slot::Object(obj))
        .ok_or(TpmRc::OBJECT_MEMORY)
}

/// Reads a TPM2B_PUBLIC (or TPM2B_TEMPLATE) parameter.
pub fn read_template(r: &mut Reader<'_>) -> TpmResult<Public> {
    let bytes = r.tpm2b(4096)?;
    if bytes.is_empty() {
        return Err(r.err(TpmRc::SIZE));
    }
    Public::parse(bytes).map_err(|rc| r.err(rc))
}

/// Writes TPM2B_PUBLIC.
pub fn write_public(w: &mut Writer, public_bytes: &[u8]) {
    w.tpm2b(public_bytes);
}

/// The storage parent at `h` (TPM_RC_TYPE + handle 1 when it is not one).
fn storage_parent(ctx: &mut Ctx<'_>, h: Handle) -> TpmResult<Arc<Object>> {
    let parent = entity::object(ctx, h).map_err(|rc| rc.handle(1))?;
    if !parent.public.is_storage_parent() || !parent.has_private() {
        return Err(TpmRc::TYPE.handle(1));
    }
    Ok(parent)
}

/// Attribute rules between a parent and a new child (Part 1, 27.2.2): a child of a parent
/// that may move (fixedTPM clear) cannot claim fixedTPM.
fn check_child_attributes(parent: &Object, child: &Public) -> TpmResult<()> {
    if !parent.public.has(attr::FIXED_TPM) && child.has(attr::FIXED_TPM) {
        return Err(TpmRc::ATTRIBUTES);
    }
    Ok(())
}

struct NewChild {
    public: Public,
    sensitive: Sensitive,
    name: Vec<u8>,
    private: Vec<u8>,
}

fn make_child(
    ctx: &mut Ctx<'_>,
    parent: &Object,
    template: &Public,
    sc: &creation::SensitiveCreate,
) -> TpmResult<NewChild> {
    template.validate().map_err(|rc| rc.param(2))?;
    check_child_attributes(parent, template).map_err(|rc| rc.param(2))?;
    if sc.auth.len() > template.name_alg.digest_size() {
        return Err(TpmRc::SIZE.param(1));
    }
    let mut fill = |b: &mut [u8]| ctx.random(b);
    let (public, sensitive) =
        object::generate(template, &sc.auth, &sc.data, Source::Random(&mut fill))
            .map_err(|rc| rc.param(2))?;
    let name = public.name();
    let plain = sensitive.to_tpm2b_padded(public.object_type(), public.name_alg);
    let private = protect::wrap_child(&mut |b| ctx.random(b), parent, &name, &plain)?;
    Ok(NewChild {
        public,
        sensitive,
        name,
        private,
    })
}

/// Part 3, 12.1 TPM2_Create.
#[doc(alias = "TPM2_Create")]
fn create(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let parent = storage_parent(ctx, req.handles[0])?;
    let mut r = Reader::params(req.params);
    let sc = read_sensitive_create(&mut r)?;
    let template = read_template(&mut r)?;
    let outside = r.tpm2b(64)?;
    let sel = read_pcr_selection(&mut r)?;
    r.finish()?;
    let child = make_child(ctx, &parent, &template, &sc)?;
    let c = creation::creation_data(
        ctx,
        child.public.name_alg,
        &sel,
        &parent.name,
        &parent.qualified_name,
        parent.name_alg().alg_id(),
        outside,
    );
    let mut w = Writer::new();
    w.tpm2b(&child.private);
    write_public(&mut w, &child.public.to_bytes());
    creation::write_creation(
        ctx,
        &mut w,
        &c,
        parent.hierarchy,
        child.public.name_alg,
        &child.name,
    );
    Ok(Response::params(w))
}

/// Part 3, 12.9 TPM2_CreateLoaded: a primary when the parent is a hierarchy, else a child of
/// a storage parent, loaded at once.
#[doc(alias = "TPM2_CreateLoaded")]
fn create_loaded(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let ph = req.handles[0];
    let mut r = Reader::params(req.params);
    let sc = read_sensitive_create(&mut r)?;
    let template = read_template(&mut r)?;
    r.finish()?;
    let (obj, private) = if ph.kind() == HandleType::Permanent {
        template.validate().map_err(|rc| rc.param(2))?;
        let seed = crate::commands::primary::seed(ctx, ph);
        let src = object::primary_source(&seed, &template, &sc.data);
        let (public, sensitive) =
            object::generate(&template, &sc.auth, &sc.data, src).map_err(|rc| rc.param(2))?;
        let mut obj = Object::new(public, Some(sensitive), ph, &ph.0.to_be_bytes())?;
        obj.primary = true;
        (obj, Vec::new())
    } else {
        let parent = storage_parent(ctx, ph)?;
        let child = make_child(ctx, &parent, &template, &sc)?;
        let obj = Object::new(
            child.public,
            Some(child.sensitive),
            parent.hierarchy,
            &parent.qualified_name,
        )?;
        (obj, child.private)
    };
    let mut w = Writer::new();
    w.tpm2b(&private);
    write_public(&mut w, &obj.public_bytes);
    w.tpm2b(&obj.name);
    let handle = insert(ctx, Arc::new(obj))?;
    Ok(Response {
        handle: Some(handle),
        params: w,
    })
}

/// Part 3, 12.2 TPM2_Load.
#[doc(alias = "TPM2_Load")]
fn load(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let parent = storage_parent(ctx, req.handles[0])?;
    let mut r = Reader::params(req.params);
    let private = r.tpm2b(4096)?;
    let public = read_template(&mut r)?;
    r.finish()?;
    if private.is_empty() {
        return Err(TpmRc::SIZE.param(1));
    }
    public.validate().map_err(|rc| rc.param(2))?;
    check_child_attributes(&parent, &public).map_err(|rc| rc.param(2))?;
    let name = public.name();
    let sens_bytes = protect::unwrap_child(&parent, &name, private).map_err(|rc| rc.param(1))?;
    let sensitive =
        Sensitive::parse(&sens_bytes, public.object_type()).map_err(|rc| rc.param(1))?;
    let obj = Object::new(
        public,
        Some(sensitive),
        parent.hierarchy,
        &parent.qualified_name,
    )
    .map_err(|rc| rc.param(2))?;
    if ctx.tpm.vs.objects.is_full() {
        return Err(TpmRc::OBJECT_MEMORY);
    }
    let mut w = Writer::new();
    w.tpm2b(&obj.name);
    let handle = insert(ctx, Arc::new(obj))?;
    Ok(Response {
        handle: Some(handle),
        params: w,
    })
}

/// Part 3, 12.3 TPM2_LoadExternal.
#[doc(alias = "TPM2_LoadExternal")]
fn load_external(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let private = r.tpm2b(4096)?;
    let public = read_template(&mut r)?;
    let hierarchy = Handle(r.u32()?);
    r.finish()?;
    match hierarchy {
        Handle::OWNER | Handle::ENDORSEMENT | Handle::PLATFORM | Handle::NULL => {}
        _ => return Err(TpmRc::VALUE.param(3)),
    }
    let enabled = match hierarchy {
        Handle::OWNER => ctx.tpm.vs.sh_enable,
        Handle::ENDORSEMENT => ctx.tpm.vs.eh_enable,
        Handle::PLATFORM => ctx.tpm.vs.ph_enable,
        _ => true,
    };
    if !enabled {
        return Err(TpmRc::HIERARCHY.param(3));
    }
    let sensitive = if private.is_empty() {
        None
    } else {
        // Part 3, 12.3.1: an external object with a sensitive area lives in the NULL
        // hierarchy only, and cannot claim to be fixed to a TPM or restricted (a restricted
        // key would sign or decrypt as if the TPM had made its input).
        if hierarchy != Handle::NULL {
            return Err(TpmRc::HIERARCHY.param(3));
        }
        if public.has(attr::FIXED_TPM)
            || public.has(attr::FIXED_PARENT)
            || public.has(attr::RESTRICTED)
        {
            return Err(TpmRc::ATTRIBUTES.param(2));
        }
        // `inPrivate` is a TPM2B_SENSITIVE whose size the reader already consumed: `private`
        // is the TPMT_SENSITIVE itself (Part 3, 12.3.2).
        Some(Sensitive::parse(private, public.object_type()).map_err(|rc| rc.param(1))?)
    };
    if sensitive.is_some() {
        public.validate().map_err(|rc| rc.param(2))?;
    }
    let obj = Object::new(public, sensitive, hierarchy, &hierarchy.0.to_be_bytes())
        .map_err(|rc| rc.param(2))?;
    let mut w = Writer::new();
    w.tpm2b(&obj.name);
    let handle = insert(ctx, Arc::new(obj))?;
    Ok(Response {
        handle: Some(handle),
        params: w,
    })
}

/// Part 3, 12.4 TPM2_ReadPublic.
#[doc(alias = "TPM2_ReadPublic")]
fn read_public(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let h = req.handles[0];
    if matches!(ctx.tpm.vs.objects.get(h), Some(Slot::Sequence(_))) {
        return Err(TpmRc::SEQUENCE);
    }
    let obj = entity::object(ctx, h).map_err(|rc| rc.handle(1))?;
    let mut w = Writer::new();
    write_public(&mut w, &obj.public_bytes);
    w.tpm2b(&obj.name).tpm2b(&obj.qualified_name);
    Ok(Response::params(w))
}

/// Part 3, 12.6 TPM2_ObjectChangeAuth: a new private area with the new authValue, for the
/// caller to load; the loaded object is unchanged.
#[doc(alias = "TPM2_ObjectChangeAuth")]
fn object_change_auth(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let obj = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let parent = entity::object(ctx, req.handles[1]).map_err(|rc| rc.handle(2))?;
    let mut r = Reader::params(req.params);
    let new_auth = r.tpm2b(MAX_DIGEST)?;
    r.finish()?;
    // The second handle must be the object's parent: its QN leads to the object's QN.
    let qn = object::qualified_name(obj.name_alg(), &parent.qualified_name, &obj.name);
    if obj.primary || qn != obj.qualified_name || !parent.public.is_storage_parent() {
        return Err(TpmRc::TYPE.handle(2));
    }
    if AuthValue::new(new_auth).as_bytes().len() > obj.name_alg().digest_size() {
        return Err(TpmRc::SIZE.param(1));
    }
    let mut sensitive = obj.sensitive.clone().ok_or(TpmRc::KEY.handle(1))?;
    sensitive.auth = AuthValue::new(new_auth);
    // A fresh IV: the new private area shares key and Name with the old one.
    let plain = sensitive.to_tpm2b_padded(obj.public.object_type(), obj.name_alg());
    let private = protect::wrap_child(&mut |b| ctx.random(b), &parent, &obj.name, &plain)?;
    let mut w = Writer::new();
    w.tpm2b(&private);
    Ok(Response::params(w))
}

/// Part 3, 12.7 TPM2_Unseal: the data of a sealed data object (KEYEDHASH that neither signs
/// nor decrypts).
#[doc(alias = "TPM2_Unseal")]
fn unseal(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let obj = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    if !matches!(obj.public.params, Params::KeyedHash { .. }) {
        return Err(TpmRc::TYPE.handle(1));
    }
    if obj.public.has(attr::SIGN)
        || obj.public.has(attr::DECRYPT)
        || obj.public.has(attr::RESTRICTED)
    {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    let mut w = Writer::new();
    w.tpm2b(obj.secret().map_err(|rc| rc.handle(1))?);
    Ok(Response::params(w))
}
