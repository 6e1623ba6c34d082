//! [`Engine`]: command bytes in, response bytes out (Part 1, 18 "Command/Response Structure";
//! the order of checks follows the reference implementation's ExecuteCommand so malformed
//! commands get the codes a real TPM returns).

use alloc::vec::Vec;

use crate::auth::{self, SessionIn};
use crate::commands::{self, CommandDef, Dispatch, Request};
use crate::context::{Ctx, Tpm};
use crate::crypto::drbg::{Drbg, SEED_LEN};
use crate::handle::Handle;
use crate::marshal::Writer;
use crate::platform::{CommitError, Platform};
use crate::rc::{TpmRc, TpmResult};
use crate::state::persist::{self, StateError};
use crate::state::{PersistentState, Volatile};

/// Largest command and response (TPM_PT_MAX_COMMAND_SIZE / MAX_RESPONSE_SIZE).
pub const MAX_COMMAND_SIZE: usize = 4096;
pub const MAX_RESPONSE_SIZE: usize = 4096;

/// TPM_ST values used in headers (Part 2, 6.9).
const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;

const HEADER_LEN: usize = 10;

/// A TPM 2.0 engine bound to its platform.
pub struct Engine<P: Platform> {
    platform: P,
    tpm: Tpm,
    dispatch: Dispatch,
    /// Commit number of the last stored state and its bytes (for rollback).
    version: u64,
    committed: Vec<u8>,
}

impl<P: Platform> core::fmt::Debug for Engine<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("version", &self.version)
            .field("started", &self.tpm.vs.started)
            .finish()
    }
}

fn seeded_drbg(platform: &mut dyn Platform) -> Drbg {
    let mut seed = [0u8; SEED_LEN];
    platform.entropy(&mut seed);
    Drbg::new(&seed)
}

impl<P: Platform> Engine<P> {
    /// Manufactures a fresh TPM (new seeds, empty auths) and commits its state as version 1.
    ///
    /// # Errors
    ///
    /// [`CommitError`] when the platform could not store the new state.
    pub fn new(mut platform: P) -> Result<Self, CommitError> {
        let mut drbg = seeded_drbg(&mut platform);
        let ps = PersistentState::manufacture(|b| drbg.fill(b));
        let now = platform.now_ms();
        let blob = persist::encode(&ps, 1);
        platform.commit(1, &blob)?;
        Ok(Self {
            tpm: Tpm::new(ps, Volatile::power_on(now), drbg),
            platform,
            dispatch: Dispatch::new(),
            version: 1,
            committed: blob,
        })
    }

    /// Restores a TPM from a blob previously passed to [`Platform::commit`]. The TPM is
    /// powered on and expects TPM2_Startup.
    ///
    /// # Errors
    ///
    /// [`StateError`] when the blob is not a readable state of this format.
    pub fn restore(mut platform: P, state: &[u8]) -> Result<Self, StateError> {
        let (ps, version) = persist::decode(state)?;
        let drbg = seeded_drbg(&mut platform);
        let now = platform.now_ms();
        Ok(Self {
            tpm: Tpm::new(ps, Volatile::power_on(now), drbg),
            platform,
            dispatch: Dispatch::new(),
            version,
            committed: state.to_vec(),
        })
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// Commit number of the state last stored.
    pub fn state_version(&self) -> u64 {
        self.version
    }

    /// The state blob last stored.
    pub fn state_blob(&self) -> &[u8] {
        &self.committed
    }

    /// TPM2_Startup has succeeded since power-on.
    pub fn is_started(&self) -> bool {
        self.tpm.vs.started
    }

    /// Power loss: volatile state is gone. Commands fail until [`Engine::power_on`].
    pub fn power_off(&mut self) {
        let now = self.platform.now_ms();
        self.tpm.advance_clock(now);
        self.tpm.vs = Volatile::power_on(now);
    }

    /// `_TPM_Init` (Part 1, 36.2): volatile state reset; the next command must be Startup.
    pub fn power_on(&mut self) {
        self.power_off();
    }

    /// The platform cancels the command in progress. Commands here run to completion
    /// quickly, so there is nothing to interrupt; the flag is cleared by the next command.
    pub fn cancel(&mut self) {
        self.tpm.vs.cancel = true;
    }

    /// Executes one command at `locality` and returns the complete response. Never panics;
    /// a malformed command gets an error response.
    pub fn execute(&mut self, locality: u8, command: &[u8]) -> Vec<u8> {
        let now = self.platform.now_ms();
        self.tpm.advance_clock(now);
        self.tpm.vs.cancel = false;
        // A command that may write NV must have no effect at all when its commit fails, so
        // its volatile effects (e.g. Startup's `started`, Clear's flushed objects) are undone
        // with the persistent ones. Other commands change NV only as a side effect (DA
        // counters, the clock) and keep their volatile effects.
        let snapshot = command
            .get(6..10)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .filter(|&cc| commands::capability::may_write_nv(cc))
            .map(|_| self.tpm.vs.clone());
        let result = self.run(locality, now, command);
        // Durability before acknowledgement: commit whatever the command changed first.
        let result = match result {
            Ok(resp) => self.commit().map(|()| resp),
            Err(rc) => {
                // A failed command may still have changed persistent state on purpose
                // (e.g. the dictionary-attack counters after a wrong password).
                match self.commit() {
                    Ok(()) => Err(rc),
                    Err(commit_rc) => Err(commit_rc),
                }
            }
        };
        match result {
            Ok(resp) => resp,
            Err(rc) => {
                if rc == TpmRc::NV_UNAVAILABLE
                    && let Some(vs) = snapshot
                {
                    self.tpm.vs = vs;
                }
                error_response(rc)
            }
        }
    }

    fn commit(&mut self) -> TpmResult<()> {
        if !self.tpm.is_dirty() {
            return Ok(());
        }
        let version = self.version + 1;
        let blob = persist::encode(self.tpm.ps(), version);
        match self.platform.commit(version, &blob) {
            Ok(()) => {
                self.version = version;
                self.committed = blob;
                self.tpm.mark_clean();
                Ok(())
            }
            Err(CommitError) => {
                // Roll back to what is stored, so memory never runs ahead of the store.
                if let Ok((ps, _)) = persist::decode(&self.committed) {
                    self.tpm.replace_ps(ps);
                }
                Err(TpmRc::NV_UNAVAILABLE)
            }
        }
    }

    fn run(&mut self, locality: u8, now_ms: u64, command: &[u8]) -> TpmResult<Vec<u8>> {
        let header = Header::parse(command)?;
        let def: CommandDef = *self.dispatch.get(header.cc).ok_or(TpmRc::COMMAND_CODE)?;
        let is_startup = header.cc == commands::cc::STARTUP;
        if self.tpm.vs.started == is_startup {
            return Err(TpmRc::INITIALIZE);
        }

        let body = &command[HEADER_LEN..];
        let handle_count = def.handles.len().min(4);
        let mut handles = [Handle(0); 4];
        let handles = &mut handles[..handle_count];
        let platform: &mut dyn Platform = &mut self.platform;
        let mut ctx = Ctx {
            tpm: &mut self.tpm,
            platform,
            locality,
            now_ms,
        };
        // Reference ParseHandleBuffer then EntityGetLoadStatus: every handle is unmarshalled
        // (short → TPM_RC_INSUFFICIENT + H, wrong type → TPM_RC_VALUE + H) before any is
        // looked up (absent/disabled codes), so a type error in a later handle wins over an
        // absent earlier one.
        let mut load_error = None;
        for (i, (slot, h)) in def.handles.iter().zip(handles.iter_mut()).enumerate() {
            let n = (i + 1) as u8;
            let b = body
                .get(i * 4..i * 4 + 4)
                .ok_or(TpmRc::INSUFFICIENT.handle(n))?;
            *h = Handle(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            match commands::check_handle(&ctx, slot.kind, *h, n) {
                Ok(()) => {}
                Err(rc) if rc.base() == TpmRc::VALUE => return Err(rc),
                Err(rc) => {
                    load_error.get_or_insert(rc);
                }
            }
        }
        if let Some(rc) = load_error {
            return Err(rc);
        }
        let rest = body.get(handle_count * 4..).unwrap_or_default();

        let (sessions, params): (Vec<SessionIn<'_>>, &[u8]) = if header.sessions {
            auth::parse_area(&ctx, rest)?
        } else {
            if def.auth_count() > 0 {
                return Err(TpmRc::AUTH_MISSING);
            }
            (Vec::new(), rest)
        };
        let mut command_sessions = if header.sessions {
            Some(auth::authorize(&mut ctx, &def, handles, &sessions, params)?)
        } else {
            None
        };
        // Parameter encryption (Part 1, 21): the handler sees the decrypted first parameter.
        let decrypted = match &command_sessions {
            Some(cs) => crate::session::decrypt_first_param(&ctx, cs, params)?,
            None => None,
        };

        let req = Request {
            cc: header.cc,
            handles,
            params: decrypted.as_deref().unwrap_or(params),
            locality,
        };
        // Command audit needs the cpHash of the command as received, before it runs.
        let audit_cp = crate::session::audit_cp_hash(&ctx, header.cc, handles, params);
        let resp = (def.run)(&mut ctx, &req)?;
        let mut resp_params = resp.params.into_vec();

        let mut out = Writer::with_capacity(HEADER_LEN + 16 + resp_params.len());
        let tag = if header.sessions {
            ST_SESSIONS
        } else {
            ST_NO_SESSIONS
        };
        out.u16(tag).u32(0).u32(TpmRc::SUCCESS.0);
        if let Some(h) = resp.handle {
            out.u32(h.0);
        }
        if let Some(cs) = command_sessions.as_mut() {
            // Nonces roll, the first response parameter is encrypted, response HMACs cover
            // the parameters as sent (Part 1, 19.6.6 and 21).
            let area = crate::session::respond(&mut ctx, cs, &mut resp_params);
            crate::session::command_audit(&mut ctx, header.cc, audit_cp, &resp_params);
            out.u32(resp_params.len() as u32);
            out.bytes(&resp_params);
            out.bytes(area.as_slice());
        } else {
            crate::session::command_audit(&mut ctx, header.cc, audit_cp, &resp_params);
            out.bytes(&resp_params);
        }
        let mut bytes = out.into_vec();
        if bytes.len() > MAX_RESPONSE_SIZE {
            return Err(TpmRc::SIZE);
        }
        let size = (bytes.len() as u32).to_be_bytes();
        bytes[2..6].copy_from_slice(&size);
        Ok(bytes)
    }
}

/// The 10-byte command header (Part 1, 18.2).
struct Header {
    sessions: bool,
    cc: u32,
}

impl Header {
    fn parse(command: &[u8]) -> TpmResult<Self> {
        if command.len() < 2 {
            return Err(TpmRc::INSUFFICIENT);
        }
        let tag = u16::from_be_bytes([command[0], command[1]]);
        let sessions = match tag {
            ST_NO_SESSIONS => false,
            ST_SESSIONS => true,
            // libtpms (swtpm 0.7) answers an unknown tag, TPM 1.2 tags included, with a bare
            // TPM_RC_VALUE (observed by experiment), not TPM_RC_BAD_TAG.
            _ => return Err(TpmRc::VALUE),
        };
        if command.len() < HEADER_LEN {
            return Err(TpmRc::INSUFFICIENT);
        }
        let size = u32::from_be_bytes([command[2], command[3], command[4], command[5]]);
        if size as usize != command.len() || command.len() > MAX_COMMAND_SIZE {
            return Err(TpmRc::COMMAND_SIZE);
        }
        let cc = u32::from_be_bytes([command[6], command[7], command[8], command[9]]);
        Ok(Self { sessions, cc })
    }
}

/// A 10-byte error response. Every error, a bad tag included, is answered with
/// TPM_ST_NO_SESSIONS, as swtpm/libtpms do.
pub fn error_response(rc: TpmRc) -> Vec<u8> {
    let mut out = Writer::with_capacity(HEADER_LEN);
    out.u16(ST_NO_SESSIONS).u32(HEADER_LEN as u32).u32(rc.0);
    out.into_vec()
}
