//! Differential robustness test (issue 3, item 6): malformed commands sent raw to swtpm and to
//! `ukvtpm serve`; both must give the same outcome (same response tag and response code, or both
//! close the connection without answering).
//!
//! Every case is sent on its own connection (swtpm serves one connection at a time and must not
//! be pipelined, see swtpm-protocol.md), written in one write, then the connection is
//! half-closed so a server waiting for more bytes sees the end of input. Cases run in table
//! order against one server of each kind, so state-changing cases affect both alike.
//!
//! The test prints the whole table (hex command, swtpm outcome, ukvtpm outcome) so mismatches can
//! be fixed one by one.

use std::time::Duration;

use anyhow::{Result, bail};
use ukvtpm_tests::raw::{
    self, Framing, Outcome, RS_PW, ST_NO_SESSIONS, ST_SESSIONS, alg, cc, command, hex,
    pcr_selection, tpm2b,
};
use ukvtpm_tests::server::with_logs;
use ukvtpm_tests::{Kind, Protocol, Server};

/// One malformed (or borderline) command.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
}

const OWNER: u32 = 0x4000_0001;
const NULL: u32 = 0x4000_0007;
const LOCKOUT: u32 = 0x4000_000A;
const PLATFORM: u32 = 0x4000_000C;

fn case(name: &'static str, bytes: Vec<u8>) -> Case {
    Case { name, bytes }
}

/// `bytes` with the commandSize field replaced by `size`.
fn with_size(mut bytes: Vec<u8>, size: u32) -> Vec<u8> {
    bytes[2..6].copy_from_slice(&size.to_be_bytes());
    bytes
}

/// `bytes` with the tag replaced.
fn with_tag(mut bytes: Vec<u8>, tag: u16) -> Vec<u8> {
    bytes[0..2].copy_from_slice(&tag.to_be_bytes());
    bytes
}

/// A command with sessions: handles, then a raw authorization area (with its size), then params.
fn with_auth(code: u32, handles: &[u32], auth_area: &[u8], params: &[u8]) -> Vec<u8> {
    let mut rest = Vec::new();
    for h in handles {
        rest.extend_from_slice(&h.to_be_bytes());
    }
    rest.extend_from_slice(auth_area);
    rest.extend_from_slice(params);
    command(ST_SESSIONS, code, &rest)
}

/// One session entry (no size prefix).
fn session(handle: u32, nonce: &[u8], attributes: u8, hmac: &[u8]) -> Vec<u8> {
    let mut s = handle.to_be_bytes().to_vec();
    s.extend_from_slice(&tpm2b(nonce));
    s.push(attributes);
    s.extend_from_slice(&tpm2b(hmac));
    s
}

/// An authorization area from session entries, with an explicit authorizationSize.
fn auth_area(size: u32, sessions: &[Vec<u8>]) -> Vec<u8> {
    let mut a = size.to_be_bytes().to_vec();
    for s in sessions {
        a.extend_from_slice(s);
    }
    a
}

fn auth_area_exact(sessions: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = sessions.iter().map(Vec::len).sum();
    auth_area(u32::try_from(len).unwrap_or(0), sessions)
}

fn pw() -> Vec<u8> {
    session(RS_PW, &[], 0, &[])
}

/// TPML_DIGEST_VALUES with one sha256 digest.
fn digest_values(alg_id: u16, len: usize) -> Vec<u8> {
    let mut d = 1u32.to_be_bytes().to_vec();
    d.extend_from_slice(&alg_id.to_be_bytes());
    d.extend(std::iter::repeat_n(0xAB, len));
    d
}

/// The table. Order matters only in that state-changing cases come last.
fn cases() -> Vec<Case> {
    let getrandom = raw::get_random(8);
    let pcr_extend =
        |pcr: u32, auth: &[u8], digests: &[u8]| with_auth(cc::PCR_EXTEND, &[pcr], auth, digests);
    let mut cases = vec![
        // --- framing: truncated headers (connection half-closed after the bytes)
        case("empty connection", vec![]),
    ];
    let truncated: [&'static str; 9] = [
        "truncated header 1 byte",
        "truncated header 2 bytes",
        "truncated header 3 bytes",
        "truncated header 4 bytes",
        "truncated header 5 bytes",
        "truncated header 6 bytes",
        "truncated header 7 bytes",
        "truncated header 8 bytes",
        "truncated header 9 bytes",
    ];
    for (n, name) in truncated.into_iter().enumerate() {
        cases.push(case(name, getrandom[..n + 1].to_vec()));
    }
    cases.extend([
        case(
            "header only, size 10, GetRandom",
            with_size(getrandom[..10].to_vec(), 10),
        ),
        // --- framing: size field lies
        case("size 20 > 12 bytes sent", with_size(getrandom.clone(), 20)),
        case(
            "size 4096 > 12 bytes sent",
            with_size(getrandom.clone(), 4096),
        ),
        case("size 11 < 12 bytes sent", with_size(getrandom.clone(), 11)),
        case("size 10 < 12 bytes sent", with_size(getrandom.clone(), 10)),
        case("size 9 (< header)", with_size(getrandom.clone(), 9)),
        case("size 0", with_size(getrandom.clone(), 0)),
        case("size 0xFFFFFFFF", with_size(getrandom.clone(), u32::MAX)),
        case("size 4097 (> max command), all sent", {
            let mut c = getrandom.clone();
            c.resize(4097, 0);
            with_size(c, 4097)
        }),
        case("size 8192 (> max command), all sent", {
            let mut c = getrandom.clone();
            c.resize(8192, 0);
            with_size(c, 8192)
        }),
        // --- tag
        case("tag 0x00C1 (TPM 1.2)", with_tag(getrandom.clone(), 0x00C1)),
        case("tag 0x1234", with_tag(getrandom.clone(), 0x1234)),
        case(
            "tag 0x8002 without auth area",
            with_tag(getrandom.clone(), ST_SESSIONS),
        ),
        case(
            "tag 0x8001 on PCR_Extend (auth required)",
            command(ST_NO_SESSIONS, cc::PCR_EXTEND, &{
                let mut r = 16u32.to_be_bytes().to_vec();
                r.extend_from_slice(&digest_values(alg::SHA256, 32));
                r
            }),
        ),
        // --- command codes
        case("command code 0x00000000", command(ST_NO_SESSIONS, 0, &[])),
        case(
            "command code 0x0000011E (below first)",
            command(ST_NO_SESSIONS, 0x11E, &[]),
        ),
        case(
            "command code 0x000001FF",
            command(ST_NO_SESSIONS, 0x1FF, &[]),
        ),
        case(
            "command code 0x20000000 (vendor bit)",
            command(ST_NO_SESSIONS, 0x2000_0000, &[]),
        ),
        case(
            "command code 0xFFFFFFFF",
            command(ST_NO_SESSIONS, u32::MAX, &[]),
        ),
        case(
            "unimplemented-here command: TPM2_Create without handles",
            command(ST_SESSIONS, 0x153, &[]),
        ),
        // --- parameters
        case("GetRandom with 2 trailing bytes", {
            let mut c = getrandom.clone();
            c.extend_from_slice(&[0, 0]);
            with_size(c, 14)
        }),
        case(
            "GetRandom without parameter",
            command(ST_NO_SESSIONS, cc::GET_RANDOM, &[]),
        ),
        case(
            "GetRandom 1 of 2 parameter bytes",
            command(ST_NO_SESSIONS, cc::GET_RANDOM, &[0]),
        ),
        case("GetRandom(0)", raw::get_random(0)),
        case("GetRandom(0xFFFF)", raw::get_random(0xFFFF)),
        case(
            "PCR_Read count 0",
            command(ST_NO_SESSIONS, cc::PCR_READ, &0u32.to_be_bytes()),
        ),
        case("PCR_Read unknown bank 0x0099", raw::pcr_read(0x0099, [0])),
        case("PCR_Read bank TPM_ALG_NULL", raw::pcr_read(alg::NULL, [0])),
        case("PCR_Read sizeofSelect 0", {
            let mut s = 1u32.to_be_bytes().to_vec();
            s.extend_from_slice(&alg::SHA256.to_be_bytes());
            s.push(0);
            command(ST_NO_SESSIONS, cc::PCR_READ, &s)
        }),
        case("PCR_Read sizeofSelect 5 (> PCR_SELECT_MAX)", {
            let mut s = 1u32.to_be_bytes().to_vec();
            s.extend_from_slice(&alg::SHA256.to_be_bytes());
            s.extend_from_slice(&[5, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
            command(ST_NO_SESSIONS, cc::PCR_READ, &s)
        }),
        case("PCR_Read count 17 (> HASH_COUNT)", {
            let mut s = 17u32.to_be_bytes().to_vec();
            for _ in 0..17 {
                s.extend_from_slice(&alg::SHA256.to_be_bytes());
                s.extend_from_slice(&[3, 1, 0, 0]);
            }
            command(ST_NO_SESSIONS, cc::PCR_READ, &s)
        }),
        case("PCR_Read selection truncated", {
            let mut c = raw::pcr_read(alg::SHA256, [0]);
            c.truncate(c.len() - 2);
            let len = c.len() as u32;
            with_size(c, len)
        }),
        case("Hash unknown alg 0x0099", raw::hash(b"abc", 0x0099)),
        case("Hash alg TPM_ALG_NULL", raw::hash(b"abc", alg::NULL)),
        case(
            "Hash alg TPM_ALG_RSA (not a hash)",
            raw::hash(b"abc", 0x0001),
        ),
        case(
            "Hash data 1025 bytes (> MAX_DIGEST_BUFFER)",
            raw::hash(&[7; 1025], alg::SHA256),
        ),
        case("Hash TPM2B size larger than the rest", {
            let mut c = raw::hash(b"abc", alg::SHA256);
            c[10..12].copy_from_slice(&200u16.to_be_bytes());
            c
        }),
        case("Hash bad hierarchy 0x40000005", {
            let mut rest = tpm2b(b"abc");
            rest.extend_from_slice(&alg::SHA256.to_be_bytes());
            rest.extend_from_slice(&0x4000_0005u32.to_be_bytes());
            command(ST_NO_SESSIONS, cc::HASH, &rest)
        }),
        case(
            "GetCapability bad capability 0x0000000B",
            raw::get_capability(0xB, 0, 1),
        ),
        case(
            "GetCapability capability 0xFFFFFFFF",
            raw::get_capability(u32::MAX, 0, 1),
        ),
        case(
            "GetCapability propertyCount 0",
            raw::get_capability(6, 0x100, 0),
        ),
        case(
            "GetCapability TPM_CAP_COMMANDS huge count",
            raw::get_capability(2, 0x11F, u32::MAX),
        ),
        case(
            "GetCapability handles with bad handle type",
            raw::get_capability(1, 0xFF00_0000, 8),
        ),
        case(
            "StirRandom 129 bytes",
            command(ST_NO_SESSIONS, cc::STIR_RANDOM, &tpm2b(&[1; 129])),
        ),
        case(
            "SelfTest fullTest = 2",
            command(ST_NO_SESSIONS, cc::SELF_TEST, &[2]),
        ),
        case(
            "ReadClock with a trailing byte",
            command(ST_NO_SESSIONS, cc::READ_CLOCK, &[0]),
        ),
        case(
            "TestParms unknown algorithm",
            command(ST_NO_SESSIONS, cc::TEST_PARMS, &0x0099u16.to_be_bytes()),
        ),
        case(
            "Startup(CLEAR) when started",
            command(ST_NO_SESSIONS, cc::STARTUP, &0u16.to_be_bytes()),
        ),
        case(
            "Startup bad type 2",
            command(ST_NO_SESSIONS, cc::STARTUP, &2u16.to_be_bytes()),
        ),
        // --- handles
        case(
            "PCR_Extend PCR 24 (no such PCR)",
            pcr_extend(
                24,
                &auth_area_exact(&[pw()]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "PCR_Extend transient handle not loaded",
            pcr_extend(
                0x8000_0000,
                &auth_area_exact(&[pw()]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "PCR_Extend owner handle (not a PCR)",
            pcr_extend(
                OWNER,
                &auth_area_exact(&[pw()]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "PCR_Extend handle missing",
            with_auth(cc::PCR_EXTEND, &[], &[], &[]),
        ),
        case(
            "PCR_Reset owner handle",
            with_auth(cc::PCR_RESET, &[OWNER], &auth_area_exact(&[pw()]), &[]),
        ),
        case(
            "HierarchyChangeAuth NULL hierarchy",
            with_auth(
                cc::HIERARCHY_CHANGE_AUTH,
                &[NULL],
                &auth_area_exact(&[pw()]),
                &tpm2b(b""),
            ),
        ),
        case(
            "Clear with owner handle",
            with_auth(cc::CLEAR, &[OWNER], &auth_area_exact(&[pw()]), &[]),
        ),
        case(
            "ReadClock with a handle-like trailing u32",
            command(ST_NO_SESSIONS, cc::READ_CLOCK, &OWNER.to_be_bytes()),
        ),
        // --- session areas
        case(
            "authorizationSize too big",
            pcr_extend(
                16,
                &auth_area(100, &[pw()]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "authorizationSize too small (8)",
            pcr_extend(16, &auth_area(8, &[pw()]), &digest_values(alg::SHA256, 32)),
        ),
        case(
            "authorizationSize 0",
            pcr_extend(16, &auth_area(0, &[]), &digest_values(alg::SHA256, 32)),
        ),
        case(
            "authorizationSize 0xFFFFFFFF",
            pcr_extend(
                16,
                &auth_area(u32::MAX, &[pw()]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "session area one byte short",
            pcr_extend(
                16,
                &{
                    let mut s = pw();
                    s.pop();
                    auth_area_exact(&[s])
                },
                &[],
            ),
        ),
        case(
            "unknown HMAC session 0x02000000",
            pcr_extend(
                16,
                &auth_area_exact(&[session(0x0200_0000, &[0; 16], 1, &[0; 32])]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "unknown policy session 0x03000000",
            pcr_extend(
                16,
                &auth_area_exact(&[session(0x0300_0000, &[0; 16], 1, &[0; 32])]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "session handle is a PCR (0x00000010)",
            pcr_extend(
                16,
                &auth_area_exact(&[session(0x10, &[], 0, &[])]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "4 password sessions (too many)",
            pcr_extend(
                16,
                &auth_area_exact(&[pw(), pw(), pw(), pw()]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "2 sessions for 1 handle",
            pcr_extend(
                16,
                &auth_area_exact(&[pw(), pw()]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "password session with a nonce",
            pcr_extend(
                16,
                &auth_area_exact(&[session(RS_PW, &[1; 16], 0, &[])]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "password session reserved attribute bits",
            pcr_extend(
                16,
                &auth_area_exact(&[session(RS_PW, &[], 0x18, &[])]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "password session with audit attribute",
            pcr_extend(
                16,
                &auth_area_exact(&[session(RS_PW, &[], 0x80, &[])]),
                &digest_values(alg::SHA256, 32),
            ),
        ),
        case(
            "password too long for owner (65 bytes)",
            with_auth(
                cc::HIERARCHY_CHANGE_AUTH,
                &[OWNER],
                &auth_area_exact(&[session(RS_PW, &[], 0, &[b'x'; 65])]),
                &tpm2b(b""),
            ),
        ),
        case(
            "wrong owner password",
            with_auth(
                cc::HIERARCHY_CHANGE_AUTH,
                &[OWNER],
                &auth_area_exact(&[session(RS_PW, &[], 0, b"wrong")]),
                &tpm2b(b""),
            ),
        ),
        case(
            "sessions tag, no-auth command with a password session",
            with_auth(
                cc::GET_RANDOM,
                &[],
                &auth_area_exact(&[pw()]),
                &8u16.to_be_bytes(),
            ),
        ),
        // --- PCR_Extend parameters
        case(
            "PCR_Extend unknown digest alg",
            pcr_extend(16, &auth_area_exact(&[pw()]), &digest_values(0x0099, 32)),
        ),
        case(
            "PCR_Extend digest truncated",
            pcr_extend(
                16,
                &auth_area_exact(&[pw()]),
                &digest_values(alg::SHA256, 31),
            ),
        ),
        case(
            "PCR_Extend count 0 (no digests)",
            pcr_extend(16, &auth_area_exact(&[pw()]), &0u32.to_be_bytes()),
        ),
        case(
            "PCR_Extend count 9 (> HASH_COUNT)",
            pcr_extend(16, &auth_area_exact(&[pw()]), &9u32.to_be_bytes()),
        ),
        case(
            "PCR_Event 1025-byte event",
            with_auth(
                cc::PCR_EVENT,
                &[16],
                &auth_area_exact(&[pw()]),
                &tpm2b(&[1; 1025]),
            ),
        ),
        case(
            "PCR_Read of all sha256 PCRs (valid)",
            raw::pcr_read(alg::SHA256, 0..24),
        ),
        case("PCR_Read multi-bank selection (valid)", {
            let mut s = 2u32.to_be_bytes().to_vec();
            s.extend_from_slice(&pcr_selection(alg::SHA1, [0, 1])[4..]);
            s.extend_from_slice(&pcr_selection(alg::SHA384, [23])[4..]);
            command(ST_NO_SESSIONS, cc::PCR_READ, &s)
        }),
        case(
            "Clear via platform with wrong password",
            with_auth(
                cc::CLEAR,
                &[PLATFORM],
                &auth_area_exact(&[session(RS_PW, &[], 0, b"nope")]),
                &[],
            ),
        ),
        case(
            "Clear via lockout (valid)",
            with_auth(cc::CLEAR, &[LOCKOUT], &auth_area_exact(&[pw()]), &[]),
        ),
        case(
            "Shutdown bad type 7",
            command(ST_NO_SESSIONS, cc::SHUTDOWN, &7u16.to_be_bytes()),
        ),
        case(
            "FlushContext of an unloaded handle",
            command(
                ST_NO_SESSIONS,
                cc::FLUSH_CONTEXT,
                &0x8000_0000u32.to_be_bytes(),
            ),
        ),
        case(
            "FlushContext of a permanent handle",
            command(ST_NO_SESSIONS, cc::FLUSH_CONTEXT, &OWNER.to_be_bytes()),
        ),
        case(
            "ContextSave of an unloaded handle",
            command(
                ST_NO_SESSIONS,
                cc::CONTEXT_SAVE,
                &0x8000_0000u32.to_be_bytes(),
            ),
        ),
        case("GetRandom after all that still works", raw::get_random(8)),
    ]);
    cases
}

const CASE_TIMEOUT: Duration = Duration::from_secs(3);

fn run_all(server: &Server, cases: &[Case]) -> Result<Vec<Outcome>> {
    run_all_framed(server, Framing::Plain, cases)
}

fn run_all_framed(server: &Server, framing: Framing, cases: &[Case]) -> Result<Vec<Outcome>> {
    cases
        .iter()
        .map(|c| raw::send_once_framed(server.port(), framing, &c.bytes, true, CASE_TIMEOUT))
        .collect()
}

fn abbreviate(bytes: &[u8]) -> String {
    if bytes.len() <= 40 {
        hex(bytes)
    } else {
        format!("{}..({} bytes)", hex(&bytes[..36]), bytes.len())
    }
}

fn same(a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (
            Outcome::Response {
                tag: t1, rc: r1, ..
            },
            Outcome::Response {
                tag: t2, rc: r2, ..
            },
        ) => t1 == t2 && r1 == r2,
        (Outcome::Closed | Outcome::NoAnswer, Outcome::Closed | Outcome::NoAnswer) => true,
        _ => false,
    }
}

/// Sends every case to both servers and fails listing the cases whose outcomes differ.
fn compare(swtpm: &Server, ukvtpm: &Server, framing: Framing) -> Result<()> {
    let cases = cases();
    assert!(cases.len() >= 30, "at least 30 cases");
    let reference = run_all_framed(swtpm, framing, &cases)?;
    let got = run_all_framed(ukvtpm, framing, &cases)?;

    let mut table = format!(
        "{:?} framing\n{:<3} {:<48} {:<20} {:<20} {}\n",
        framing, "#", "case", "swtpm", "ukvtpm", "command"
    );
    let mut mismatches = String::new();
    for (i, ((c, want), have)) in cases.iter().zip(&reference).zip(&got).enumerate() {
        let ok = same(want, have);
        let row = format!(
            "{:<3} {:<48} {:<20} {:<20} {}{}\n",
            i,
            c.name,
            want.short(),
            have.short(),
            abbreviate(&c.bytes),
            if ok { "" } else { "   <-- MISMATCH" }
        );
        if !ok {
            mismatches.push_str(&row);
        }
        table.push_str(&row);
    }
    println!("{table}");
    if !mismatches.is_empty() {
        bail!(
            "{} of {} malformed commands ({framing:?} framing) got a different outcome from \
             ukvtpm than from swtpm (full table on stdout):\n{mismatches}",
            mismatches.lines().count(),
            cases.len()
        );
    }
    // The servers survived: a last well-formed command still works on both.
    for server in [swtpm, ukvtpm] {
        let mut client = raw::Client::connect(server.port(), server.kind().framing())?;
        client.execute(&raw::get_random(4))?.success()?;
    }
    Ok(())
}

#[test]
fn malformed_commands_match_swtpm() -> Result<()> {
    with_logs(|| {
        let swtpm = Server::start(Kind::Swtpm, "swtpm")?;
        let ukvtpm = Server::start(Kind::Ukvtpm(Protocol::Swtpm), "swtpm")?;
        compare(&swtpm, &ukvtpm, Framing::Plain)
    })
}

/// The same cases inside well-formed TCG simulator frames: swtpm's data port accepts that
/// framing too, and `ukvtpm serve --protocol mssim` speaks only it. This separates the TPM's
/// own parsing of short or oversized commands from the socket framing.
#[test]
fn malformed_commands_in_mssim_frames_match_swtpm() -> Result<()> {
    with_logs(|| {
        let swtpm = Server::start(Kind::Swtpm, "swtpm")?;
        let ukvtpm = Server::start(Kind::Ukvtpm(Protocol::Mssim), "mssim")?;
        raw::mssim_power_on(ukvtpm.port())?;
        compare(&swtpm, &ukvtpm, Framing::Mssim)
    })
}

/// The reference itself, alone: prints swtpm's outcomes (useful while ukvtpm is being written).
#[test]
fn malformed_commands_swtpm_reference() -> Result<()> {
    with_logs(|| {
        let cases = cases();
        let swtpm = Server::start(Kind::Swtpm, "swtpm")?;
        let outcomes = run_all(&swtpm, &cases)?;
        for (i, (c, o)) in cases.iter().zip(&outcomes).enumerate() {
            println!(
                "{i:<3} {:<48} {:<20} {}",
                c.name,
                o.short(),
                abbreviate(&c.bytes)
            );
        }
        let mut client = raw::Client::connect(swtpm.port(), raw::Framing::Plain)?;
        client.execute(&raw::get_random(4))?.success()?;
        Ok(())
    })
}
