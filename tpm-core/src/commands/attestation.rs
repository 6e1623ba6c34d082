//! Part 3, 18 "Attestation Commands": Quote, Certify, CertifyCreation and GetTime.
//! (GetSessionAuditDigest belongs with the sessions.)
//!
//! Every one of them builds a TPMS_ATTEST (Part 2, 10.12.12) and signs its digest with the
//! sign key; the key's scheme wins over the caller's (reference CryptSelectSignScheme). Where
//! Part 3 allows TPM_RH_NULL as the sign handle (Certify, CertifyCreation, GetTime) the
//! attestation is returned unsigned with a TPM_ALG_NULL signature.

use alloc::sync::Arc;
use alloc::vec::Vec;

use subtle::ConstantTimeEq;

use crate::auth::AuthRole;
use crate::commands::signature::{read_sig_scheme, select_scheme, sign_digest};
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc, plain};
use crate::context::Ctx;
use crate::crypto::hash::HashAlg;
use crate::crypto::kdf;
use crate::entity;
use crate::handle::Handle;
use crate::marshal::{Reader, Writer};
use crate::object::creation::{
    self, FIRMWARE_VERSION, TPM_GENERATED, read_pcr_selection, st, write_pcr_selection,
};
use crate::object::public::Scheme;
use crate::object::{Object, alg, attr};
use crate::rc::{TpmRc, TpmResult};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::QUOTE,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: quote,
    },
    CommandDef {
        cc: cc::CERTIFY,
        handles: &[
            auth(HandleKind::Object, AuthRole::Admin),
            auth(HandleKind::ObjectOrNull, AuthRole::User),
        ],
        response_handle: false,
        run: certify,
    },
    CommandDef {
        cc: cc::CERTIFY_CREATION,
        handles: &[
            auth(HandleKind::ObjectOrNull, AuthRole::User),
            plain(HandleKind::Object),
        ],
        response_handle: false,
        run: certify_creation,
    },
    CommandDef {
        cc: cc::GET_TIME,
        handles: &[
            auth(HandleKind::Endorsement, AuthRole::User),
            auth(HandleKind::ObjectOrNull, AuthRole::User),
        ],
        response_handle: false,
        run: get_time,
    },
];

/// The signer of an attestation: a loaded signing key with its chosen scheme, or nobody
/// (TPM_RH_NULL).
pub(crate) struct Signer {
    key: Option<(Arc<Object>, Scheme)>,
}

impl Signer {
    /// Looks up the sign key at `h` (handle number `n`) and settles the scheme with the
    /// caller's `requested` one (parameter `scheme_param`).
    pub(crate) fn new(
        ctx: &mut Ctx<'_>,
        h: Handle,
        n: u8,
        requested: Scheme,
        scheme_param: u8,
    ) -> TpmResult<Self> {
        if h == Handle::NULL {
            return Ok(Self { key: None });
        }
        let key = entity::object(ctx, h).map_err(|rc| rc.handle(n))?;
        if !key.public.has(attr::SIGN) {
            return Err(TpmRc::KEY.handle(n));
        }
        // Reference CryptSelectSignScheme: a key that cannot sign (no private part) or a
        // decrypt-and-sign key without a scheme and no scheme asked for is a scheme error.
        if !key.has_private() {
            return Err(TpmRc::KEY.handle(n));
        }
        let scheme = select_scheme(&key, requested).map_err(|rc| rc.param(scheme_param))?;
        Ok(Self {
            key: Some((key, scheme)),
        })
    }

    /// The hash of the chosen scheme (Quote digests PCRs with it).
    fn hash(&self) -> Option<HashAlg> {
        self.key.as_ref().and_then(|(_, s)| s.hash_alg())
    }

    /// TPMS_ATTEST (reference FillInAttestInfo): magic, type, qualifiedSigner, extraData,
    /// clockInfo, firmwareVersion, then `attested`. The reset and restart counts and the
    /// firmware version are obfuscated unless the signer is in the endorsement or platform
    /// hierarchy (Part 1, 36.x privacy: storage keys must not correlate resets).
    pub(crate) fn attest(&self, ctx: &Ctx<'_>, tag: u16, extra: &[u8], attested: &[u8]) -> Vec<u8> {
        let signer_name: Vec<u8> = match &self.key {
            Some((key, _)) => key.qualified_name.clone(),
            None => Handle::NULL.0.to_be_bytes().to_vec(),
        };
        let ps = ctx.ps();
        let mut reset_count = ps.reset_count;
        let mut restart_count = ps.restart_count;
        let mut firmware = FIRMWARE_VERSION;
        let private = match &self.key {
            Some((key, _)) => !matches!(key.hierarchy, Handle::ENDORSEMENT | Handle::PLATFORM),
            None => true,
        };
        if private {
            let o = kdf::kdfa(
                HashAlg::Sha256,
                &ps.owner_proof,
                b"OBFUSCATE",
                &signer_name,
                &[],
                128,
            );
            let word = |i: usize| {
                let mut b = [0u8; 8];
                if let Some(s) = o.get(i..i + 8) {
                    b.copy_from_slice(s);
                }
                u64::from_le_bytes(b)
            };
            let (o0, o1) = (word(0), word(8));
            firmware = firmware.wrapping_add(o0);
            reset_count = reset_count.wrapping_add((o1 >> 32) as u32);
            restart_count = restart_count.wrapping_add(o1 as u32);
        }
        let mut w = Writer::with_capacity(64 + attested.len());
        w.u32(TPM_GENERATED)
            .u16(tag)
            .tpm2b(&signer_name)
            .tpm2b(extra)
            .u64(ctx.clock())
            .u32(reset_count)
            .u32(restart_count)
            .u8(u8::from(ctx.tpm.vs.clock_safe))
            .u64(firmware)
            .bytes(attested);
        w.into_vec()
    }

    /// Writes TPM2B_ATTEST and TPMT_SIGNATURE (TPM_ALG_NULL when there is no signer).
    pub(crate) fn respond(self, ctx: &mut Ctx<'_>, attest: &[u8]) -> TpmResult<Response> {
        let mut w = Writer::new();
        w.tpm2b(attest);
        match &self.key {
            Some((key, scheme)) => {
                let hash = scheme.hash_alg().ok_or(TpmRc::SCHEME)?;
                let digest = hash.digest(&[attest]);
                sign_digest(ctx, key, *scheme, &digest, &mut w)?;
            }
            None => {
                w.u16(alg::NULL);
            }
        }
        Ok(Response::params(w))
    }
}

/// Reads qualifyingData (TPM2B_DATA, at most a TPMT_HA).
pub(crate) fn read_qualifying(r: &mut Reader<'_>) -> TpmResult<Vec<u8>> {
    Ok(r.tpm2b(2 + 64)?.to_vec())
}

/// Part 3, 18.4 TPM2_Quote: a signed digest of the selected PCRs.
#[doc(alias = "TPM2_Quote")]
fn quote(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let extra = read_qualifying(&mut r)?;
    let requested = read_sig_scheme(&mut r)?;
    let sel = read_pcr_selection(&mut r)?;
    r.finish()?;
    let signer = Signer::new(ctx, req.handles[0], 1, requested, 2)?;
    let hash = signer.hash().ok_or(TpmRc::SCHEME.param(2))?;
    // TPMS_QUOTE_INFO: the selection as given, the digest of those PCRs with the scheme hash.
    let mut q = Writer::new();
    write_pcr_selection(&mut q, &sel);
    q.tpm2b(&creation::pcr_digest(ctx, hash, &sel));
    let attest = signer.attest(ctx, st::ATTEST_QUOTE, &extra, q.as_slice());
    signer.respond(ctx, &attest)
}

/// Part 3, 18.2 TPM2_Certify: the Name and qualified Name of a loaded object, signed.
#[doc(alias = "TPM2_Certify")]
fn certify(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let object = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let extra = read_qualifying(&mut r)?;
    let requested = read_sig_scheme(&mut r)?;
    r.finish()?;
    let signer = Signer::new(ctx, req.handles[1], 2, requested, 2)?;
    let mut a = Writer::new();
    a.tpm2b(&object.name).tpm2b(&object.qualified_name);
    let attest = signer.attest(ctx, st::ATTEST_CERTIFY, &extra, a.as_slice());
    signer.respond(ctx, &attest)
}

/// Part 3, 18.3 TPM2_CertifyCreation: proves that the TPM created an object with the given
/// creation data (checked through the creation ticket).
#[doc(alias = "TPM2_CertifyCreation")]
fn certify_creation(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let object = entity::object(ctx, req.handles[1]).map_err(|rc| rc.handle(2))?;
    let mut r = Reader::params(req.params);
    let extra = read_qualifying(&mut r)?;
    let creation_hash = r.tpm2b(64)?.to_vec();
    let requested = read_sig_scheme(&mut r)?;
    r.begin();
    let tag = r.raw_u16()?;
    let hierarchy = Handle(r.raw_u32()?);
    let ticket = r.raw_tpm2b(64)?.to_vec();
    r.finish()?;
    let signer = Signer::new(ctx, req.handles[0], 1, requested, 3)?;
    // The ticket must be the one Create/CreatePrimary produced for this object (reference
    // TicketComputeCreation): HMAC(proof, TPM_ST_CREATION || Name || creationHash).
    let expected = creation::ticket_hmac(
        ctx,
        hierarchy,
        object.name_alg(),
        &[&st::CREATION.to_be_bytes(), &object.name, &creation_hash],
    );
    if tag != st::CREATION
        || hierarchy == Handle::NULL
        || !matches!(
            hierarchy,
            Handle::OWNER | Handle::ENDORSEMENT | Handle::PLATFORM
        )
        || !bool::from(expected.ct_eq(&ticket))
    {
        return Err(TpmRc::TICKET.param(4));
    }
    let mut a = Writer::new();
    a.tpm2b(&object.name).tpm2b(&creation_hash);
    let attest = signer.attest(ctx, st::ATTEST_CREATION, &extra, a.as_slice());
    signer.respond(ctx, &attest)
}

/// Part 3, 18.7 TPM2_GetTime: the time since the last _TPM_Init and the clock, signed.
#[doc(alias = "TPM2_GetTime")]
fn get_time(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let extra = read_qualifying(&mut r)?;
    let requested = read_sig_scheme(&mut r)?;
    r.finish()?;
    let signer = Signer::new(ctx, req.handles[1], 2, requested, 2)?;
    // TPMS_TIME_ATTEST_INFO: TPMS_TIME_INFO (time, clockInfo) and firmwareVersion, all in
    // the clear (the privacy administrator authorized it).
    let mut a = Writer::new();
    a.u64(ctx.time());
    creation::write_clock_info(ctx, &mut a);
    a.u64(FIRMWARE_VERSION);
    let attest = signer.attest(ctx, st::ATTEST_TIME, &extra, a.as_slice());
    signer.respond(ctx, &attest)
}
