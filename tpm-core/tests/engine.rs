//! Engine-level tests through the public API: raw command bytes in, response bytes out.

use ukvtpm_tpm_core::{CommitError, Engine, Platform, TpmRc};

/// A deterministic in-memory platform.
#[derive(Default)]
struct TestPlatform {
    counter: u8,
    now: u64,
    commits: Vec<(u64, Vec<u8>)>,
    fail_commits: bool,
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
    fn commit(&mut self, version: u64, state: &[u8]) -> Result<(), CommitError> {
        if self.fail_commits {
            return Err(CommitError);
        }
        self.commits.push((version, state.to_vec()));
        Ok(())
    }
}

fn rc(resp: &[u8]) -> TpmRc {
    TpmRc(u32::from_be_bytes([resp[6], resp[7], resp[8], resp[9]]))
}

const STARTUP_CLEAR: [u8; 12] = [0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x44, 0, 0];
const SHUTDOWN_CLEAR: [u8; 12] = [0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x45, 0, 0];
const GET_RANDOM_8: [u8; 12] = [0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x7b, 0, 8];

fn started() -> Engine<TestPlatform> {
    let mut e = Engine::new(TestPlatform::default()).expect("manufacture");
    assert_eq!(rc(&e.execute(0, &STARTUP_CLEAR)), TpmRc::SUCCESS);
    e
}

#[test]
fn startup_then_get_random() {
    let mut e = Engine::new(TestPlatform::default()).expect("manufacture");
    assert_eq!(rc(&e.execute(0, &GET_RANDOM_8)), TpmRc::INITIALIZE);
    assert_eq!(rc(&e.execute(0, &STARTUP_CLEAR)), TpmRc::SUCCESS);
    assert_eq!(rc(&e.execute(0, &STARTUP_CLEAR)), TpmRc::INITIALIZE);
    let r = e.execute(0, &GET_RANDOM_8);
    assert_eq!(r.len(), 10 + 2 + 8);
    assert_eq!(&r[..2], &[0x80, 0x01]);
    assert_eq!(
        u32::from_be_bytes([r[2], r[3], r[4], r[5]]) as usize,
        r.len()
    );
    assert_eq!(&r[10..12], &[0, 8]);
}

#[test]
fn header_errors() {
    let mut e = started();
    // TPM 1.2 tag: libtpms (swtpm) answers a bare TPM_RC_VALUE with a TPM 2.0 tag.
    let r = e.execute(0, &[0x00, 0xC1, 0, 0, 0, 10, 0, 0, 0, 0x65]);
    assert_eq!(r, [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0x84]);
    // Size field lies.
    let r = e.execute(0, &[0x80, 1, 0, 0, 0, 13, 0, 0, 1, 0x7b, 0, 8]);
    assert_eq!(rc(&r), TpmRc::COMMAND_SIZE);
    // Unknown command.
    let r = e.execute(0, &[0x80, 1, 0, 0, 0, 10, 0, 0, 0, 0x01]);
    assert_eq!(rc(&r), TpmRc::COMMAND_CODE);
    // Trailing parameter bytes.
    let r = e.execute(0, &[0x80, 1, 0, 0, 0, 13, 0, 0, 1, 0x7b, 0, 8, 0]);
    assert_eq!(rc(&r), TpmRc::SIZE);
}

#[test]
fn shutdown_commits_and_restore_works() {
    let mut e = started();
    assert_eq!(rc(&e.execute(0, &SHUTDOWN_CLEAR)), TpmRc::SUCCESS);
    let blob = e.state_blob().to_vec();
    let v = e.state_version();
    assert_eq!(e.platform().commits.last().map(|c| c.0), Some(v));
    let mut e2 = Engine::restore(TestPlatform::default(), &blob).expect("restore");
    assert_eq!(rc(&e2.execute(0, &STARTUP_CLEAR)), TpmRc::SUCCESS);
}

#[test]
fn failed_commit_is_nv_unavailable_and_rolls_back() {
    let mut e = started();
    let before = e.state_blob().to_vec();
    e.platform_mut().fail_commits = true;
    assert_eq!(rc(&e.execute(0, &SHUTDOWN_CLEAR)), TpmRc::NV_UNAVAILABLE);
    assert_eq!(e.state_blob(), &before[..]);
}

#[test]
fn failed_commit_leaves_no_volatile_effect() {
    let mut e = Engine::new(TestPlatform::default()).expect("manufacture");
    e.platform_mut().fail_commits = true;
    assert_eq!(rc(&e.execute(0, &STARTUP_CLEAR)), TpmRc::NV_UNAVAILABLE);
    // Startup did not happen: the TPM still wants it.
    assert_eq!(rc(&e.execute(0, &GET_RANDOM_8)), TpmRc::INITIALIZE);
    e.platform_mut().fail_commits = false;
    assert_eq!(rc(&e.execute(0, &STARTUP_CLEAR)), TpmRc::SUCCESS);
    assert_eq!(rc(&e.execute(0, &GET_RANDOM_8)), TpmRc::SUCCESS);
}
