//! Part 3, 16 "Random Number Generator": TPM2_GetRandom and TPM2_StirRandom.

use crate::commands::{CommandDef, Request, Response, cc};
use crate::context::Ctx;
use crate::crypto::hash::MAX_DIGEST_SIZE;
use crate::marshal::{Reader, Writer};
use crate::rc::TpmResult;

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::GET_RANDOM,
        handles: &[],
        response_handle: false,
        run: get_random,
    },
    CommandDef {
        cc: cc::STIR_RANDOM,
        handles: &[],
        response_handle: false,
        run: stir_random,
    },
];

/// Part 3, 16.1 TPM2_GetRandom: at most sizeof(TPMU_HA) bytes per call (the largest digest
/// the TPM implements); larger requests are truncated, not refused.
#[doc(alias = "TPM2_GetRandom")]
fn get_random(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let requested = usize::from(r.u16()?);
    r.finish()?;
    let n = requested.min(MAX_DIGEST_SIZE);
    let mut buf = [0u8; MAX_DIGEST_SIZE];
    ctx.random(&mut buf[..n]);
    let mut out = Writer::with_capacity(2 + n);
    out.tpm2b(&buf[..n]);
    Ok(Response::params(out))
}

/// Part 3, 16.2 TPM2_StirRandom: mixes caller data into the DRBG state.
#[doc(alias = "TPM2_StirRandom")]
fn stir_random(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    // TPM2B_SENSITIVE_DATA: at most MAX_SYM_DATA (128) octets.
    let data = r.tpm2b(128)?;
    r.finish()?;
    ctx.tpm.drbg.stir(data);
    Ok(Response::empty())
}
