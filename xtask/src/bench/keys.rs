//! Key rows of `cargo xtask bench ops` (issue 4, item 5): Create RSA 2048 and ECC P-256,
//! Sign RSA 2048 and ECC P-256, EncryptDecrypt2 AES-128 over 1 KiB and Quote, as raw round
//! trips and as tpm2-tools commands, plus the spread of RSA key generation.
//!
//! [`setup`] gives every server the same persistent keys, made with the same commands in the
//! same order, so the command bytes of every row are the same for all servers:
//!
//! | handle       | key                                                      |
//! |--------------|----------------------------------------------------------|
//! | 0x81000100   | storage primary (RSA 2048, AES-128-CFB): parent of Create |
//! | 0x81000101   | ECC P-256 ECDSA-SHA256 signing key                       |
//! | 0x81000102   | RSA 2048 RSASSA-SHA256 signing key                       |
//! | 0x81000103   | AES-128 SYMCIPHER key (mode chosen by the command)       |
//! | 0x81000104   | restricted ECC P-256 ECDSA-SHA256 attestation key        |
//!
//! Persistent rather than transient because swtpm has only three transient slots.

use anyhow::{Context, Result, bail};
use ukvtpm_tests::raw::{self, Client, Framing, ST_NO_SESSIONS, ST_SESSIONS, password_auth, tpm2b};

const OWNER: u32 = 0x4000_0001;
const RH_NULL: u32 = 0x4000_0007;
const FIRST_TRANSIENT: u32 = 0x8000_0000;

const SRK: u32 = 0x8100_0100;
const ECC_SIGN: u32 = 0x8100_0101;
const RSA_SIGN: u32 = 0x8100_0102;
const AES: u32 = 0x8100_0103;
const ATTEST: u32 = 0x8100_0104;

mod cc {
    pub const EVICT_CONTROL: u32 = 0x120;
    pub const CREATE_PRIMARY: u32 = 0x131;
    pub const CREATE: u32 = 0x153;
    pub const QUOTE: u32 = 0x158;
    pub const SIGN: u32 = 0x15D;
    pub const FLUSH_CONTEXT: u32 = 0x165;
    pub const ENCRYPT_DECRYPT2: u32 = 0x193;
}

/// TPMA_OBJECT: fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth.
const BASE: u32 = 0x0000_0072;
const RESTRICTED: u32 = 0x0001_0000;
const DECRYPT: u32 = 0x0002_0000;
const SIGN: u32 = 0x0004_0000;

/// TPMT_PUBLIC of an RSA 2048 key (SHA-256 Name) with `attrs`, `symmetric` and `scheme`.
fn rsa_template(attrs: u32, symmetric: &[u8], scheme: &[u8]) -> Vec<u8> {
    let mut t = vec![0x00, 0x01, 0x00, 0x0B];
    t.extend_from_slice(&(BASE | attrs).to_be_bytes());
    t.extend_from_slice(&[0, 0]); // authPolicy
    t.extend_from_slice(symmetric);
    t.extend_from_slice(scheme);
    t.extend_from_slice(&[0x08, 0x00, 0, 0, 0, 0, 0, 0]); // 2048 bits, default exponent, unique
    t
}

/// TPMT_PUBLIC of an ECC P-256 ECDSA-SHA256 signing key with `attrs`.
fn ecc_sign_template(attrs: u32) -> Vec<u8> {
    let mut t = vec![0x00, 0x23, 0x00, 0x0B];
    t.extend_from_slice(&(BASE | SIGN | attrs).to_be_bytes());
    t.extend_from_slice(&[0, 0]); // authPolicy
    t.extend_from_slice(&[0x00, 0x10]); // symmetric NULL
    t.extend_from_slice(&[0x00, 0x18, 0x00, 0x0B]); // ECDSA, SHA-256
    t.extend_from_slice(&[0x00, 0x03]); // NIST P-256
    t.extend_from_slice(&[0x00, 0x10]); // kdf NULL
    t.extend_from_slice(&[0, 0, 0, 0]); // unique x, y
    t
}

const NULL_SYM: &[u8] = &[0x00, 0x10];
const AES128_CFB: &[u8] = &[0x00, 0x06, 0x00, 0x80, 0x00, 0x43];
const NULL_SCHEME: &[u8] = &[0x00, 0x10];
const RSASSA_SHA256: &[u8] = &[0x00, 0x14, 0x00, 0x0B];

fn srk_template() -> Vec<u8> {
    rsa_template(RESTRICTED | DECRYPT, AES128_CFB, NULL_SCHEME)
}

fn rsa_sign_template() -> Vec<u8> {
    rsa_template(SIGN, NULL_SYM, RSASSA_SHA256)
}

/// SYMCIPHER AES-128 with a NULL mode, for encryption and decryption.
fn aes_template() -> Vec<u8> {
    let mut t = vec![0x00, 0x25, 0x00, 0x0B];
    t.extend_from_slice(&(BASE | DECRYPT | SIGN).to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x10]);
    t.extend_from_slice(&[0, 0]); // unique
    t
}

/// Command with one handle authorized by the empty password.
fn authorized(code: u32, handles: &[u32], params: &[u8]) -> Vec<u8> {
    let mut rest = Vec::new();
    for h in handles {
        rest.extend_from_slice(&h.to_be_bytes());
    }
    rest.extend_from_slice(&password_auth(b""));
    rest.extend_from_slice(params);
    raw::command(ST_SESSIONS, code, &rest)
}

/// inSensitive (empty), inPublic, outsideInfo (empty), creationPCR (none).
fn creation_params(template: &[u8]) -> Vec<u8> {
    let mut p = vec![0x00, 0x04, 0, 0, 0, 0];
    p.extend_from_slice(&tpm2b(template));
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    p
}

fn create_primary(template: &[u8]) -> Vec<u8> {
    authorized(cc::CREATE_PRIMARY, &[OWNER], &creation_params(template))
}

fn create(template: &[u8]) -> Vec<u8> {
    authorized(cc::CREATE, &[SRK], &creation_params(template))
}

/// Sign a SHA-256 digest with the key's scheme and a NULL hash-check ticket.
fn sign(key: u32) -> Vec<u8> {
    let mut p = tpm2b(&[0x3C; 32]);
    p.extend_from_slice(NULL_SCHEME);
    p.extend_from_slice(&[0x80, 0x24]);
    p.extend_from_slice(&RH_NULL.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    authorized(cc::SIGN, &[key], &p)
}

/// EncryptDecrypt2: encrypt 1 KiB with AES-128-CFB and a zero IV.
fn encrypt_1k() -> Vec<u8> {
    let mut p = tpm2b(&[0x5A; 1024]);
    p.push(0); // decrypt = NO
    p.extend_from_slice(&[0x00, 0x43]); // CFB
    p.extend_from_slice(&tpm2b(&[0; 16]));
    authorized(cc::ENCRYPT_DECRYPT2, &[AES], &p)
}

/// Quote of SHA-256 PCRs 0-7 with the attestation key's scheme.
fn quote() -> Vec<u8> {
    let mut p = tpm2b(&[0x11; 16]);
    p.extend_from_slice(NULL_SCHEME);
    p.extend_from_slice(&raw::pcr_selection(raw::alg::SHA256, 0..8));
    authorized(cc::QUOTE, &[ATTEST], &p)
}

/// Gives the server behind `port` the persistent keys of the module table.
pub fn setup(port: u16) -> Result<()> {
    let mut client = Client::connect(port, Framing::Plain)?;
    let keys = [
        (srk_template(), SRK),
        (ecc_sign_template(0), ECC_SIGN),
        (rsa_sign_template(), RSA_SIGN),
        (aes_template(), AES),
        (ecc_sign_template(RESTRICTED), ATTEST),
    ];
    for (template, persistent) in keys {
        let mut steps = vec![
            ("CreatePrimary", create_primary(&template)),
            (
                "EvictControl",
                authorized(
                    cc::EVICT_CONTROL,
                    &[OWNER, FIRST_TRANSIENT],
                    &persistent.to_be_bytes(),
                ),
            ),
        ];
        steps.push((
            "FlushContext",
            raw::command(
                ST_NO_SESSIONS,
                cc::FLUSH_CONTEXT,
                &FIRST_TRANSIENT.to_be_bytes(),
            ),
        ));
        for (what, command) in steps {
            let response = client.transact(&command)?;
            let rc = response.get(6..10).context("short response")?;
            if rc != [0, 0, 0, 0] {
                bail!(
                    "bench set-up: {what} for {persistent:#x} returned rc 0x{}",
                    raw::hex(rc)
                );
            }
        }
    }
    Ok(())
}

/// The raw operation whose samples are the RSA key generation times.
pub const KEYGEN_OP: &str = "Create RSA 2048";

/// Latency samples per key operation: key generation is slow and its samples are the key
/// generation statistics (at least 50 keys), the others are fast enough for the default.
pub fn calls(op: &str, default: usize) -> usize {
    match op {
        KEYGEN_OP => 50,
        "Create ECC P-256" | "Sign RSA 2048 (RSASSA-SHA256)" => default.min(500),
        _ => default,
    }
}

/// (name, commands) of the raw key operations.
pub fn raw_ops() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        (KEYGEN_OP, vec![create(&rsa_sign_template())]),
        ("Create ECC P-256", vec![create(&ecc_sign_template(0))]),
        ("Sign RSA 2048 (RSASSA-SHA256)", vec![sign(RSA_SIGN)]),
        ("Sign ECC P-256 (ECDSA-SHA256)", vec![sign(ECC_SIGN)]),
        ("EncryptDecrypt2 AES-128-CFB 1 KiB", vec![encrypt_1k()]),
        ("Quote 8 PCRs, ECC P-256 key", vec![quote()]),
    ]
}

/// Whole tpm2-tools commands on the keys of [`setup`] (label, tool, args; `{1k}` is a 1 KiB
/// file).
pub const TOOL_OPS: &[(&str, &str, &[&str])] = &[
    (
        "tpm2_create rsa2048",
        "tpm2_create",
        &["-C", "0x81000100", "-G", "rsa2048"],
    ),
    (
        "tpm2_create ecc256",
        "tpm2_create",
        &["-C", "0x81000100", "-G", "ecc256"],
    ),
    (
        "tpm2_sign rsa2048 1 KiB",
        "tpm2_sign",
        &["-c", "0x81000102", "-g", "sha256", "-o", "sig.bin", "{1k}"],
    ),
    (
        "tpm2_sign ecc256 1 KiB",
        "tpm2_sign",
        &["-c", "0x81000101", "-g", "sha256", "-o", "sig.bin", "{1k}"],
    ),
    (
        "tpm2_encryptdecrypt aes128 cfb 1 KiB",
        "tpm2_encryptdecrypt",
        &["-c", "0x81000103", "-G", "cfb", "-o", "ct.bin", "{1k}"],
    ),
    (
        "tpm2_quote ecc256 sha256:0-7",
        "tpm2_quote",
        &[
            "-c",
            "0x81000104",
            "-l",
            "sha256:0,1,2,3,4,5,6,7",
            "-q",
            "11",
        ],
    ),
];
