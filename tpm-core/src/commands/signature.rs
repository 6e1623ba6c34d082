//! Part 3, 20 "Signing and Signature Verification": Sign and VerifySignature, plus the
//! signing helper the attestation commands share (scheme selection per the reference
//! CryptSelectSignScheme, TPMT_SIGNATURE marshalling).

use alloc::vec::Vec;

use subtle::ConstantTimeEq;

use crate::auth::AuthRole;
use crate::commands::{CommandDef, HandleKind, Request, Response, auth, cc, plain};
use crate::context::Ctx;
use crate::crypto::hash::HashAlg;
use crate::crypto::kdf;
use crate::crypto::rng::FillRng;
use crate::crypto::{ecc, rsa_ops};
use crate::entity;
use crate::handle::Handle;
use crate::marshal::{Reader, Writer};
use crate::object::creation::{self, st};
use crate::object::public::{Cursor, Scheme};
use crate::object::{Key, Object, Params, alg, attr};
use crate::rc::{TpmRc, TpmResult};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::SIGN,
        handles: &[auth(HandleKind::Object, AuthRole::User)],
        response_handle: false,
        run: sign,
    },
    CommandDef {
        cc: cc::VERIFY_SIGNATURE,
        handles: &[plain(HandleKind::Object)],
        response_handle: false,
        run: verify_signature,
    },
];

/// Reads TPMT_SIG_SCHEME+ as the next parameter.
pub fn read_sig_scheme(r: &mut Reader<'_>) -> TpmResult<Scheme> {
    r.begin();
    let mut c = Cursor::new(r.remaining());
    let scheme = Scheme::parse(
        &mut c,
        &[alg::RSASSA, alg::RSAPSS, alg::ECDSA, alg::ECDAA, alg::HMAC],
    )
    .map_err(|rc| r.err(rc))?;
    let used = r.remaining().len() - c.buf.len();
    r.raw_bytes(used)?;
    Ok(scheme)
}

/// The scheme a signing key uses: its own, or the caller's when the key has none; a
/// different caller scheme is TPM_RC_SCHEME (reference CryptSelectSignScheme).
pub fn select_scheme(key: &Object, requested: Scheme) -> TpmResult<Scheme> {
    let own = key.public.scheme();
    if !key.public.has(attr::SIGN) {
        return Err(TpmRc::KEY);
    }
    let chosen = if own.is_null() || requested.is_null() {
        if own.is_null() { requested } else { own }
    } else if requested.alg == own.alg && requested.hash == own.hash {
        // The caller's scheme: for ECDAA its count names the commit to use.
        requested
    } else {
        return Err(TpmRc::SCHEME);
    };
    let fits = match key.public.params {
        Params::Rsa { .. } => matches!(chosen.alg, alg::RSASSA | alg::RSAPSS),
        Params::Ecc { .. } => matches!(chosen.alg, alg::ECDSA | alg::ECDAA),
        Params::KeyedHash { .. } => chosen.alg == alg::HMAC,
        Params::SymCipher { .. } => false,
    };
    if !fits || chosen.hash_alg().is_none() {
        return Err(TpmRc::SCHEME);
    }
    Ok(chosen)
}

/// Signs `digest` with `key` under `scheme` and writes TPMT_SIGNATURE.
pub fn sign_digest(
    ctx: &mut Ctx<'_>,
    key: &Object,
    scheme: Scheme,
    digest: &[u8],
    w: &mut Writer,
) -> TpmResult<()> {
    let hash = scheme.hash_alg().ok_or(TpmRc::SCHEME)?;
    w.u16(scheme.alg).u16(scheme.hash);
    match (&key.key, scheme.alg) {
        (Key::RsaPrivate(k), alg::RSASSA | alg::RSAPSS) => {
            let mut fill = |b: &mut [u8]| ctx.random(b);
            let mut rng = FillRng(&mut fill);
            let sig = if scheme.alg == alg::RSASSA {
                rsa_ops::sign_pkcs1(&mut rng, k, hash, digest)?
            } else {
                rsa_ops::sign_pss(&mut rng, k, hash, digest)?
            };
            w.tpm2b(&sig);
        }
        (Key::Ecc { d: Some(d), .. }, alg::ECDSA) => {
            let (r, s) = d.sign(digest)?;
            w.tpm2b(&r).tpm2b(&s);
        }
        (
            Key::Ecc {
                curve, d: Some(d), ..
            },
            alg::ECDAA,
        ) => {
            // Reference BnSignEcdaa: r is the scalar of the commit `count` names (TPM_RC_VALUE
            // when it is not outstanding); nonceK is fresh; T = H(nonceK || digest);
            // s = (r + T·d) mod n. The signature is (nonceK, s) and the commit is used up.
            let commits = &ctx.tpm.vs.commit;
            let count = commits.count_of(scheme.count).ok_or(TpmRc::VALUE)?;
            let r = commits.scalar(*curve, count, &key.name)?;
            let nonce = ecc::generate(*curve, |b| ctx.random(b))?;
            let first = nonce.iter().position(|&b| b != 0).unwrap_or(nonce.len());
            let nonce = nonce.get(first..).unwrap_or_default();
            let t = hash.digest(&[nonce, digest]);
            let s = ecc::ecdaa_s(*curve, &r, &t, d).ok_or(TpmRc::NO_RESULT)?;
            ctx.tpm.vs.commit.end(scheme.count);
            w.tpm2b(nonce).tpm2b(&s);
        }
        (Key::Symmetric, alg::HMAC) => {
            let mac = kdf::hmac(hash, key.secret()?, &[digest]);
            w.bytes(&mac);
        }
        _ => return Err(TpmRc::KEY),
    }
    Ok(())
}

/// The hash-check ticket digest Hash/SequenceComplete produce (reference
/// TicketComputeHashCheck with TPM_PT_CONTEXT_HASH = SHA-256): HMAC(proof(hierarchy),
/// TPM_ST_HASHCHECK || hashAlg || digest).
fn hash_check(ctx: &Ctx<'_>, hierarchy: Handle, alg: HashAlg, digest: &[u8]) -> Vec<u8> {
    creation::ticket_hmac(
        ctx,
        hierarchy,
        HashAlg::Sha256,
        &[
            &st::HASHCHECK.to_be_bytes(),
            &alg.alg_id().to_be_bytes(),
            digest,
        ],
    )
}

/// Part 3, 20.2 TPM2_Sign.
#[doc(alias = "TPM2_Sign")]
fn sign(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let digest = r.tpm2b(64)?;
    let requested = read_sig_scheme(&mut r)?;
    r.begin();
    let tag = r.raw_u16()?;
    let hierarchy = Handle(r.raw_u32()?);
    let ticket = r.raw_tpm2b(64)?;
    r.finish()?;
    if tag != st::HASHCHECK {
        return Err(TpmRc::TAG.param(3));
    }
    if !key.public.has(attr::SIGN) {
        return Err(TpmRc::KEY.handle(1));
    }
    let scheme = select_scheme(&key, requested).map_err(|rc| rc.param(2))?;
    let hash = scheme.hash_alg().ok_or(TpmRc::SCHEME.param(2))?;
    if digest.len() != hash.digest_size() {
        return Err(TpmRc::SIZE.param(1));
    }
    // A restricted key signs only digests the TPM computed from data that is not a
    // TPM-generated structure: the hash-check ticket proves it (Part 1, 11.4.6.3).
    if key.public.has(attr::RESTRICTED) {
        let expected = hash_check(ctx, hierarchy, hash, digest);
        if hierarchy == Handle::NULL || !bool::from(expected.ct_eq(ticket)) {
            return Err(TpmRc::TICKET.param(3));
        }
    }
    let mut w = Writer::new();
    sign_digest(ctx, &key, scheme, digest, &mut w)?;
    Ok(Response::params(w))
}

/// Length of the TPMT_SIGNATURE at the start of `buf` (Part 2, 11.3.4), checked as the
/// reference unmarshals it. A command's parameters are unmarshalled whole before the command
/// looks at them (Part 3, 5.2), so a signature whose algorithm does not fit the key still
/// parses: TPM2_PolicySigned in a trial session never verifies it (tpm2-tools sends an empty
/// RSASSA signature with an ECC key there).
pub fn signature_len(buf: &[u8]) -> TpmResult<usize> {
    let mut c = Cursor::new(buf);
    let hash = |c: &mut Cursor<'_>| HashAlg::from_alg_id(c.u16()?).ok_or(TpmRc::HASH);
    match c.u16()? {
        alg::NULL => {}
        alg::RSASSA | alg::RSAPSS => {
            hash(&mut c)?;
            c.tpm2b(512)?;
        }
        alg::ECDSA | alg::ECDAA | alg::SM2 | alg::ECSCHNORR => {
            hash(&mut c)?;
            c.tpm2b(66)?;
            c.tpm2b(66)?;
        }
        alg::HMAC => {
            let h = hash(&mut c)?;
            c.bytes(h.digest_size())?;
        }
        _ => return Err(TpmRc::SCHEME),
    }
    Ok(buf.len() - c.buf.len())
}

/// Verifies a TPMT_SIGNATURE read from `c` over `digest` with `key`.
pub fn verify(key: &Object, digest: &[u8], c: &mut Cursor<'_>) -> TpmResult<bool> {
    let sig_alg = c.u16()?;
    let hash = HashAlg::from_alg_id(c.u16()?).ok_or(TpmRc::HASH)?;
    Ok(match (&key.key, sig_alg) {
        (Key::RsaPrivate(_) | Key::RsaPublic(_), alg::RSASSA | alg::RSAPSS) => {
            let sig = c.tpm2b(512)?;
            let public = match &key.key {
                Key::RsaPrivate(k) => k.as_public_key().clone(),
                Key::RsaPublic(k) => k.clone(),
                _ => return Err(TpmRc::KEY),
            };
            if sig_alg == alg::RSASSA {
                rsa_ops::verify_pkcs1(&public, hash, digest, sig)
            } else {
                rsa_ops::verify_pss(&public, hash, digest, sig)
            }
        }
        (Key::Ecc { curve, q, .. }, alg::ECDSA) => {
            let r = c.tpm2b(66)?;
            let s = c.tpm2b(66)?;
            ecc::verify(*curve, q, digest, r, s)
        }
        (Key::Symmetric, alg::HMAC) => {
            let mac = c.bytes(hash.digest_size())?;
            let expected = kdf::hmac(hash, key.secret()?, &[digest]);
            bool::from(expected.ct_eq(mac))
        }
        _ => return Err(TpmRc::SCHEME),
    })
}

/// Part 3, 20.1 TPM2_VerifySignature: a TPMT_TK_VERIFIED ticket on success.
#[doc(alias = "TPM2_VerifySignature")]
fn verify_signature(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let key = entity::object(ctx, req.handles[0]).map_err(|rc| rc.handle(1))?;
    let mut r = Reader::params(req.params);
    let digest = r.tpm2b(64)?;
    r.begin();
    let mut c = Cursor::new(r.remaining());
    let ok = verify(&key, digest, &mut c).map_err(|rc| r.err(rc))?;
    let used = r.remaining().len() - c.buf.len();
    r.raw_bytes(used)?;
    r.finish()?;
    if !key.public.has(attr::SIGN) {
        return Err(TpmRc::ATTRIBUTES.handle(1));
    }
    if !ok {
        return Err(TpmRc::SIGNATURE.param(2));
    }
    let mut w = Writer::new();
    let hierarchy = key.hierarchy;
    let t = if hierarchy == Handle::NULL {
        Vec::new()
    } else {
        creation::ticket_hmac(
            ctx,
            hierarchy,
            key.name_alg(),
            &[&st::VERIFIED.to_be_bytes(), digest, &key.name],
        )
    };
    creation::write_ticket(&mut w, st::VERIFIED, hierarchy, &t);
    Ok(Response::params(w))
}
