//! NV and policy-session rows of `cargo xtask bench ops` (issue 5, item 7): a durable 32-byte
//! NV_Write (every one is committed to disk before it is acknowledged) and an Unseal through a
//! policy session (PolicyPassword, then Unseal with the password in the session), raw and as
//! tpm2-tools commands.
//!
//! [`setup`] runs after `keys::setup` (it needs the storage primary 0x81000100) and gives every
//! server the same objects, so the command bytes of every row are identical:
//!
//! | handle      | what                                                              |
//! |-------------|-------------------------------------------------------------------|
//! | 0x01500500  | NV index, 32 bytes, ownerread/ownerwrite                          |
//! | 0x81000110  | sealed data, authPolicy = PolicyPassword, authValue "bench"       |
//! | 0x03000000  | a policy session (the first session slot on both servers)         |

use anyhow::{Context, Result, bail, ensure};
use ukvtpm_tests::raw::{self, Client, Framing, ST_NO_SESSIONS, ST_SESSIONS, password_auth, tpm2b};

const OWNER: u32 = 0x4000_0001;
const RH_NULL: u32 = 0x4000_0007;
const SRK: u32 = 0x8100_0100;
const NV_INDEX: u32 = 0x0150_0500;
const SEALED: u32 = 0x8100_0110;
const POLICY_SESSION: u32 = 0x0300_0000;
const SEAL_AUTH: &[u8] = b"bench";

mod cc {
    pub const EVICT_CONTROL: u32 = 0x120;
    pub const NV_DEFINE_SPACE: u32 = 0x12A;
    pub const NV_WRITE: u32 = 0x137;
    pub const CREATE: u32 = 0x153;
    pub const LOAD: u32 = 0x157;
    pub const UNSEAL: u32 = 0x15E;
    pub const FLUSH_CONTEXT: u32 = 0x165;
    pub const POLICY_AUTH_VALUE: u32 = 0x16B;
    pub const START_AUTH_SESSION: u32 = 0x176;
    pub const POLICY_PASSWORD: u32 = 0x18C;
}

fn authorized(code: u32, handles: &[u32], params: &[u8]) -> Vec<u8> {
    let mut rest = Vec::new();
    for h in handles {
        rest.extend_from_slice(&h.to_be_bytes());
    }
    rest.extend_from_slice(&password_auth(b""));
    rest.extend_from_slice(params);
    raw::command(ST_SESSIONS, code, &rest)
}

/// PolicyPassword's digest in a SHA-256 session: H(0^32 || TPM_CC_PolicyAuthValue).
fn policy_password_digest() -> Result<Vec<u8>> {
    let mut input = vec![0u8; 32];
    input.extend_from_slice(&cc::POLICY_AUTH_VALUE.to_be_bytes());
    let hex = ukvtpm_tests::util::reference_digest("sha256", &input)?;
    ukvtpm_tests::util::unhex(&hex)
}

fn nv_write_32() -> Vec<u8> {
    let mut p = tpm2b(&[0xA5; 32]);
    p.extend_from_slice(&0u16.to_be_bytes());
    authorized(cc::NV_WRITE, &[OWNER, NV_INDEX], &p)
}

fn policy_password() -> Vec<u8> {
    raw::command(
        ST_NO_SESSIONS,
        cc::POLICY_PASSWORD,
        &POLICY_SESSION.to_be_bytes(),
    )
}

/// Unseal authorized by the policy session, which carries the password in the clear.
fn unseal() -> Vec<u8> {
    let mut session = POLICY_SESSION.to_be_bytes().to_vec();
    session.extend_from_slice(&tpm2b(&[]));
    session.push(0x01); // continueSession
    session.extend_from_slice(&tpm2b(SEAL_AUTH));
    let mut rest = SEALED.to_be_bytes().to_vec();
    rest.extend_from_slice(&(session.len() as u32).to_be_bytes());
    rest.extend_from_slice(&session);
    raw::command(ST_SESSIONS, cc::UNSEAL, &rest)
}

/// Sends a set-up command; TPM_RC_RETRY (libtpms asks for it now and then) is resent.
fn check(client: &mut Client, what: &str, command: &[u8]) -> Result<Vec<u8>> {
    for _ in 0..20 {
        let response = client.transact(command)?;
        let rc = response.get(6..10).context("short response")?;
        if rc == [0, 0, 0x09, 0x22] {
            continue;
        }
        if rc != [0, 0, 0, 0] {
            bail!("bench set-up: {what} returned rc 0x{}", raw::hex(rc));
        }
        return Ok(response);
    }
    bail!("bench set-up: {what} kept returning TPM_RC_RETRY")
}

/// A TPM2B starting at `at` in `buf`: its bytes and the offset after it.
fn take_tpm2b(buf: &[u8], at: usize) -> Result<(&[u8], usize)> {
    let size = buf.get(at..at + 2).context("short response")?;
    let n = usize::from(u16::from_be_bytes([size[0], size[1]]));
    let body = buf.get(at + 2..at + 2 + n).context("short response")?;
    Ok((body, at + 2 + n))
}

/// Gives the server behind `port` the NV index, the sealed object and the policy session of
/// the module table.
pub fn setup(port: u16) -> Result<()> {
    let mut client = Client::connect(port, Framing::Plain)?;
    let mut public = NV_INDEX.to_be_bytes().to_vec();
    public.extend_from_slice(&0x000Bu16.to_be_bytes());
    public.extend_from_slice(&0x0002_0002u32.to_be_bytes()); // ownerread | ownerwrite
    public.extend_from_slice(&tpm2b(&[]));
    public.extend_from_slice(&32u16.to_be_bytes());
    let mut p = tpm2b(&[]);
    p.extend_from_slice(&tpm2b(&public));
    check(
        &mut client,
        "NV_DefineSpace",
        &authorized(cc::NV_DEFINE_SPACE, &[OWNER], &p),
    )?;
    check(&mut client, "NV_Write", &nv_write_32())?;

    // Sealed data: KEYEDHASH, fixedTPM | fixedParent, policy only (no userWithAuth).
    let mut template = vec![0x00, 0x08, 0x00, 0x0B];
    template.extend_from_slice(&0x0000_0012u32.to_be_bytes());
    template.extend_from_slice(&tpm2b(&policy_password_digest()?));
    template.extend_from_slice(&[0x00, 0x10]); // scheme NULL
    template.extend_from_slice(&tpm2b(&[])); // unique
    let mut sensitive = tpm2b(SEAL_AUTH);
    sensitive.extend_from_slice(&tpm2b(b"benchmark secret"));
    let mut p = tpm2b(&sensitive);
    p.extend_from_slice(&tpm2b(&template));
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // outsideInfo, creationPCR
    let created = check(
        &mut client,
        "Create sealed",
        &authorized(cc::CREATE, &[SRK], &p),
    )?;
    // Response: header, parameterSize, outPrivate, outPublic, ...
    let (private, next) = take_tpm2b(&created, 14)?;
    let (public, _) = take_tpm2b(&created, next)?;
    let mut p = tpm2b(private);
    p.extend_from_slice(&tpm2b(public));
    let loaded = check(
        &mut client,
        "Load sealed",
        &authorized(cc::LOAD, &[SRK], &p),
    )?;
    let handle = loaded.get(10..14).context("short Load response")?;
    let handle = u32::from_be_bytes([handle[0], handle[1], handle[2], handle[3]]);
    check(
        &mut client,
        "EvictControl sealed",
        &authorized(cc::EVICT_CONTROL, &[OWNER, handle], &SEALED.to_be_bytes()),
    )?;
    check(
        &mut client,
        "FlushContext sealed",
        &raw::command(ST_NO_SESSIONS, cc::FLUSH_CONTEXT, &handle.to_be_bytes()),
    )?;

    // The policy session: unsalted, unbound, no parameter encryption, SHA-256.
    let mut rest = RH_NULL.to_be_bytes().to_vec();
    rest.extend_from_slice(&RH_NULL.to_be_bytes());
    rest.extend_from_slice(&tpm2b(&[0x42; 16]));
    rest.extend_from_slice(&tpm2b(&[]));
    rest.push(0x01); // TPM_SE_POLICY
    rest.extend_from_slice(&[0x00, 0x10]); // symmetric NULL
    rest.extend_from_slice(&[0x00, 0x0B]);
    let started = check(
        &mut client,
        "StartAuthSession",
        &raw::command(ST_NO_SESSIONS, cc::START_AUTH_SESSION, &rest),
    )?;
    let session = started
        .get(10..14)
        .context("short StartAuthSession response")?;
    ensure!(
        session == POLICY_SESSION.to_be_bytes(),
        "the policy session got handle 0x{}, expected {POLICY_SESSION:#x}",
        raw::hex(session)
    );
    // One round to prove the rows work.
    check(&mut client, "PolicyPassword", &policy_password())?;
    check(&mut client, "Unseal", &unseal())?;
    Ok(())
}

/// (name, commands) of the raw NV and policy rows.
pub fn raw_ops() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("NV_Write 32 bytes (durable)", vec![nv_write_32()]),
        (
            "Unseal via policy session (PolicyPassword + Unseal)",
            vec![policy_password(), unseal()],
        ),
    ]
}

/// Whole tpm2-tools commands on the objects of [`setup`].
pub const TOOL_OPS: &[(&str, &str, &[&str])] = &[(
    "tpm2_nvread 32 bytes",
    "tpm2_nvread",
    &["0x1500500", "-C", "o", "-s", "32"],
)];
