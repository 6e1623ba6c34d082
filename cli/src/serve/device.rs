//! The TPM as a device on a platform: the engine plus what the platform around it owns.
//!
//! The engine ([`Tpm`]) executes commands. Everything a real TPM's surroundings decide lives here:
//! whether it has power (the simulator's power signals), whether swtpm's `CMD_STOP` has halted it,
//! the locality the next raw command is sent at (swtpm `CMD_SET_LOCALITY`, the mssim prefix), the
//! tpmEstablished bit, and the orderly `TPM2_Shutdown` swtpm sends on the client's behalf before
//! it stops the TPM.

/// `TPM_RC_INITIALIZE` (TPM 2.0 Part 2, 6.6.3): the TPM is not (or already) started.
pub const TPM_RC_INITIALIZE: u32 = 0x100;
/// `TPM_RC_FAILURE`: what swtpm answers to any command while the TPM is stopped.
pub const TPM_RC_FAILURE: u32 = 0x101;
/// `TPM_RC_COMMAND_SIZE`: the command is larger than the TPM's input buffer.
pub const TPM_RC_COMMAND_SIZE: u32 = 0x142;

/// `TPM_CC_Startup`.
const TPM_CC_STARTUP: u32 = 0x144;
/// `TPM_CC_Shutdown`.
const TPM_CC_SHUTDOWN: u32 = 0x145;
/// `TPM_SU_CLEAR`.
const TPM_SU_CLEAR: u16 = 0x0000;
/// `TPM_SU_STATE`.
const TPM_SU_STATE: u16 = 0x0001;

/// Largest TPM command the server accepts (`MAX_COMMAND_SIZE`, the size swtpm's buffer has too).
pub const MAX_COMMAND_SIZE: usize = 4096;

/// What the server needs from a TPM engine: [`ukvtpm_tpm_core::Engine`] in production (see
/// `engine.rs`), a fake in unit tests.
pub trait Tpm {
    /// Executes one command at `locality`; always returns a complete response.
    fn execute(&mut self, locality: u8, command: &[u8]) -> Vec<u8>;
    /// The TPM loses power (and every volatile object and session).
    fn power_off(&mut self);
    /// `_TPM_Init`: the next command must be `TPM2_Startup`.
    fn power_on(&mut self);
    /// Asks the command in progress to stop early (commands run synchronously, so this is a hint).
    fn cancel(&mut self);
    /// Whether NV (the state file) may be written; while off, state changes fail with
    /// `TPM_RC_NV_UNAVAILABLE` (the simulator's `TPM_SIGNAL_NV_OFF`).
    fn set_nv_available(&mut self, available: bool);
}

/// Largest command and response seen so far (for the simulator's
/// `TPM_GET_COMMAND_RESPONSE_SIZES`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub largest_command_size: u32,
    pub largest_command: u32,
    pub largest_response_size: u32,
    pub largest_response: u32,
}

/// An engine on its platform.
#[derive(Debug)]
pub struct Device<T> {
    tpm: T,
    /// Locality of raw (unframed) commands; framed commands set it too, as in swtpm.
    locality: u8,
    /// Power, as switched by the simulator's platform signals.
    powered: bool,
    /// False between swtpm's `CMD_STOP`/`CMD_SHUTDOWN` and the next `CMD_INIT`.
    running: bool,
    /// Set by an H-CRTM sequence (not supported: nothing sets it), cleared at locality 3 or 4.
    established: bool,
    /// Command code of the last command executed, to skip a redundant orderly shutdown.
    last_command: Option<u32>,
    sizes: Sizes,
}

impl<T: Tpm> Device<T> {
    /// A device around `tpm`, powered on and running (swtpm's `--flags not-need-init`).
    pub fn new(tpm: T) -> Self {
        Device {
            tpm,
            locality: 0,
            powered: true,
            running: true,
            established: false,
            last_command: None,
            sizes: Sizes::default(),
        }
    }

    /// The engine.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn tpm(&self) -> &T {
        &self.tpm
    }

    /// The engine, mutably.
    pub fn tpm_mut(&mut self) -> &mut T {
        &mut self.tpm
    }

    /// Executes `command` at the current locality.
    ///
    /// A stopped TPM answers `TPM_RC_FAILURE` (as swtpm does); a TPM without power answers
    /// nothing at all, an empty response (as the TCG simulator does).
    pub fn execute(&mut self, command: &[u8]) -> Vec<u8> {
        if !self.powered {
            return Vec::new();
        }
        if !self.running {
            return error_response(TPM_RC_FAILURE);
        }
        if command.len() > MAX_COMMAND_SIZE {
            return error_response(TPM_RC_COMMAND_SIZE);
        }
        let code = command_code(command);
        if let Some(code) = code {
            self.last_command = Some(code);
        }
        let response = self.tpm.execute(self.locality, command);
        self.note_sizes(command, code, &response);
        response
    }

    /// Executes `command` at `locality`, which stays the current locality (swtpm semantics for
    /// commands with the simulator prefix).
    pub fn execute_at(&mut self, locality: u8, command: &[u8]) -> Vec<u8> {
        self.locality = locality;
        self.execute(command)
    }

    fn note_sizes(&mut self, command: &[u8], code: Option<u32>, response: &[u8]) {
        let (Ok(clen), Ok(rlen)) = (u32::try_from(command.len()), u32::try_from(response.len()))
        else {
            return;
        };
        if clen > self.sizes.largest_command_size {
            self.sizes.largest_command_size = clen;
            self.sizes.largest_command = code.unwrap_or(0);
        }
        if rlen > self.sizes.largest_response_size {
            self.sizes.largest_response_size = rlen;
            self.sizes.largest_response = code.unwrap_or(0);
        }
    }

    /// Largest command and response since the last call; resets them (simulator semantics).
    pub fn take_sizes(&mut self) -> Sizes {
        std::mem::take(&mut self.sizes)
    }

    /// `TPM2_Startup(CLEAR)` at locality 0; returns the response code.
    pub fn startup_clear(&mut self) -> Option<u32> {
        let response = self.execute(&su_command(TPM_CC_STARTUP, TPM_SU_CLEAR));
        response_code(&response)
    }

    /// What swtpm does before it stops the TPM (`tpmlib_maybe_send_tpm2_shutdown`): unless the
    /// last command was `TPM2_Shutdown`, send `TPM2_Shutdown(STATE)`, and `(CLEAR)` if that fails
    /// for a reason other than the TPM not being started.
    pub fn orderly_shutdown(&mut self) {
        if !self.powered || !self.running || self.last_command == Some(TPM_CC_SHUTDOWN) {
            return;
        }
        for su in [TPM_SU_STATE, TPM_SU_CLEAR] {
            let response = self.execute_at(0, &su_command(TPM_CC_SHUTDOWN, su));
            match response_code(&response) {
                Some(0) => {
                    tracing::debug!(su, "sent TPM2_Shutdown on the client's behalf");
                    return;
                }
                Some(TPM_RC_INITIALIZE) => return,
                rc => tracing::debug!(su, ?rc, "TPM2_Shutdown failed"),
            }
        }
    }

    /// swtpm `CMD_INIT`: orderly shutdown, power cycle (`_TPM_Init`); the client sends Startup.
    pub fn init(&mut self) {
        self.orderly_shutdown();
        self.tpm.power_off();
        self.tpm.power_on();
        self.powered = true;
        self.running = true;
        self.last_command = None;
    }

    /// swtpm `CMD_STOP` / `CMD_SHUTDOWN`: orderly shutdown, then the TPM stops answering.
    pub fn stop(&mut self) {
        self.orderly_shutdown();
        if self.running {
            self.tpm.power_off();
        }
        self.running = false;
    }

    /// Whether the TPM runs (swtpm's `tpm_running`).
    pub fn running(&self) -> bool {
        self.running
    }

    /// Simulator `TPM_SIGNAL_POWER_ON`: no effect if the TPM has power already.
    pub fn power_on(&mut self) {
        if !self.powered {
            self.tpm.power_on();
            self.powered = true;
            self.running = true;
            self.last_command = None;
        }
    }

    /// Simulator `TPM_SIGNAL_POWER_OFF`: power is lost, no orderly shutdown.
    pub fn power_off(&mut self) {
        if self.powered {
            self.tpm.power_off();
            self.powered = false;
        }
    }

    /// Simulator `TPM_SIGNAL_RESET`: `_TPM_Init` if the TPM has power.
    pub fn reset(&mut self) {
        if self.powered {
            self.tpm.power_off();
            self.tpm.power_on();
            self.running = true;
            self.last_command = None;
        }
    }

    /// Cancels the command in progress.
    pub fn cancel(&mut self) {
        self.tpm.cancel();
    }

    /// Simulator `TPM_SIGNAL_NV_ON` / `NV_OFF`.
    pub fn set_nv_available(&mut self, available: bool) {
        self.tpm.set_nv_available(available);
    }

    /// The locality of raw commands.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn locality(&self) -> u8 {
        self.locality
    }

    /// Sets the locality of raw commands (swtpm `CMD_SET_LOCALITY`).
    pub fn set_locality(&mut self, locality: u8) {
        self.locality = locality;
    }

    /// The tpmEstablished bit.
    pub fn established(&self) -> bool {
        self.established
    }

    /// Clears the tpmEstablished bit.
    pub fn reset_established(&mut self) {
        self.established = false;
    }
}

/// A 10-byte response with `rc` and no parameters.
pub fn error_response(rc: u32) -> Vec<u8> {
    let mut r = Vec::with_capacity(10);
    r.extend_from_slice(&0x8001u16.to_be_bytes());
    r.extend_from_slice(&10u32.to_be_bytes());
    r.extend_from_slice(&rc.to_be_bytes());
    r
}

/// The response code of a response, if it has a header.
pub fn response_code(response: &[u8]) -> Option<u32> {
    let bytes = response.get(6..10)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// The command code of a command, if it has a header.
fn command_code(command: &[u8]) -> Option<u32> {
    let bytes = command.get(6..10)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// `TPM2_Startup` or `TPM2_Shutdown` with a `TPM_SU` parameter.
fn su_command(code: u32, su: u16) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0..2].copy_from_slice(&0x8001u16.to_be_bytes());
    c[2..6].copy_from_slice(&12u32.to_be_bytes());
    c[6..10].copy_from_slice(&code.to_be_bytes());
    c[10..12].copy_from_slice(&su.to_be_bytes());
    c
}

#[cfg(test)]
pub(crate) mod fake {
    //! A stand-in engine for unit tests: records what it was asked to do.

    use super::*;

    #[derive(Debug, Default)]
    pub struct FakeTpm {
        pub log: Vec<String>,
        pub started: bool,
        pub nv: bool,
    }

    impl Tpm for FakeTpm {
        fn execute(&mut self, locality: u8, command: &[u8]) -> Vec<u8> {
            let code = command_code(command).unwrap_or(0);
            self.log.push(format!("exec {code:#x} loc {locality}"));
            let rc = match code {
                TPM_CC_STARTUP if self.started => TPM_RC_INITIALIZE,
                TPM_CC_STARTUP => {
                    self.started = true;
                    0
                }
                _ if !self.started => TPM_RC_INITIALIZE,
                _ => 0,
            };
            let mut r = error_response(rc);
            // Echo the command length after the header so tests can see what arrived.
            if rc == 0 {
                r.extend_from_slice(&u32::try_from(command.len()).unwrap_or(0).to_be_bytes());
                r[2..6].copy_from_slice(&14u32.to_be_bytes());
            }
            r
        }
        fn power_off(&mut self) {
            self.log.push("power_off".into());
            self.started = false;
        }
        fn power_on(&mut self) {
            self.log.push("power_on".into());
        }
        fn cancel(&mut self) {
            self.log.push("cancel".into());
        }
        fn set_nv_available(&mut self, available: bool) {
            self.nv = available;
        }
    }

    pub fn started_device() -> Device<FakeTpm> {
        let mut d = Device::new(FakeTpm::default());
        assert_eq!(d.startup_clear(), Some(0));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;

    #[test]
    fn stop_answers_failure_until_init() {
        let mut d = started_device();
        d.stop();
        assert!(
            d.tpm().log.iter().any(|l| l == "exec 0x145 loc 0"),
            "orderly shutdown sent"
        );
        assert_eq!(
            response_code(&d.execute(&su_command(0x17b, 0))),
            Some(TPM_RC_FAILURE)
        );
        d.init();
        assert_eq!(
            response_code(&d.execute(&su_command(0x17b, 0))),
            Some(TPM_RC_INITIALIZE)
        );
        assert_eq!(d.startup_clear(), Some(0));
    }

    #[test]
    fn no_second_shutdown_after_client_shutdown() {
        let mut d = started_device();
        d.execute(&su_command(TPM_CC_SHUTDOWN, TPM_SU_CLEAR));
        let n = d.tpm().log.len();
        d.stop();
        assert_eq!(
            d.tpm().log.len(),
            n + 1,
            "only power_off: {:?}",
            d.tpm().log
        );
    }

    #[test]
    fn powered_off_answers_nothing_and_power_on_is_idempotent() {
        let mut d = started_device();
        d.power_on();
        assert!(!d.tpm().log.iter().any(|l| l == "power_on"));
        d.power_off();
        assert!(d.execute(&su_command(0x17b, 0)).is_empty());
        d.power_on();
        assert_eq!(d.startup_clear(), Some(0));
    }

    #[test]
    fn oversized_command_is_refused_before_the_engine() {
        let mut d = started_device();
        let n = d.tpm().log.len();
        let r = d.execute(&vec![0u8; MAX_COMMAND_SIZE + 1]);
        assert_eq!(response_code(&r), Some(TPM_RC_COMMAND_SIZE));
        assert_eq!(d.tpm().log.len(), n);
    }

    #[test]
    fn framed_locality_sticks() {
        let mut d = started_device();
        d.execute_at(3, &su_command(0x17b, 0));
        d.execute(&su_command(0x17b, 0));
        assert_eq!(
            d.tpm().log.last().map(String::as_str),
            Some("exec 0x17b loc 3")
        );
        assert_eq!(d.locality(), 3);
    }
}
