//! Pieces shared by the object-creating and attesting commands: TPM2B_SENSITIVE_CREATE,
//! TPML_PCR_SELECTION and PCR digests, TPMS_CREATION_DATA, tickets (Part 2, 10.7) with the
//! hierarchy proofs, and TPMS_CLOCK_INFO.

use alloc::vec::Vec;

use zeroize::Zeroizing;

use crate::context::Ctx;
use crate::crypto::hash::HashAlg;
use crate::crypto::kdf;
use crate::handle::Handle;
use crate::marshal::{Reader, Writer};
use crate::object::public::Cursor;
use crate::rc::{TpmRc, TpmResult};

/// TPM_ST tags of tickets and attestations (Part 2, 6.9).
pub mod st {
    pub const ATTEST_CERTIFY: u16 = 0x8017;
    pub const ATTEST_QUOTE: u16 = 0x8018;
    pub const ATTEST_TIME: u16 = 0x8019;
    pub const ATTEST_CREATION: u16 = 0x801A;
    pub const CREATION: u16 = 0x8021;
    pub const VERIFIED: u16 = 0x8022;
    pub const AUTH_SECRET: u16 = 0x8023;
    pub const HASHCHECK: u16 = 0x8024;
    pub const AUTH_SIGNED: u16 = 0x8025;
}

/// TPM_GENERATED_VALUE (Part 2, 6.2).
pub const TPM_GENERATED: u32 = 0xff54_4347;

/// TPMS_SENSITIVE_CREATE: userAuth and data.
#[derive(Debug)]
pub struct SensitiveCreate {
    pub auth: Zeroizing<Vec<u8>>,
    pub data: Zeroizing<Vec<u8>>,
}

/// Reads TPM2B_SENSITIVE_CREATE as the next parameter.
pub fn read_sensitive_create(r: &mut Reader<'_>) -> TpmResult<SensitiveCreate> {
    let outer = r.tpm2b(4096)?;
    let mut c = Cursor::new(outer);
    let parsed = (|| {
        let auth = c.tpm2b(64)?;
        let data = c.tpm2b(256)?;
        if !c.is_empty() {
            return Err(TpmRc::SIZE);
        }
        Ok(SensitiveCreate {
            auth: Zeroizing::new(auth.to_vec()),
            data: Zeroizing::new(data.to_vec()),
        })
    })();
    parsed.map_err(|rc| r.err(rc))
}

/// One bank of a TPML_PCR_SELECTION.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub alg: u16,
    pub select: Vec<u8>,
}

/// Parses TPML_PCR_SELECTION from a cursor.
pub fn parse_pcr_selection(c: &mut Cursor<'_>) -> TpmResult<Vec<Selection>> {
    let count = c.u32()?;
    if count > 16 {
        return Err(TpmRc::SIZE);
    }
    let mut out = Vec::new();
    for _ in 0..count {
        let alg = c.u16()?;
        if HashAlg::from_alg_id(alg).is_none() {
            return Err(TpmRc::HASH);
        }
        let n = usize::from(c.u8()?);
        if !(3..=4).contains(&n) && n != 0 {
            return Err(TpmRc::VALUE);
        }
        out.push(Selection {
            alg,
            select: c.bytes(n)?.to_vec(),
        });
    }
    Ok(out)
}

/// Reads TPML_PCR_SELECTION as the next parameter.
pub fn read_pcr_selection(r: &mut Reader<'_>) -> TpmResult<Vec<Selection>> {
    r.begin();
    let mut c = Cursor::new(r.remaining());
    let sel = parse_pcr_selection(&mut c).map_err(|rc| r.err(rc))?;
    let used = r.remaining().len() - c.buf.len();
    r.raw_bytes(used)?;
    Ok(sel)
}

pub fn write_pcr_selection(w: &mut Writer, sel: &[Selection]) {
    w.u32(sel.len() as u32);
    for s in sel {
        w.u16(s.alg).u8(s.select.len() as u8).bytes(&s.select);
    }
}

/// H_alg of the selected PCR values concatenated (banks in selection order, PCRs ascending);
/// the digest of nothing when no PCR is selected (Part 1, 17.x; Part 3, 18.4).
pub fn pcr_digest(ctx: &Ctx<'_>, alg: HashAlg, sel: &[Selection]) -> Vec<u8> {
    let mut h = alg.hasher();
    for s in sel {
        let Some(bank) = HashAlg::from_alg_id(s.alg) else {
            continue;
        };
        for i in 0..s.select.len() * 8 {
            if s.select.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
                && let Some(v) = ctx.tpm.vs.pcrs.get(bank, i)
            {
                h.update(v);
            }
        }
    }
    h.finish()
}

/// The proof value of a hierarchy (Part 1, 14.4).
pub fn proof(ctx: &Ctx<'_>, hierarchy: Handle) -> Vec<u8> {
    let ps = ctx.ps();
    match hierarchy {
        Handle::OWNER => ps.owner_proof.clone(),
        Handle::ENDORSEMENT => ps.endorsement_proof.clone(),
        Handle::PLATFORM => ps.platform_proof.clone(),
        _ => ctx.tpm.vs.null_proof.clone(),
    }
}

/// HMAC of a ticket with the hierarchy proof (Part 3, 10.x "Ticket Computation").
pub fn ticket_hmac(ctx: &Ctx<'_>, hierarchy: Handle, alg: HashAlg, parts: &[&[u8]]) -> Vec<u8> {
    let p = proof(ctx, hierarchy);
    kdf::hmac(alg, &p, parts)
}

/// Writes a ticket (TPMT_TK_*): tag, hierarchy, digest. Null-hierarchy tickets are empty.
pub fn write_ticket(w: &mut Writer, tag: u16, hierarchy: Handle, digest: &[u8]) {
    w.u16(tag).u32(hierarchy.0).tpm2b(digest);
}

/// TPMS_CLOCK_INFO: clock, resetCount, restartCount, safe.
pub fn write_clock_info(ctx: &Ctx<'_>, w: &mut Writer) {
    let ps = ctx.ps();
    w.u64(ctx.clock())
        .u32(ps.reset_count)
        .u32(ps.restart_count)
        .u8(u8::from(ctx.tpm.vs.clock_safe));
}

/// TPM_PT_FIRMWARE_VERSION_1 || _2 as TPMS_ATTEST.firmwareVersion.
pub const FIRMWARE_VERSION: u64 = 0x0001_0000_0000_0000;

/// TPMS_CREATION_DATA and its hash and ticket (Part 3, 12.1 / 24.1).
pub struct Creation {
    pub data: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Builds TPMS_CREATION_DATA for a new object.
pub fn creation_data(
    ctx: &Ctx<'_>,
    name_alg: HashAlg,
    sel: &[Selection],
    parent_name: &[u8],
    parent_qn: &[u8],
    parent_name_alg: u16,
    outside: &[u8],
) -> Creation {
    let mut w = Writer::new();
    write_pcr_selection(&mut w, sel);
    w.tpm2b(&pcr_digest(ctx, name_alg, sel));
    w.u8(1u8 << ctx.locality.min(4));
    w.u16(parent_name_alg)
        .tpm2b(parent_name)
        .tpm2b(parent_qn)
        .tpm2b(outside);
    let data = w.into_vec();
    let hash = name_alg.digest(&[&data]);
    Creation { data, hash }
}

/// Writes creationData (TPM2B), creationHash, creationTicket for object `name` in `hierarchy`.
pub fn write_creation(
    ctx: &Ctx<'_>,
    w: &mut Writer,
    c: &Creation,
    hierarchy: Handle,
    name_alg: HashAlg,
    name: &[u8],
) {
    w.tpm2b(&c.data).tpm2b(&c.hash);
    let digest = if hierarchy == Handle::NULL {
        Vec::new()
    } else {
        ticket_hmac(
            ctx,
            hierarchy,
            name_alg,
            &[&st::CREATION.to_be_bytes(), name, &c.hash],
        )
    };
    write_ticket(w, st::CREATION, hierarchy, &digest);
}
