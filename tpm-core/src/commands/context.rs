//! Part 3, 28 "Context Management": ContextSave, ContextLoad, FlushContext, EvictControl.
//!
//! Saved object contexts (Part 1, 30) are encrypted with AES-256-CFB under a key derived
//! from the hierarchy proof, and integrity-protected with an HMAC over the total reset count,
//! the sequence number, the saved handle and the ciphertext: a tampered context, one from
//! another TPM, from before a TPM Reset or of a hierarchy whose proof changed, is refused with
//! TPM_RC_INTEGRITY.

use alloc::sync::Arc;
use alloc::vec::Vec;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::auth::AuthRole;
use crate::commands::object::insert;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc, plain};
use crate::context::Ctx;
use crate::crypto::hash::HashAlg;
use crate::crypto::{kdf, sym};
use crate::entity;
use crate::handle::{Handle, HandleType};
use crate::marshal::{Reader, Writer};
use crate::object::creation::proof;
use crate::object::public::{Cursor, Public};
use crate::object::{Object, Sensitive, attr};
use crate::rc::{TpmRc, TpmResult};
use crate::state::Slot;
use crate::state::persistent::{MAX_PERSISTENT, StoredObject};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::CONTEXT_SAVE,
        handles: &[plain(HandleKind::Context)],
        response_handle: false,
        run: context_save,
    },
    CommandDef {
        cc: cc::CONTEXT_LOAD,
        handles: &[],
        response_handle: true,
        run: context_load,
    },
    CommandDef {
        cc: cc::FLUSH_CONTEXT,
        handles: &[],
        response_handle: false,
        run: flush_context,
    },
    CommandDef {
        cc: cc::EVICT_CONTROL,
        handles: &[
            auth(HandleKind::Provision, AuthRole::User),
            plain(HandleKind::Object),
        ],
        response_handle: false,
        run: evict_control,
    },
];

/// savedHandle values of object contexts (Part 2, 14.x TPMS_CONTEXT; reference values).
const SAVED_OBJECT: u32 = 0x8000_0000;
const SAVED_ST_CLEAR: u32 = 0x8000_0002;

fn protection_keys(
    ctx: &Ctx<'_>,
    hierarchy: Handle,
    sequence: u64,
) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
    let p = Zeroizing::new(proof(ctx, hierarchy));
    let reset = ctx.ps().total_reset_count.to_be_bytes();
    let enc = Zeroizing::new(kdf::kdfa(
        HashAlg::Sha256,
        &p,
        b"CONTEXT",
        &sequence.to_be_bytes(),
        &reset,
        (32 + sym::BLOCK as u32) * 8,
    ));
    let mac = Zeroizing::new(kdf::kdfa(
        HashAlg::Sha256,
        &p,
        b"INTEGRITY",
        &reset,
        &[],
        256,
    ));
    (enc, mac)
}

/// Part 3, 28.2 TPM2_ContextSave.
#[doc(alias = "TPM2_ContextSave")]
fn context_save(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let h = req.handles[0];
    if matches!(
        h.kind(),
        HandleType::HmacSession | HandleType::PolicySession
    ) {
        return crate::session::context_save(ctx, h).map(Response::params);
    }
    if h.kind() != HandleType::Transient {
        return Err(TpmRc::HANDLE.handle(1));
    }
    let obj = match ctx.tpm.vs.objects.get(h) {
        Some(Slot::Object(o)) => o.clone(),
        // Sequence state is not serializable here: refuse like a TPM out of context room.
        _ => return Err(TpmRc::TYPE.handle(1)),
    };
    let sensitive = obj.sensitive.clone().unwrap_or_default();
    let mut plain = Writer::new();
    plain
        .tpm2b(&obj.public_bytes)
        .u8(u8::from(obj.sensitive.is_some()))
        .bytes(&sensitive.to_tpm2b(obj.public.object_type()))
        .tpm2b(&obj.qualified_name)
        .u8(u8::from(obj.primary));
    let mut data = Zeroizing::new(plain.into_vec());
    let sequence = ctx.tpm.vs.objects.next_context_sequence();
    let saved = if obj.public.has(attr::ST_CLEAR) {
        SAVED_ST_CLEAR
    } else {
        SAVED_OBJECT
    };
    let (enc_key, mac_key) = protection_keys(ctx, obj.hierarchy, sequence);
    let mut iv = [0u8; sym::BLOCK];
    iv.copy_from_slice(&enc_key[32..48]);
    sym::aes(sym::mode::CFB, &enc_key[..32], &mut iv, false, &mut data)?;
    let mac = kdf::hmac(
        HashAlg::Sha256,
        &mac_key,
        &[
            &sequence.to_be_bytes(),
            &saved.to_be_bytes(),
            &obj.hierarchy.0.to_be_bytes(),
            &data,
        ],
    );
    let mut blob = Writer::new();
    blob.tpm2b(&mac).bytes(&data);
    let mut w = Writer::new();
    w.u64(sequence)
        .u32(saved)
        .u32(obj.hierarchy.0)
        .tpm2b(blob.as_slice());
    Ok(Response::params(w))
}

/// Part 3, 28.3 TPM2_ContextLoad.
#[doc(alias = "TPM2_ContextLoad")]
fn context_load(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    r.begin();
    let sequence = {
        let b = r.raw_bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_be_bytes(a)
    };
    let saved = r.raw_u32()?;
    let hierarchy = Handle(r.raw_u32()?);
    let blob = r.raw_tpm2b(4096)?;
    r.finish()?;
    if matches!(
        Handle(saved).kind(),
        HandleType::HmacSession | HandleType::PolicySession
    ) {
        let handle = crate::session::context_load(ctx, sequence, Handle(saved), blob)?;
        return Ok(Response {
            handle: Some(handle),
            params: Writer::new(),
        });
    }
    if saved != SAVED_OBJECT && saved != SAVED_ST_CLEAR {
        return Err(TpmRc::HANDLE.param(1));
    }
    let enabled = match hierarchy {
        Handle::OWNER => ctx.tpm.vs.sh_enable,
        Handle::ENDORSEMENT => ctx.tpm.vs.eh_enable,
        Handle::PLATFORM => ctx.tpm.vs.ph_enable,
        Handle::NULL => true,
        _ => return Err(TpmRc::HIERARCHY.param(1)),
    };
    if !enabled {
        return Err(TpmRc::HIERARCHY.param(1));
    }
    let mut c = Cursor::new(blob);
    let mac = c.tpm2b(64).map_err(|_| TpmRc::INSUFFICIENT.param(1))?;
    let enc = c.buf;
    let (enc_key, mac_key) = protection_keys(ctx, hierarchy, sequence);
    let expected = kdf::hmac(
        HashAlg::Sha256,
        &mac_key,
        &[
            &sequence.to_be_bytes(),
            &saved.to_be_bytes(),
            &hierarchy.0.to_be_bytes(),
            enc,
        ],
    );
    if !bool::from(expected.ct_eq(mac)) {
        return Err(TpmRc::INTEGRITY.param(1));
    }
    let mut data = Zeroizing::new(enc.to_vec());
    let mut iv = [0u8; sym::BLOCK];
    iv.copy_from_slice(&enc_key[32..48]);
    sym::aes(sym::mode::CFB, &enc_key[..32], &mut iv, true, &mut data)?;
    let obj = decode_object(&data, hierarchy).map_err(|_| TpmRc::INTEGRITY.param(1))?;
    if ctx.tpm.vs.objects.is_full() {
        return Err(TpmRc::OBJECT_MEMORY);
    }
    let handle = insert(ctx, Arc::new(obj))?;
    Ok(Response {
        handle: Some(handle),
        params: Writer::new(),
    })
}

fn decode_object(data: &[u8], hierarchy: Handle) -> TpmResult<Object> {
    let mut c = Cursor::new(data);
    let public_bytes = c.tpm2b(4096)?;
    let has_private = c.u8()? != 0;
    let sens = c.tpm2b(4096)?;
    let qn = c.tpm2b(66)?.to_vec();
    let primary = c.u8()? != 0;
    let public = Public::parse(public_bytes)?;
    let sensitive = if has_private {
        Some(Sensitive::parse(sens, public.object_type())?)
    } else {
        None
    };
    let mut obj = Object::new(public, sensitive, hierarchy, &[])?;
    obj.qualified_name = qn;
    obj.primary = primary;
    Ok(obj)
}

/// Part 3, 28.4 TPM2_FlushContext: flushHandle is a parameter (TPMI_DH_CONTEXT). Transient
/// objects and sequences, and sessions (`crate::session::flush`).
#[doc(alias = "TPM2_FlushContext")]
fn flush_context(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let h = Handle(r.u32()?);
    r.finish()?;
    match h.kind() {
        HandleType::Transient => {
            if !crate::commands::transient_in_range(h) {
                return Err(TpmRc::VALUE.param(1));
            }
            if ctx.tpm.vs.objects.remove(h).is_none() {
                return Err(TpmRc::HANDLE.param(1));
            }
            Ok(Response::empty())
        }
        HandleType::HmacSession | HandleType::PolicySession => {
            // Loaded or saved sessions (the exclusive-audit mark goes with them).
            if !crate::session::flush(ctx, h) {
                return Err(TpmRc::HANDLE.param(1));
            }
            Ok(Response::empty())
        }
        _ => Err(TpmRc::VALUE.param(1)),
    }
}

/// Part 3, 28.5 TPM2_EvictControl: makes a transient object persistent, or removes a
/// persistent one. Owner authorization uses 0x81000000-0x817FFFFF, platform 0x81800000-.
#[doc(alias = "TPM2_EvictControl")]
fn evict_control(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let auth_h = req.handles[0];
    let object_h = req.handles[1];
    let mut r = Reader::params(req.params);
    let persistent = Handle(r.u32()?);
    r.finish()?;
    if persistent.kind() != HandleType::Persistent {
        return Err(TpmRc::VALUE.param(1));
    }
    let platform_range = persistent.0 >= 0x8180_0000;
    if (auth_h == Handle::OWNER) == platform_range {
        return Err(TpmRc::RANGE.param(1));
    }
    let obj = entity::object(ctx, object_h).map_err(|rc| rc.handle(2))?;
    if let Some(existing) = obj.evict {
        // Removing: the persistent handle must name the object itself.
        if existing != persistent {
            return Err(TpmRc::HANDLE.param(1));
        }
        ctx.ps_mut().persistent.objects.remove(&persistent.0);
        ctx.tpm.vs.objects.persistent_cache.remove(&persistent.0);
        return Ok(Response::empty());
    }
    if obj.public.has(attr::ST_CLEAR) || !obj.has_private() {
        return Err(TpmRc::ATTRIBUTES.handle(2));
    }
    if obj.hierarchy == Handle::NULL {
        return Err(TpmRc::HIERARCHY.handle(2));
    }
    if auth_h == Handle::OWNER && obj.hierarchy == Handle::PLATFORM {
        return Err(TpmRc::HIERARCHY.handle(2));
    }
    if ctx.ps().persistent.contains(persistent) {
        return Err(TpmRc::NV_DEFINED);
    }
    if ctx.ps().persistent.len() >= MAX_PERSISTENT {
        return Err(TpmRc::NV_SPACE);
    }
    let sensitive = obj.sensitive.clone().unwrap_or_default();
    let mut sens = Writer::new();
    sensitive.write(obj.public.object_type(), &mut sens);
    let stored = StoredObject {
        public: obj.public_bytes.clone(),
        sensitive: sens.into_vec(),
        hierarchy: obj.hierarchy.0,
        qualified_name: obj.qualified_name.clone(),
        primary: obj.primary,
    };
    ctx.ps_mut().persistent.objects.insert(persistent.0, stored);
    ctx.tpm.vs.objects.persistent_cache.remove(&persistent.0);
    Ok(Response::empty())
}
