//! Part 3, 22 "Integrity Collection (PCR)": TPM2_PCR_Read, TPM2_PCR_Extend, TPM2_PCR_Event,
//! TPM2_PCR_Reset, TPM2_PCR_Allocate, TPM2_PCR_SetAuthValue, TPM2_PCR_SetAuthPolicy.
//!
//! PCR handles are authorized in the USER role; PCRs 20-22 form the one authorization group
//! and the one policy group ([`crate::state::pcr::in_pcr_group`]), the others have an empty
//! authValue and no policy. The locality rules come from [`crate::state::pcr::pcr_attr`].

use alloc::vec::Vec;

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc};
use crate::context::Ctx;
use crate::crypto::hash::{HASH_ALGS, HashAlg};
use crate::handle::Handle;
use crate::marshal::{Reader, Writer};
use crate::rc::{TpmRc, TpmResult};
use crate::state::pcr::{
    ALL_PCRS, PCR_COUNT, PCR_SELECT_MAX, PCR_SELECT_MIN, PcrSelection, in_pcr_group, pcr_attr,
};
use crate::state::{AuthValue, PolicyDigest};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::PCR_READ,
        handles: &[],
        response_handle: false,
        run: pcr_read,
    },
    CommandDef {
        cc: cc::PCR_EXTEND,
        handles: &[auth(HandleKind::PcrOrNull, AuthRole::User)],
        response_handle: false,
        run: pcr_extend,
    },
    CommandDef {
        cc: cc::PCR_EVENT,
        handles: &[auth(HandleKind::PcrOrNull, AuthRole::User)],
        response_handle: false,
        run: pcr_event,
    },
    CommandDef {
        cc: cc::PCR_RESET,
        handles: &[auth(HandleKind::Pcr, AuthRole::User)],
        response_handle: false,
        run: pcr_reset,
    },
    CommandDef {
        cc: cc::PCR_ALLOCATE,
        handles: &[auth(HandleKind::Platform, AuthRole::User)],
        response_handle: false,
        run: pcr_allocate,
    },
    CommandDef {
        cc: cc::PCR_SET_AUTH_VALUE,
        handles: &[auth(HandleKind::Pcr, AuthRole::User)],
        response_handle: false,
        run: pcr_set_auth_value,
    },
    CommandDef {
        cc: cc::PCR_SET_AUTH_POLICY,
        handles: &[auth(HandleKind::Platform, AuthRole::User)],
        response_handle: false,
        run: pcr_set_auth_policy,
    },
];

/// Largest count accepted in TPML_PCR_SELECTION and TPML_DIGEST_VALUES (HASH_COUNT). libtpms
/// implements four hashes (SHA-512 too) and refuses a fifth entry with TPM_RC_SIZE; we accept
/// the same counts so list-length errors match, and refuse the unknown algorithm instead.
pub const MAX_HASH_LIST: u32 = 4;

/// TPM2B_EVENT and TPM2B_MAX_BUFFER capacity (MAX_DIGEST_BUFFER / 1024).
pub const MAX_EVENT: usize = 1024;

/// At most this many digests in one PCR_Read response (TPML_DIGEST: 8).
const MAX_READ_DIGESTS: usize = 8;

/// Reads a TPMI_ALG_HASH value the engine implements (or `None` for TPM_ALG_NULL when
/// `null_ok`); anything else is TPM_RC_HASH (reference TPMI_ALG_HASH_Unmarshal).
pub fn hash_alg(id: u16, null_ok: bool) -> TpmResult<Option<HashAlg>> {
    match HashAlg::from_alg_id(id) {
        Some(alg) => Ok(Some(alg)),
        None if null_ok && id == 0x0010 => Ok(None),
        None => Err(TpmRc::HASH),
    }
}

/// Reads TPML_PCR_SELECTION as the next parameter with the reference unmarshaller's checks:
/// count > HASH_COUNT → TPM_RC_SIZE, unknown hash → TPM_RC_HASH, sizeofSelect outside
/// PCR_SELECT_MIN..=PCR_SELECT_MAX → TPM_RC_VALUE.
pub fn read_pcr_selection(r: &mut Reader<'_>) -> TpmResult<Vec<PcrSelection>> {
    r.begin();
    let count = r.raw_u32()?;
    if count > MAX_HASH_LIST {
        return Err(r.err(TpmRc::SIZE));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let alg = r.raw_u16()?;
        hash_alg(alg, false).map_err(|rc| r.err(rc))?;
        let size = usize::from(r.raw_u8()?);
        if !(PCR_SELECT_MIN..=PCR_SELECT_MAX).contains(&size) {
            return Err(r.err(TpmRc::VALUE));
        }
        let select = r.raw_bytes(size)?.to_vec();
        out.push(PcrSelection { alg, select });
    }
    Ok(out)
}

/// Writes TPML_PCR_SELECTION.
pub fn write_pcr_selection(w: &mut Writer, sel: &[PcrSelection]) {
    w.u32(sel.len() as u32);
    for s in sel {
        w.u16(s.alg).u8(s.select.len() as u8).bytes(&s.select);
    }
}

/// Reads TPML_DIGEST_VALUES as the next parameter: each TPMT_HA carries a digest of its
/// algorithm's size.
fn read_digest_values<'a>(r: &mut Reader<'a>) -> TpmResult<Vec<(HashAlg, &'a [u8])>> {
    r.begin();
    let count = r.raw_u32()?;
    if count > MAX_HASH_LIST {
        return Err(r.err(TpmRc::SIZE));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let id = r.raw_u16()?;
        let alg = hash_alg(id, false).map_err(|rc| r.err(rc))?;
        // hash_alg(.., false) never yields None.
        let Some(alg) = alg else {
            return Err(r.err(TpmRc::HASH));
        };
        out.push((alg, r.raw_bytes(alg.digest_size())?));
    }
    Ok(out)
}

/// The locality of the command as a TPMA_LOCALITY bit for localities 0-4; extended
/// localities (32 and above) are not allowed to reset or extend any PC Client PCR.
fn locality_bit(locality: u8) -> u8 {
    if locality <= 4 { 1 << locality } else { 0 }
}

/// PCRs whose changes do not move pcrUpdateCounter (TPM_PT_PCR_NO_INCREMENT): the debug
/// PCR 16, the dynamic-OS PCRs 21-22 and the application PCR 23, as libtpms reports them, so
/// that policies bound to other PCRs survive their frequent changes.
pub fn no_increment(pcr: usize) -> bool {
    matches!(pcr, 16 | 21..=23)
}

/// reference PCRChanged: every change counts, except of the no-increment PCRs.
fn pcr_changed(ctx: &mut Ctx<'_>, pcr: usize) {
    if !no_increment(pcr) {
        ctx.tpm.vs.pcr_update_counter = ctx.tpm.vs.pcr_update_counter.wrapping_add(1);
    }
}

/// Extends `digest` into PCR `pcr` of bank `alg` if that bank is allocated.
pub fn extend(ctx: &mut Ctx<'_>, pcr: usize, alg: HashAlg, digest: &[u8]) {
    if ctx.tpm.vs.pcrs.bank(alg).is_some() {
        ctx.tpm.vs.pcrs.extend(alg, pcr, digest);
        pcr_changed(ctx, pcr);
    }
}

/// May the command's locality extend PCR `pcr` (reference PCRIsExtendAllowed)?
pub fn check_extend_allowed(ctx: &Ctx<'_>, pcr: usize) -> TpmResult<()> {
    if pcr_attr(pcr).extend_locality & locality_bit(ctx.locality) == 0 {
        return Err(TpmRc::LOCALITY);
    }
    Ok(())
}

/// Part 3, 22.4 TPM2_PCR_Read: at most eight digests; pcrSelectionOut keeps every entry of
/// the request but only the bits of PCRs returned (reference PCRRead / FilterPcr).
#[doc(alias = "TPM2_PCR_Read")]
fn pcr_read(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let mut sel = read_pcr_selection(&mut r)?;
    r.finish()?;
    let mut digests: Vec<&[u8]> = Vec::new();
    for s in &mut sel {
        let bank = HashAlg::from_alg_id(s.alg).and_then(|a| ctx.tpm.vs.pcrs.bank(a));
        for i in 0..s.select.len() * 8 {
            let Some(octet) = s.select.get_mut(i / 8) else {
                break;
            };
            let bit = 1u8 << (i % 8);
            if *octet & bit == 0 {
                continue;
            }
            // Unallocated banks and PCRs beyond the implemented ones are filtered out, and
            // so is everything past the eighth digest.
            match bank.and_then(|b| b.get(i)) {
                Some(v) if digests.len() < MAX_READ_DIGESTS => digests.push(v),
                _ => *octet &= !bit,
            }
        }
    }
    let mut w = Writer::new();
    w.u32(ctx.tpm.vs.pcr_update_counter);
    write_pcr_selection(&mut w, &sel);
    w.u32(digests.len() as u32);
    for d in digests {
        w.tpm2b(d);
    }
    Ok(Response::params(w))
}

/// Part 3, 22.2 TPM2_PCR_Extend: each digest extends its bank; digests of banks that are not
/// allocated are ignored; TPM_RH_NULL does nothing.
#[doc(alias = "TPM2_PCR_Extend")]
fn pcr_extend(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let digests = read_digest_values(&mut r)?;
    r.finish()?;
    let Some(pcr) = req.handles.first().and_then(|h| h.pcr_index()) else {
        return Ok(Response::empty()); // TPM_RH_NULL
    };
    check_extend_allowed(ctx, pcr)?;
    for (alg, digest) in digests {
        extend(ctx, pcr, alg, digest);
    }
    Ok(Response::empty())
}

/// Part 3, 22.3 TPM2_PCR_Event: the event data hashed with every implemented algorithm,
/// each digest extended into its bank unless the handle is TPM_RH_NULL.
#[doc(alias = "TPM2_PCR_Event")]
fn pcr_event(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let data = r.tpm2b(MAX_EVENT)?;
    r.finish()?;
    let pcr = req
        .handles
        .first()
        .filter(|&&h| h != Handle::NULL)
        .and_then(|h| h.pcr_index());
    if let Some(pcr) = pcr {
        check_extend_allowed(ctx, pcr)?;
    }
    let mut w = Writer::new();
    w.u32(HASH_ALGS.len() as u32);
    for alg in HASH_ALGS {
        let digest = alg.digest(&[data]);
        if let Some(pcr) = pcr {
            extend(ctx, pcr, alg, &digest);
        }
        w.u16(alg.alg_id()).bytes(&digest);
    }
    Ok(Response::params(w))
}

/// Part 3, 22.8 TPM2_PCR_Reset: only PCRs whose reset locality set includes the command's
/// locality (TPM_RC_LOCALITY otherwise); the PCR becomes zero in every bank.
#[doc(alias = "TPM2_PCR_Reset")]
fn pcr_reset(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let Some(pcr) = req.handles.first().and_then(|h| h.pcr_index()) else {
        return Err(TpmRc::VALUE.handle(1));
    };
    if pcr_attr(pcr).reset_locality & locality_bit(ctx.locality) == 0 {
        return Err(TpmRc::LOCALITY);
    }
    // The reference PCRSetValue(handle, 0): a reset PCR reads as zeros, the DRTM PCRs
    // 17-22 included (their all-ones value only exists between TPM Reset and the first
    // reset).
    for bank in &mut ctx.tpm.vs.pcrs.banks {
        if let Some(v) = bank.values.get_mut(pcr) {
            v.iter_mut().for_each(|b| *b = 0);
        }
    }
    pcr_changed(ctx, pcr);
    Ok(Response::empty())
}

/// Largest TPM2B_DIGEST on the wire (sizeof(TPMU_HA)).
const MAX_TPM2B_DIGEST: usize = 64;

/// Part 3, 22.7 TPM2_PCR_SetAuthValue: the authValue of the PCR's authorization group
/// (trailing zeros dropped). A PCR outside any group is TPM_RC_VALUE, as the reference answers.
#[doc(alias = "TPM2_PCR_SetAuthValue")]
fn pcr_set_auth_value(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let new_auth = AuthValue::new(r.tpm2b(MAX_TPM2B_DIGEST)?);
    r.finish()?;
    match req.handles.first().and_then(|h| h.pcr_index()) {
        Some(i) if in_pcr_group(i) => {
            ctx.tpm.vs.pcr_auth = new_auth;
            Ok(Response::empty())
        }
        _ => Err(TpmRc::VALUE),
    }
}

/// Part 3, 22.6 TPM2_PCR_SetAuthPolicy (platform): the authPolicy of the policy group of PCR
/// `pcrNum`. The policy must have the digest size of `hashAlg` (empty with TPM_ALG_NULL):
/// TPM_RC_SIZE + P1; a PCR outside any group is TPM_RC_VALUE + P3.
#[doc(alias = "TPM2_PCR_SetAuthPolicy")]
fn pcr_set_auth_policy(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let digest = r.tpm2b(MAX_TPM2B_DIGEST)?;
    let alg_id = r.u16()?;
    let alg = hash_alg(alg_id, true).map_err(|rc| r.err(rc))?;
    // TPMI_DH_PCR: an implemented PCR index.
    let pcr = Handle(r.u32()?)
        .pcr_index()
        .filter(|&i| i < PCR_COUNT)
        .ok_or_else(|| r.err(TpmRc::VALUE))?;
    r.finish()?;
    if digest.len() != alg.map_or(0, |a| a.digest_size()) {
        return Err(TpmRc::SIZE.param(1));
    }
    if !in_pcr_group(pcr) {
        return Err(TpmRc::VALUE.param(3));
    }
    ctx.ps_mut().pcr_policy = PolicyDigest {
        alg: alg_id,
        digest: digest.to_vec(),
    };
    Ok(Response::empty())
}

/// The H-CRTM and D-CRTM PCRs (PC Client profile): an allocation must keep each in some
/// bank (reference PCRAllocate, HCRTM_PCR and DRTM_PCR).
const HCRTM_PCR: usize = 0;
const DRTM_PCR: usize = 17;

/// Part 3, 22.5 TPM2_PCR_Allocate (platform): the allocation of the next TPM Reset. As the
/// reference PCRAllocate: it starts from the current allocation, each bank in the request
/// replaces that bank's (the last entry wins); TPM_RC_PCR when neither PCR 0 nor PCR 17
/// would be allocated in any bank. maxPCR is the number of PCRs, sizeNeeded the digest octets
/// of the new allocation, sizeAvailable those of every PCR in every bank (there is always
/// room, so allocationSuccess is YES).
#[doc(alias = "TPM2_PCR_Allocate")]
fn pcr_allocate(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let sel = read_pcr_selection(&mut r)?;
    r.finish()?;
    let mut allocation = ctx.tpm.vs.pcrs.allocation();
    let mut size_needed = 0u32;
    for s in &sel {
        let bits = s
            .select
            .iter()
            .take(4)
            .enumerate()
            .fold(0u32, |m, (i, &b)| m | u32::from(b) << (8 * i));
        if let Some(entry) = allocation.iter_mut().find(|(a, _)| a.alg_id() == s.alg) {
            entry.1 = bits;
        }
    }
    let allocated = |pcr: usize| allocation.iter().any(|(_, bits)| bits & (1 << pcr) != 0);
    if !allocated(HCRTM_PCR) || !allocated(DRTM_PCR) {
        return Err(TpmRc::PCR);
    }
    for (alg, bits) in &allocation {
        size_needed += bits.count_ones() * alg.digest_size() as u32;
    }
    let size_available: u32 = HASH_ALGS
        .iter()
        .map(|a| a.digest_size() as u32 * PCR_COUNT as u32)
        .sum();
    for entry in &mut allocation {
        entry.1 &= ALL_PCRS;
    }
    if ctx.ps().pcr_allocated != allocation {
        ctx.ps_mut().pcr_allocated = allocation;
    }
    let mut w = Writer::new();
    w.u8(1)
        .u32(PCR_COUNT as u32)
        .u32(size_needed)
        .u32(size_available);
    Ok(Response::params(w))
}
