//! Robustness (issue 3, item 6): at least 100 000 random and mutated commands, each answered
//! with a well-formed response, and no panic. A seeded generator keeps failures reproducible:
//! set UKVTPM_FUZZ_SEED to replay a run, UKVTPM_FUZZ_ITERS to run longer.
//!
//! Seeds are valid commands of every implemented command code: hand-written ones for the
//! commands whose parameters matter most, and for every other code a command shaped by its
//! `CommandDef` (its handles, a password session per authorized handle, plausible parameter
//! bytes). Mutations flip bytes, truncate, extend, lie in size fields, swap handles for other
//! handle types and damage the session area.

mod common;
use common::*;
use std::panic::{AssertUnwindSafe, catch_unwind};
use ukvtpm_tpm_core::commands::Dispatch;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Handles worth trying: every type, present and absent.
const HANDLES: &[u32] = &[
    0,
    7,
    16,
    17,
    23,
    24,
    0x0100_0000,
    0x0150_0001,
    0x0200_0000,
    0x0300_0000,
    0x4000_0001,
    0x4000_0007,
    0x4000_0009,
    0x4000_000A,
    0x4000_000B,
    0x4000_000C,
    0x4000_000D,
    0x4000_0110,
    0x8000_0000,
    0x8000_0001,
    0x8000_0007,
    0x8100_0001,
    0x8180_0000,
    0xFF00_0000,
];

fn sel(alg: u16, bits: [u8; 3]) -> Vec<u8> {
    let mut v = 1u32.to_be_bytes().to_vec();
    v.extend_from_slice(&alg.to_be_bytes());
    v.push(3);
    v.extend_from_slice(&bits);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Valid commands (for a fresh, started TPM) of the commands with interesting parameters.
fn hand_written() -> Vec<Vec<u8>> {
    let be32 = |v: u32| v.to_be_bytes().to_vec();
    let be16 = |v: u16| v.to_be_bytes().to_vec();
    let dv = cat(&[&be32(1), &be16(SHA256), &[0xAB; 32]]);
    // An ECC P-256 signing key template and a keyed-hash template (cheap to create).
    let ecc = cat(&[
        &be16(0x0023),
        &be16(SHA256),
        &be32(0x0004_0072),
        &be16(0),
        &be16(0x0010),
        &be16(0x0018),
        &be16(SHA256),
        &be16(0x0003),
        &be16(0x0010),
        &be16(0),
        &be16(0),
    ]);
    let keyed = cat(&[
        &be16(0x0008),
        &be16(SHA256),
        &be32(0x0004_0072),
        &be16(0),
        &be16(0x0005),
        &be16(SHA256),
        &be16(0),
    ]);
    let create_primary = |template: &[u8]| {
        auth_cmd(
            0x131,
            &[OWNER],
            &[b""],
            &cat(&[
                &be16(4),
                &be16(0),
                &be16(0),
                &tpm2b(template),
                &be16(0),
                &be32(0),
            ]),
        )
    };
    vec![
        cmd(0x144, &[0, 0]),
        cmd(0x145, &[0, 1]),
        cmd(0x143, &[1]),
        cmd(0x142, &cat(&[&be32(1), &be16(SHA1)])),
        cmd(0x17C, &[]),
        cmd(0x17B, &[0, 16]),
        cmd(0x146, &tpm2b(b"stir")),
        cmd(0x17A, &cat(&[&be32(6), &be32(0x100), &be32(127)])),
        cmd(0x17A, &cat(&[&be32(1), &be32(0x8000_0000), &be32(10)])),
        cmd(0x17A, &cat(&[&be32(2), &be32(0), &be32(300)])),
        cmd(0x17A, &cat(&[&be32(0), &be32(0), &be32(300)])),
        cmd(0x18A, &[0, 8, 0, 5, 0, 0x0B]),
        cmd(0x17E, &sel(SHA256, [0xFF, 0xFF, 0xFF])),
        auth_cmd(0x182, &[16], &[b""], &dv),
        auth_cmd(0x13C, &[16], &[b""], &tpm2b(b"event")),
        auth_cmd(0x13D, &[16], &[b""], &[]),
        cmd(
            0x17D,
            &cat(&[&tpm2b(b"abcdef"), &be16(SHA256), &be32(OWNER)]),
        ),
        cmd(0x186, &cat(&[&tpm2b(b"pw"), &be16(SHA384)])),
        cmd(0x186, &cat(&[&tpm2b(b""), &be16(0x0010)])),
        auth_cmd(0x15C, &[0x8000_0000], &[b"pw"], &tpm2b(b"data")),
        auth_cmd(
            0x13E,
            &[0x8000_0000],
            &[b"pw"],
            &cat(&[&tpm2b(b"end"), &be32(OWNER)]),
        ),
        auth_cmd(0x185, &[0, 0x8000_0001], &[b"", b""], &tpm2b(b"end")),
        cmd(0x181, &[]),
        auth_cmd(0x128, &[OWNER], &[b""], &[0, 0, 0, 0, 0, 1, 0, 0]),
        auth_cmd(0x130, &[PLATFORM], &[b""], &[1]),
        auth_cmd(0x126, &[LOCKOUT], &[b""], &[]),
        auth_cmd(0x127, &[PLATFORM], &[b""], &[1]),
        auth_cmd(0x129, &[OWNER], &[b""], &tpm2b(b"owner")),
        auth_cmd(0x121, &[PLATFORM], &[b""], &cat(&[&be32(OWNER), &[0]])),
        auth_cmd(
            0x12E,
            &[OWNER],
            &[b""],
            &cat(&[&tpm2b(&[1; 32]), &be16(SHA256)]),
        ),
        auth_cmd(
            0x13A,
            &[LOCKOUT],
            &[b""],
            &cat(&[&be32(5), &be32(10), &be32(10)]),
        ),
        auth_cmd(0x139, &[LOCKOUT], &[b""], &[]),
        cmd(0x165, &be32(0x8000_0000)),
        create_primary(&ecc),
        create_primary(&keyed),
        // StartAuthSession: unbound, unsalted HMAC session with SHA-256.
        cmd(
            0x176,
            &cat(&[
                &be32(NULL),
                &be32(NULL),
                &tpm2b(&[5; 16]),
                &be16(0),
                &[0],
                &be16(0x0010),
                &be16(SHA256),
            ]),
        ),
        auth_cmd(
            0x12A,
            &[OWNER],
            &[b""],
            &cat(&[
                &tpm2b(b""),
                &tpm2b(&cat(&[
                    &be32(0x0150_0001),
                    &be16(SHA256),
                    &be32(0x0006_0006),
                    &be16(0),
                    &be16(8),
                ])),
            ]),
        ),
    ]
}

/// A command shaped after a CommandDef: its handles (plausible ones), a password session per
/// authorized handle, and random parameters.
fn shaped(rng: &mut Rng, code: u32, handles: usize, auths: usize) -> Vec<u8> {
    let hs: Vec<u32> = (0..handles)
        .map(|_| HANDLES[rng.below(HANDLES.len())])
        .collect();
    let params: Vec<u8> = (0..rng.below(64)).map(|_| rng.byte()).collect();
    if auths > 0 || rng.chance(4) {
        let pw: Vec<&[u8]> = (0..auths.max(1)).map(|_| &b""[..]).collect();
        auth_cmd(code, &hs, &pw, &params)
    } else {
        let mut body = Vec::new();
        for h in hs {
            body.extend_from_slice(&h.to_be_bytes());
        }
        body.extend_from_slice(&params);
        cmd(code, &body)
    }
}

fn set_u32(c: &mut [u8], at: usize, v: u32) {
    if let Some(s) = c.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn fix_size(c: &mut [u8]) {
    let n = c.len() as u32;
    set_u32(c, 2, n);
}

fn mutate(rng: &mut Rng, mut c: Vec<u8>) -> Vec<u8> {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        match rng.below(12) {
            0 | 1 => {
                // Flip bytes after the header, keeping the size honest.
                if c.len() > 10 {
                    let i = 10 + rng.below(c.len() - 10);
                    c[i] ^= 1 << rng.below(8);
                }
            }
            2 => {
                let i = rng.below(c.len().max(1));
                if let Some(b) = c.get_mut(i) {
                    *b = rng.byte();
                }
            }
            3 => {
                let n = rng.below(c.len() + 1);
                c.truncate(n);
                if rng.chance(2) {
                    fix_size(&mut c);
                }
            }
            4 => {
                let big = rng.chance(50);
                let extra = rng.below(if big { 5000 } else { 40 });
                c.extend((0..extra).map(|_| rng.byte()));
                if rng.chance(3) {
                    fix_size(&mut c);
                }
            }
            5 => {
                // Lie in the header size.
                let r = rng.next() as u32;
                let v = match rng.below(4) {
                    0 => r,
                    1 => c.len() as u32 + 1,
                    2 => (c.len() as u32).saturating_sub(1),
                    _ => 4096,
                };
                set_u32(&mut c, 2, v);
            }
            6 => {
                // Lie in a 16- or 32-bit size somewhere in the body.
                if c.len() > 12 {
                    let i = 10 + rng.below(c.len() - 11);
                    let v = [0u16, 1, 2, 0x7F, 0x400, 0x401, 0xFFFF][rng.below(7)];
                    c[i..i + 2].copy_from_slice(&v.to_be_bytes());
                }
            }
            7 => {
                // Swap a handle-sized word for another handle.
                if c.len() >= 14 {
                    let i = 10 + 4 * rng.below((c.len() - 10) / 4);
                    set_u32(&mut c, i, HANDLES[rng.below(HANDLES.len())]);
                }
            }
            8 => {
                // Tag games.
                let r = rng.next() as u16;
                let tag: u16 = [0x8001, 0x8002, 0x00C1, 0x8003, r][rng.below(5)];
                if c.len() >= 2 {
                    c[..2].copy_from_slice(&tag.to_be_bytes());
                }
            }
            9 => {
                // Damage the session attributes or handle of a password session.
                if let Some(pos) = c.windows(4).position(|w| w == PW.to_be_bytes()) {
                    match rng.below(3) {
                        0 => {
                            let h = [0x0200_0000, 0x0300_0001, 0x10][rng.below(3)];
                            set_u32(&mut c, pos, h)
                        }
                        1 => {
                            if let Some(b) = c.get_mut(pos + 6) {
                                *b = rng.byte();
                            }
                        }
                        _ => {
                            if let Some(b) = c.get_mut(pos + 5) {
                                *b = rng.byte();
                            }
                        }
                    }
                }
            }
            10 => {
                // Another command code.
                let r = rng.next() as u32;
                let codes = [0x11F, 0x144, 0x17A, 0x182, 0x153, 0x1FF, r];
                set_u32(&mut c, 6, codes[rng.below(codes.len())]);
            }
            _ => {
                // Insert or delete a byte in the middle.
                if c.len() > 10 {
                    let i = 10 + rng.below(c.len() - 10);
                    if rng.chance(2) {
                        c.remove(i);
                    } else {
                        c.insert(i, rng.byte());
                    }
                    if rng.chance(2) {
                        fix_size(&mut c);
                    }
                }
            }
        }
    }
    c
}

fn check(resp: &[u8], command: &[u8]) {
    let ctx = || format!("command {command:02x?}\nresponse {resp:02x?}");
    assert!(resp.len() >= 10, "short response\n{}", ctx());
    let tag = u16::from_be_bytes([resp[0], resp[1]]);
    assert!(
        matches!(tag, 0x8001 | 0x8002 | 0x00C4),
        "bad tag\n{}",
        ctx()
    );
    let size = u32::from_be_bytes([resp[2], resp[3], resp[4], resp[5]]) as usize;
    assert_eq!(size, resp.len(), "size field\n{}", ctx());
    assert!(resp.len() <= 4096, "oversized\n{}", ctx());
    let rc = u32::from_be_bytes([resp[6], resp[7], resp[8], resp[9]]);
    if rc != 0 {
        assert_eq!(resp.len(), 10, "error response with a body\n{}", ctx());
    } else if tag == 0x8002 {
        // Sessions: [handle] parameterSize parameters auth area; parameterSize must fit.
        let rest = &resp[10..];
        let fits = |at: usize| {
            rest.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .is_some_and(|n| at + 4 + n <= rest.len())
        };
        assert!(fits(0) || fits(4), "parameterSize does not fit\n{}", ctx());
    }
}

#[test]
fn random_and_mutated_commands() {
    let seed = std::env::var("UKVTPM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0005_EEDF_0BADu64);
    let iters: usize = std::env::var("UKVTPM_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut rng = Rng(seed | 1);
    let dispatch = Dispatch::new();
    let defs: Vec<(u32, usize, usize)> = dispatch
        .codes()
        .map(|d| (d.cc, d.handles.len(), d.auth_count()))
        .collect();
    let seeds = hand_written();
    let start = std::time::Instant::now();
    let mut e = started();
    let mut successes = 0usize;
    for i in 0..iters {
        // A fresh TPM now and then, so state-changing commands (disabled hierarchies,
        // lockout, full object memory) do not hide the rest.
        if i % 2000 == 0 {
            e = started();
        }
        let command = match rng.below(10) {
            0 => (0..rng.below(80)).map(|_| rng.byte()).collect(),
            1 | 2 => {
                let (code, h, a) = defs[rng.below(defs.len())];
                shaped(&mut rng, code, h, a)
            }
            3 => seeds[rng.below(seeds.len())].clone(),
            4 | 5 => {
                let (code, h, a) = defs[rng.below(defs.len())];
                let c = shaped(&mut rng, code, h, a);
                mutate(&mut rng, c)
            }
            _ => {
                let c = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, c)
            }
        };
        let locality = if rng.chance(8) { rng.below(5) as u8 } else { 0 };
        let resp =
            catch_unwind(AssertUnwindSafe(|| e.execute(locality, &command))).unwrap_or_else(|_| {
                panic!("panic on command {command:02x?} (seed {seed}, iteration {i})")
            });
        check(&resp, &command);
        if resp[6..10] == [0; 4] {
            successes += 1;
        }
    }
    let elapsed = start.elapsed();
    println!("{iters} commands in {elapsed:?}, {successes} succeeded");
    assert!(
        successes > iters / 50,
        "too few commands succeeded: {successes}"
    );
    assert!(elapsed.as_secs() < 60, "took {elapsed:?}");
}
