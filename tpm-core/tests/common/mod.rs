//! Shared helpers for engine-level tests: a deterministic platform and command builders.
#![allow(dead_code)]

use ukvtpm_tpm_core::{CommitError, Engine, Platform, TpmRc};

/// A deterministic in-memory platform; time advances 1 ms per call plus `skip`.
#[derive(Default)]
pub struct TestPlatform {
    pub counter: u8,
    pub now: u64,
    pub commits: u64,
    /// Refuse every commit (the store is failing).
    pub fail_commits: bool,
}

impl Platform for TestPlatform {
    fn entropy(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.counter = self.counter.wrapping_add(1);
            *b = self.counter;
        }
    }
    fn now_ms(&mut self) -> u64 {
        self.now += 1;
        self.now
    }
    fn commit(&mut self, _version: u64, _state: &[u8]) -> Result<(), CommitError> {
        if self.fail_commits {
            return Err(CommitError);
        }
        self.commits += 1;
        Ok(())
    }
}

pub type Tpm = Engine<TestPlatform>;

pub const ST_NO_SESSIONS: u16 = 0x8001;
pub const ST_SESSIONS: u16 = 0x8002;
pub const OWNER: u32 = 0x4000_0001;
pub const NULL: u32 = 0x4000_0007;
pub const PW: u32 = 0x4000_0009;
pub const LOCKOUT: u32 = 0x4000_000A;
pub const ENDORSEMENT: u32 = 0x4000_000B;
pub const PLATFORM: u32 = 0x4000_000C;
pub const SHA1: u16 = 0x0004;
pub const SHA256: u16 = 0x000B;
pub const SHA384: u16 = 0x000C;

pub fn started() -> Tpm {
    let mut e = Engine::new(TestPlatform::default()).expect("manufacture");
    let r = e.execute(0, &cmd(0x144, &[0, 0]));
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    e
}

/// Power cycle from the committed state (a server restart), then Startup(CLEAR).
pub fn restart(e: Tpm) -> Tpm {
    let blob = e.state_blob().to_vec();
    let mut e = Engine::restore(TestPlatform::default(), &blob).expect("restore");
    let r = e.execute(0, &cmd(0x144, &[0, 0]));
    assert_eq!(rc(&r), TpmRc::SUCCESS);
    e
}

pub fn rc(resp: &[u8]) -> TpmRc {
    assert!(resp.len() >= 10, "short response {resp:02x?}");
    TpmRc(u32::from_be_bytes([resp[6], resp[7], resp[8], resp[9]]))
}

/// A command without sessions.
pub fn cmd(code: u32, body: &[u8]) -> Vec<u8> {
    frame(ST_NO_SESSIONS, code, body)
}

pub fn frame(tag: u16, code: u32, body: &[u8]) -> Vec<u8> {
    let mut v = tag.to_be_bytes().to_vec();
    v.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A command with handles, one password session per `passwords` entry, and parameters.
pub fn auth_cmd(code: u32, handles: &[u32], passwords: &[&[u8]], params: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for h in handles {
        body.extend_from_slice(&h.to_be_bytes());
    }
    let mut area = Vec::new();
    for p in passwords {
        area.extend_from_slice(&PW.to_be_bytes());
        area.extend_from_slice(&[0, 0, 0]);
        area.extend_from_slice(&(p.len() as u16).to_be_bytes());
        area.extend_from_slice(p);
    }
    body.extend_from_slice(&(area.len() as u32).to_be_bytes());
    body.extend_from_slice(&area);
    body.extend_from_slice(params);
    frame(ST_SESSIONS, code, &body)
}

pub fn tpm2b(data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

/// The parameter area of a successful response (after the parameterSize with sessions).
pub fn params(resp: &[u8]) -> &[u8] {
    assert_eq!(rc(resp), TpmRc::SUCCESS, "response {resp:02x?}");
    if resp[..2] == [0x80, 0x02] {
        let n = u32::from_be_bytes([resp[10], resp[11], resp[12], resp[13]]) as usize;
        &resp[14..14 + n]
    } else {
        &resp[10..]
    }
}

/// Reads big-endian values from a response.
pub struct Rd<'a>(pub &'a [u8]);

impl<'a> Rd<'a> {
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        h
    }
    pub fn u8(&mut self) -> u8 {
        self.bytes(1)[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.bytes(2).try_into().unwrap())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.bytes(4).try_into().unwrap())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.bytes(8).try_into().unwrap())
    }
    pub fn tpm2b(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.bytes(n)
    }
}

pub fn pcr_read_cmd(alg: u16, pcrs: &[u8]) -> Vec<u8> {
    let mut sel = [0u8; 3];
    for &p in pcrs {
        sel[usize::from(p / 8)] |= 1 << (p % 8);
    }
    let mut b = 1u32.to_be_bytes().to_vec();
    b.extend_from_slice(&alg.to_be_bytes());
    b.push(3);
    b.extend_from_slice(&sel);
    cmd(0x17E, &b)
}

/// Value of one PCR.
pub fn pcr(e: &mut Tpm, alg: u16, index: u8) -> Vec<u8> {
    let r = e.execute(0, &pcr_read_cmd(alg, &[index]));
    let mut rd = Rd(params(&r));
    rd.u32();
    let n = rd.u32();
    for _ in 0..n {
        rd.u16();
        let s = rd.u8();
        rd.bytes(usize::from(s));
    }
    assert_eq!(rd.u32(), 1);
    rd.tpm2b().to_vec()
}

pub fn pcr_update_counter(e: &mut Tpm) -> u32 {
    let r = e.execute(0, &pcr_read_cmd(SHA256, &[0]));
    Rd(params(&r)).u32()
}
