//! Part 3, 13 "Duplication Commands": Duplicate, Rewrap and Import (Part 1, 23.3 "Protected
//! Storage" and 23.4 "Duplication").
//!
//! A duplication blob is the object's TPM2B_SENSITIVE, optionally inner-wrapped (an integrity
//! digest H_nameAlg(sensitive || Name) in front, then AES-CFB with a key the caller knows)
//! and optionally outer-wrapped to the new parent (a seed encrypted to it with the label
//! "DUPLICATE", then the same STORAGE/INTEGRITY outer wrap as a child's private area).

use alloc::vec::Vec;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::auth::AuthRole;
use crate::commands::object::read_template;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc, plain};
use crate::context::Ctx;
use crate::crypto::sym;
use crate::entity;
use crate::handle::Handle;
use crate::marshal::{Reader, Writer};
use crate::object::public::{Cursor, SymDef};
use crate::object::{Object, Sensitive, attr, protect};
use crate::rc::{TpmRc, TpmResult};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::DUPLICATE,
        handles: &[
            auth(HandleKind::Object, AuthRole::Dup),
            plain(HandleKind::ObjectOrNull),
        ],
        response_handle: false,
        run: duplicate,
    },
    CommandDef {
        cc: cc::REWRAP,
        handles: &[
            auth(HandleKind::ObjectOrNull, AuthRole::User),
            plain(HandleKind::ObjectOrNull),
        ],
        response_handle: false,
        run: rewrap,
    },
    CommandDef {
        cc: cc::IMPORT,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: import,
    },
];

/// The label of duplication seeds (Part 1, 23.4), with its terminating zero.
pub const DUPLICATE: &[u8] = b"DUPLICATE\0";

/// Reads TPMT_SYM_DEF_OBJECT+ as the next parameter.
fn read_sym_def(r: &mut Reader<'_>) -> TpmResult<SymDef> {
    r.begin();
    let mut c = Cursor::new(r.remaining());
    let def = SymDef::parse(&mut c, true).map_err(|rc| r.err(rc))?;
    let used = r.remaining().len() - c.buf.len();
    r.raw_bytes(used)?;
    Ok(def)
}

/// Part 3, 13.1 TPM2_Duplicate.
#[doc(alias = "TPM2_Duplicate")]
fn duplicate(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let object = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let new_parent_h = req.handles[1];
    let mut r = Reader::params(req.params);
    let key_in = r.tpm2b(64)?.to_vec();
    let sym_def = read_sym_def(&mut r)?;
    r.finish()?;
    if object.public.has(attr::FIXED_PARENT) {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    let new_parent = if new_parent_h == Handle::NULL {
        None
    } else {
        let p = entity::object(ctx, new_parent_h).map_err(|rc| rc.handle(2))?;
        if !p.public.is_storage_parent() {
            return Err(TpmRc::TYPE.handle(2));
        }
        Some(p)
    };
    if object.public.has(attr::ENCRYPTED_DUPLICATION) {
        if sym_def.is_null() {
            return Err(TpmRc::SYMMETRIC.param(2));
        }
        if new_parent.is_none() {
            return Err(TpmRc::HIERARCHY.handle(2));
        }
    }
    let key_len = usize::from(sym_def.bits).div_ceil(8);
    if sym_def.is_null() && !key_in.is_empty()
        || !sym_def.is_null() && !key_in.is_empty() && key_in.len() != key_len
    {
        return Err(TpmRc::SIZE.param(1));
    }
    let sensitive = object.sensitive.as_ref().ok_or(TpmRc::KEY.handle(1))?;
    let (seed, out_seed) = match &new_parent {
        Some(p) => {
            let mut fill = |b: &mut [u8]| ctx.random(b);
            protect::make_secret(&mut fill, p, DUPLICATE)?
        }
        None => (Zeroizing::new(Vec::new()), Vec::new()),
    };
    let mut blob = sensitive.to_tpm2b_padded(object.public.object_type(), object.name_alg());
    let mut key_out = Zeroizing::new(Vec::new());
    if !sym_def.is_null() {
        let key = if key_in.is_empty() {
            let mut k = Zeroizing::new(alloc::vec![0u8; key_len]);
            ctx.random(&mut k);
            k
        } else {
            Zeroizing::new(key_in.clone())
        };
        blob = inner_wrap(&object, &key, &blob)?;
        key_out = key;
    }
    let dup = match &new_parent {
        Some(p) => protect::outer_wrap(
            p.name_alg(),
            p.public.symmetric(),
            &seed,
            &object.name,
            &blob,
        )?,
        None => blob.to_vec(),
    };
    let mut w = Writer::new();
    w.tpm2b(&key_out).tpm2b(&dup).tpm2b(&out_seed);
    Ok(Response::params(w))
}

/// Largest TPM2B_NAME payload (sizeof(TPMU_NAME): a hash algorithm and a SHA-512 digest).
const MAX_NAME: usize = 66;

/// Largest duplication blob Rewrap hands out (the TPM2B_PRIVATE bound Import reads).
const MAX_DUPLICATE: usize = 4096;

/// Part 3, 13.2 TPM2_Rewrap: moves a duplication blob's outer wrap from `oldParent` to
/// `newParent` (either may be TPM_RH_NULL: no outer wrap); the inner wrap, if any, is kept.
/// As the reference: a seed is given exactly when oldParent is not NULL (TPM_RC_HANDLE + H1),
/// both parents must be storage keys (TPM_RC_TYPE), a seed that does not decrypt is
/// TPM_RC_VALUE + P3.
#[doc(alias = "TPM2_Rewrap")]
fn rewrap(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let (old_h, new_h) = (req.handles[0], req.handles[1]);
    let mut r = Reader::params(req.params);
    let in_dup = r.tpm2b(MAX_DUPLICATE)?.to_vec();
    let name = r.tpm2b(MAX_NAME)?.to_vec();
    let in_seed = r.tpm2b(MAX_DUPLICATE)?.to_vec();
    r.finish()?;
    if in_seed.is_empty() != (old_h == Handle::NULL) {
        return Err(TpmRc::HANDLE.handle(1));
    }
    let blob = if old_h == Handle::NULL {
        Zeroizing::new(in_dup)
    } else {
        let old = entity::object(ctx, old_h).map_err(|rc| rc.handle(1))?;
        if !old.public.is_storage_parent() {
            return Err(TpmRc::TYPE.handle(1));
        }
        let mut fill = |b: &mut [u8]| ctx.random(b);
        let seed = protect::recover_secret(&mut fill, &old, DUPLICATE, &in_seed)
            .map_err(|_| TpmRc::VALUE.param(3))?;
        protect::outer_unwrap(
            old.name_alg(),
            old.public.symmetric(),
            &seed,
            &name,
            &in_dup,
        )
        .map_err(|rc| rc.param(1))?
    };
    let mut w = Writer::new();
    if new_h == Handle::NULL {
        w.tpm2b(&blob).tpm2b(&[]);
    } else {
        let new = entity::object(ctx, new_h).map_err(|rc| rc.handle(2))?;
        if !new.public.is_storage_parent() {
            return Err(TpmRc::TYPE.handle(2));
        }
        if blob.len() + 2 + new.name_alg().digest_size() > MAX_DUPLICATE {
            return Err(TpmRc::VALUE.param(1));
        }
        let mut fill = |b: &mut [u8]| ctx.random(b);
        let (seed, out_seed) = protect::make_secret(&mut fill, &new, DUPLICATE)?;
        let dup = protect::outer_wrap(new.name_alg(), new.public.symmetric(), &seed, &name, &blob)?;
        w.tpm2b(&dup).tpm2b(&out_seed);
    }
    Ok(Response::params(w))
}

/// Inner wrap (reference SensitiveToDuplicate): TPM2B_DIGEST(H_nameAlg(sensitive || Name))
/// || sensitive, encrypted with AES-CFB under `key` and a zero IV.
fn inner_wrap(object: &Object, key: &[u8], sensitive: &[u8]) -> TpmResult<Zeroizing<Vec<u8>>> {
    let integrity = object.name_alg().digest(&[sensitive, &object.name]);
    let mut w = Writer::new();
    w.tpm2b(&integrity).bytes(sensitive);
    let mut buf = Zeroizing::new(w.into_vec());
    sym::cfb_encrypt(key, &mut buf)?;
    Ok(buf)
}

/// Part 3, 13.3 TPM2_Import: turns a duplication blob into a private area protected by the
/// parent, to be loaded with TPM2_Load.
#[doc(alias = "TPM2_Import")]
fn import(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let parent = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let enc_key = r.tpm2b(64)?.to_vec();
    let public = read_template(&mut r)?;
    let dup = r.tpm2b(4096)?.to_vec();
    let in_seed = r.tpm2b(4096)?.to_vec();
    let sym_def = read_sym_def(&mut r)?;
    r.finish()?;
    if public.has(attr::FIXED_TPM) || public.has(attr::FIXED_PARENT) {
        return Err(TpmRc::ATTRIBUTES.param(2));
    }
    if !parent.public.is_storage_parent() || !parent.has_private() {
        return Err(TpmRc::TYPE.handle(1));
    }
    let encrypted_dup = public.has(attr::ENCRYPTED_DUPLICATION);
    if sym_def.is_null() {
        if !enc_key.is_empty() {
            return Err(TpmRc::SIZE.param(1));
        }
        if encrypted_dup {
            return Err(TpmRc::ATTRIBUTES.param(1));
        }
    } else if enc_key.len() != usize::from(sym_def.bits).div_ceil(8) {
        return Err(TpmRc::SIZE.param(1));
    }
    let seed = if in_seed.is_empty() {
        if encrypted_dup {
            return Err(TpmRc::ATTRIBUTES.param(4));
        }
        Zeroizing::new(Vec::new())
    } else {
        let mut fill = |b: &mut [u8]| ctx.random(b);
        protect::recover_secret(&mut fill, &parent, DUPLICATE, &in_seed).map_err(|rc| {
            if rc == TpmRc::KEY {
                TpmRc::FAILURE
            } else {
                rc.param(4)
            }
        })?
    };
    let name = public.name();
    let sensitive = unwrap_duplicate(&parent, &public, &name, &seed, &sym_def, &enc_key, &dup)
        .map_err(|rc| rc.param(3))?;
    // Validate the pair as Load would, so a bad import fails now rather than at Load.
    public.validate().map_err(|rc| rc.param(2))?;
    let object_type = public.object_type();
    let name_alg = public.name_alg;
    Object::new(public, Some(sensitive.clone()), parent.hierarchy, &[])
        .map_err(|rc| rc.param(3))?;
    let plain = sensitive.to_tpm2b_padded(object_type, name_alg);
    let private = protect::wrap_child(&mut |b| ctx.random(b), &parent, &name, &plain)?;
    let mut w = Writer::new();
    w.tpm2b(&private);
    Ok(Response::params(w))
}

/// Reference DuplicateToSensitive: removes the outer wrap (when there is a seed) and the inner
/// wrap (when there is a symmetric algorithm), checking both integrity values.
fn unwrap_duplicate(
    parent: &Object,
    public: &crate::object::Public,
    name: &[u8],
    seed: &[u8],
    sym_def: &SymDef,
    enc_key: &[u8],
    dup: &[u8],
) -> TpmResult<Sensitive> {
    let mut buf = if seed.is_empty() {
        Zeroizing::new(dup.to_vec())
    } else {
        protect::outer_unwrap(
            parent.name_alg(),
            parent.public.symmetric(),
            seed,
            name,
            dup,
        )?
    };
    if !sym_def.is_null() {
        sym::cfb_decrypt(enc_key, &mut buf)?;
        let mut c = Cursor::new(&buf);
        let integrity = c.tpm2b(64).map_err(|_| TpmRc::INTEGRITY)?;
        let rest = c.buf;
        let expected = public.name_alg.digest(&[rest, name]);
        if !bool::from(expected.ct_eq(integrity)) {
            return Err(TpmRc::INTEGRITY);
        }
        buf = Zeroizing::new(rest.to_vec());
    }
    let inner = protect::strip_tpm2b(&buf).map_err(|_| TpmRc::SIZE)?;
    Sensitive::parse(inner, public.object_type())
}
