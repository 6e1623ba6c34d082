//! Part 3, 15.4 TPM2_Hash and Part 3, 17 "Hash/HMAC/Event Sequences": HashSequenceStart,
//! SequenceUpdate, SequenceComplete, EventSequenceComplete.
//!
//! Sequences occupy transient object slots (`Slot::Sequence`), are authorized in the USER
//! role with the auth value given at start, and are flushed when completed. HMAC sequences
//! (HMAC_Start) plug in through `SequenceKind::Hmac`.

use alloc::vec::Vec;

use crate::auth::AuthRole;
use crate::commands::pcr::{MAX_EVENT, check_extend_allowed, extend, hash_alg};
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc};
use crate::context::Ctx;
use crate::crypto::hash::{HASH_ALGS, HashAlg};
use crate::handle::Handle;
use crate::marshal::{Reader, Writer};
use crate::object::creation::{TPM_GENERATED, st, ticket_hmac};
use crate::rc::{TpmRc, TpmResult};
use crate::state::objects::{HashSequence, SequenceKind};
use crate::state::{AuthValue, Slot};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::HASH,
        handles: &[],
        response_handle: false,
        run: hash,
    },
    CommandDef {
        cc: cc::HASH_SEQUENCE_START,
        handles: &[],
        response_handle: true,
        run: hash_sequence_start,
    },
    CommandDef {
        cc: cc::SEQUENCE_UPDATE,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: sequence_update,
    },
    CommandDef {
        cc: cc::SEQUENCE_COMPLETE,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: sequence_complete,
    },
    CommandDef {
        cc: cc::EVENT_SEQUENCE_COMPLETE,
        handles: &[
            auth(HandleKind::PcrOrNull, AuthRole::User),
            auth(HandleKind::Object, AuthRole::User),
        ],
        response_handle: false,
        run: event_sequence_complete,
    },
];

/// TPM2B_MAX_BUFFER capacity (MAX_DIGEST_BUFFER).
pub const MAX_DIGEST_BUFFER: usize = MAX_EVENT;

/// Largest TPM2B_AUTH (sizeof(TPMU_HA) in libtpms, which implements SHA-512).
const MAX_AUTH: usize = 64;

/// The HMAC of hash-check tickets (TPM_PT_CONTEXT_HASH).
pub const TICKET_HASH: HashAlg = HashAlg::Sha256;

/// Reads TPMI_RH_HIERARCHY+ as the next parameter (owner, endorsement, platform or null;
/// anything else TPM_RC_VALUE).
pub fn read_hierarchy_or_null(r: &mut Reader<'_>) -> TpmResult<Handle> {
    let h = Handle(r.u32()?);
    match h {
        Handle::OWNER | Handle::ENDORSEMENT | Handle::PLATFORM | Handle::NULL => Ok(h),
        _ => Err(r.err(TpmRc::VALUE)),
    }
}

/// reference TicketIsSafe: data shorter than TPM_GENERATED_VALUE, or starting with it, may
/// be (the start of) a TPM-generated structure and must not get a hash-check ticket.
pub fn ticket_is_safe(data: &[u8]) -> bool {
    data.len() >= 4 && data[..4] != TPM_GENERATED.to_be_bytes()
}

/// The TPMT_TK_HASHCHECK digest (reference TicketComputeHashCheck):
/// HMAC(proof(hierarchy), TPM_ST_HASHCHECK || hashAlg || digest). Verifiers of hash-check
/// tickets (Sign of restricted keys) recompute this.
pub fn hash_check_digest(ctx: &Ctx<'_>, hierarchy: Handle, alg: HashAlg, digest: &[u8]) -> Vec<u8> {
    ticket_hmac(
        ctx,
        hierarchy,
        TICKET_HASH,
        &[
            &st::HASHCHECK.to_be_bytes(),
            &alg.alg_id().to_be_bytes(),
            digest,
        ],
    )
}

/// Writes TPMT_TK_HASHCHECK: a real ticket when `safe` and the hierarchy is not null, the
/// null ticket otherwise.
fn write_hash_ticket(
    ctx: &Ctx<'_>,
    w: &mut Writer,
    hierarchy: Handle,
    safe: bool,
    alg: HashAlg,
    digest: &[u8],
) {
    w.u16(st::HASHCHECK);
    if hierarchy == Handle::NULL || !safe {
        w.u32(Handle::NULL.0).tpm2b(&[]);
    } else {
        w.u32(hierarchy.0)
            .tpm2b(&hash_check_digest(ctx, hierarchy, alg, digest));
    }
}

/// Part 3, 15.4 TPM2_Hash.
#[doc(alias = "TPM2_Hash")]
fn hash(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let data = r.tpm2b(MAX_DIGEST_BUFFER)?;
    let alg = r.u16()?;
    let alg = hash_alg(alg, false)
        .map_err(|rc| r.err(rc))?
        .ok_or(r.err(TpmRc::HASH))?;
    let hierarchy = read_hierarchy_or_null(&mut r)?;
    r.finish()?;
    let digest = alg.digest(&[data]);
    let mut w = Writer::new();
    w.tpm2b(&digest);
    // Unlike a sequence, short data (< 4 octets) gets a ticket here (reference TPM2_Hash).
    let safe = data.len() < 4 || ticket_is_safe(data);
    write_hash_ticket(ctx, &mut w, hierarchy, safe, alg, &digest);
    Ok(Response::params(w))
}

/// Part 3, 17.3 TPM2_HashSequenceStart: TPM_ALG_NULL starts an event sequence (one hash per
/// implemented bank).
#[doc(alias = "TPM2_HashSequenceStart")]
fn hash_sequence_start(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let auth = r.tpm2b(MAX_AUTH)?;
    let alg = r.u16()?;
    let alg = hash_alg(alg, true).map_err(|rc| r.err(rc))?;
    r.finish()?;
    let kind = match alg {
        Some(alg) => SequenceKind::Hash(alg.hasher()),
        None => SequenceKind::Event(HASH_ALGS.iter().map(|a| a.hasher()).collect()),
    };
    let seq = HashSequence {
        auth: AuthValue::new(auth),
        kind,
        ticket_safe: None,
    };
    let handle = ctx
        .tpm
        .vs
        .objects
        .insert(Slot::Sequence(seq))
        .ok_or(TpmRc::OBJECT_MEMORY)?;
    Ok(Response {
        handle: Some(handle),
        params: Writer::new(),
    })
}

/// The sequence behind handle `n` of the request, or TPM_RC_MODE + H when the handle names
/// an object that is not a sequence.
fn sequence<'a>(ctx: &'a mut Ctx<'_>, h: Handle, n: u8) -> TpmResult<&'a mut HashSequence> {
    match ctx.tpm.vs.objects.get_mut(h) {
        Some(Slot::Sequence(seq)) => Ok(seq),
        Some(_) => Err(TpmRc::MODE.handle(n)),
        None => Err(crate::commands::reference_h(n)),
    }
}

fn handle(req: &Request<'_>, i: usize) -> Handle {
    req.handles.get(i).copied().unwrap_or(Handle::NULL)
}

/// Part 3, 17.4 TPM2_SequenceUpdate.
#[doc(alias = "TPM2_SequenceUpdate")]
fn sequence_update(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let data = r.tpm2b(MAX_DIGEST_BUFFER)?;
    r.finish()?;
    let seq = sequence(ctx, handle(req, 0), 1)?;
    match &mut seq.kind {
        SequenceKind::Hash(h) => {
            if seq.ticket_safe.is_none() {
                seq.ticket_safe = Some(ticket_is_safe(data));
            }
            h.update(data);
        }
        SequenceKind::Event(hs) => hs.iter_mut().for_each(|h| h.update(data)),
        SequenceKind::Hmac(m) => m.update(data),
    }
    Ok(Response::empty())
}

/// Part 3, 17.5 TPM2_SequenceComplete: the digest (or HMAC) and, for hash sequences, a
/// hash-check ticket; the sequence is flushed.
#[doc(alias = "TPM2_SequenceComplete")]
fn sequence_complete(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let data = r.tpm2b(MAX_DIGEST_BUFFER)?;
    let hierarchy = read_hierarchy_or_null(&mut r)?;
    r.finish()?;
    let h = handle(req, 0);
    if matches!(sequence(ctx, h, 1)?.kind, SequenceKind::Event(_)) {
        return Err(TpmRc::MODE.handle(1));
    }
    let Some(Slot::Sequence(seq)) = ctx.tpm.vs.objects.remove(h) else {
        return Err(TpmRc::MODE.handle(1));
    };
    let mut w = Writer::new();
    match seq.kind {
        SequenceKind::Hash(mut hasher) => {
            hasher.update(data);
            let alg = hasher.alg();
            let digest = hasher.finish();
            let safe = seq.ticket_safe.unwrap_or_else(|| ticket_is_safe(data));
            w.tpm2b(&digest);
            write_hash_ticket(ctx, &mut w, hierarchy, safe, alg, &digest);
        }
        SequenceKind::Hmac(mut m) => {
            m.update(data);
            w.tpm2b(&m.finish());
            write_hash_ticket(ctx, &mut w, Handle::NULL, false, HashAlg::Sha256, &[]);
        }
        SequenceKind::Event(_) => return Err(TpmRc::MODE.handle(1)),
    }
    Ok(Response::params(w))
}

/// Part 3, 17.6 TPM2_EventSequenceComplete: the digests of every bank, each extended into
/// the PCR unless it is TPM_RH_NULL; the sequence is flushed.
#[doc(alias = "TPM2_EventSequenceComplete")]
fn event_sequence_complete(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let data = r.tpm2b(MAX_DIGEST_BUFFER)?;
    r.finish()?;
    let seq_handle = handle(req, 1);
    if !matches!(sequence(ctx, seq_handle, 2)?.kind, SequenceKind::Event(_)) {
        return Err(TpmRc::MODE.handle(2));
    }
    let pcr = handle(req, 0).pcr_index();
    if let Some(pcr) = pcr {
        check_extend_allowed(ctx, pcr)?;
    }
    let Some(Slot::Sequence(seq)) = ctx.tpm.vs.objects.remove(seq_handle) else {
        return Err(TpmRc::MODE.handle(2));
    };
    let SequenceKind::Event(hashers) = seq.kind else {
        return Err(TpmRc::MODE.handle(2));
    };
    let mut w = Writer::new();
    w.u32(hashers.len() as u32);
    for mut hasher in hashers {
        hasher.update(data);
        let alg = hasher.alg();
        let digest = hasher.finish();
        if let Some(pcr) = pcr {
            extend(ctx, pcr, alg, &digest);
        }
        w.u16(alg.alg_id()).bytes(&digest);
    }
    Ok(Response::params(w))
}
