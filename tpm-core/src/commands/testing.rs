//! Part 3, 10 "Testing": TPM2_SelfTest, TPM2_IncrementalSelfTest, TPM2_GetTestResult.
//!
//! The algorithms are RustCrypto implementations with their own known-answer tests; the
//! engine runs a short known-answer check of each hash on SelfTest so a broken build fails
//! loudly (TPM_RC_FAILURE) rather than producing wrong digests.

use crate::commands::{CommandDef, Request, Response, cc};
use crate::context::Ctx;
use crate::crypto::hash::HashAlg;
use crate::marshal::{Reader, Writer};
use crate::rc::{TpmRc, TpmResult};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::SELF_TEST,
        handles: &[],
        response_handle: false,
        run: self_test,
    },
    CommandDef {
        cc: cc::INCREMENTAL_SELF_TEST,
        handles: &[],
        response_handle: false,
        run: incremental_self_test,
    },
    CommandDef {
        cc: cc::GET_TEST_RESULT,
        handles: &[],
        response_handle: false,
        run: get_test_result,
    },
];

/// FIPS 180 "abc" digests, first four octets.
fn known_answers_pass() -> bool {
    HashAlg::Sha1
        .digest(&[b"abc"])
        .starts_with(&[0xa9, 0x99, 0x3e, 0x36])
        && HashAlg::Sha256
            .digest(&[b"abc"])
            .starts_with(&[0xba, 0x78, 0x16, 0xbf])
        && HashAlg::Sha384
            .digest(&[b"abc"])
            .starts_with(&[0xcb, 0x00, 0x75, 0x3f])
}

/// Part 3, 10.2 TPM2_SelfTest.
#[doc(alias = "TPM2_SelfTest")]
fn self_test(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let _full_test = r.yes_no()?;
    r.finish()?;
    if !known_answers_pass() {
        return Err(TpmRc::FAILURE);
    }
    ctx.tpm.vs.self_tested = true;
    Ok(Response::empty())
}

/// Part 3, 10.3 TPM2_IncrementalSelfTest: every algorithm is already tested, so the list of
/// algorithms still to test (toDoList) is empty.
#[doc(alias = "TPM2_IncrementalSelfTest")]
fn incremental_self_test(_ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    // TPML_ALG toTest: count then TPM_ALG_IDs (at most MAX_ALG_LIST_SIZE = 64).
    r.begin();
    let count = r.raw_u32()? as usize;
    if count > 64 {
        return Err(r.err(TpmRc::SIZE));
    }
    for _ in 0..count {
        r.raw_u16()?;
    }
    r.finish()?;
    let mut out = Writer::new();
    out.u32(0);
    Ok(Response::params(out))
}

/// Part 3, 10.4 TPM2_GetTestResult: no manufacturer data, TPM_RC_SUCCESS.
#[doc(alias = "TPM2_GetTestResult")]
fn get_test_result(_ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    Reader::params(req.params).finish()?;
    let mut out = Writer::new();
    out.tpm2b(&[]).u32(TpmRc::SUCCESS.0);
    Ok(Response::params(out))
}
