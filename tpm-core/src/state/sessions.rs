//! Authorization sessions (Part 1, 19.6 "Session-Based Authorizations"; Part 1, 15.4 session
//! handles): loaded HMAC, policy and trial sessions, and the handles of sessions whose context
//! was saved (they stay "active" and keep their handle until loaded again or flushed).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::crypto::hash::HashAlg;
use crate::handle::{Handle, HandleType};

/// Sessions that can be loaded at once (TPM_PT_HR_LOADED_MIN). libtpms has 3; clients that
/// forget to flush get TPM_RC_SESSION_MEMORY a little later here.
pub const MAX_LOADED_SESSIONS: usize = 8;
/// Sessions that can be active, loaded or saved (TPM_PT_ACTIVE_SESSIONS_MAX).
pub const MAX_ACTIVE_SESSIONS: usize = 64;

/// TPM_SE (Part 2, 6.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionKind {
    Hmac,
    Policy,
    Trial,
}

/// TPMT_SYM_DEF of a session: the parameter-encryption algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSymmetric {
    /// TPM_ALG_AES, TPM_ALG_XOR or TPM_ALG_NULL.
    pub alg: u16,
    /// AES key bits, or the XOR hash algorithm.
    pub key_bits: u16,
    /// AES mode (only TPM_ALG_CFB is allowed for sessions).
    pub mode: u16,
}

/// What the policy commands have asserted so far (Part 3, 23; reference SESSION attributes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    /// PolicyCommandCode.
    pub command_code: Option<u32>,
    /// PolicyCpHash / PolicyNameHash / PolicyParameters / PolicyTemplate: which one, and the hash.
    pub cp_hash: Option<(CpHashKind, Vec<u8>)>,
    /// PolicyLocality: TPMA_LOCALITY (0 = not set).
    pub locality: u8,
    /// PolicyPCR: pcrUpdateCounter when the PCRs were checked.
    pub pcr_counter: Option<u32>,
    /// PolicyPassword: the authorization field is the plaintext authValue.
    pub password_needed: bool,
    /// PolicyAuthValue: the HMAC includes the authValue.
    pub auth_value_needed: bool,
    /// PolicyNvWritten: required TPMA_NV_WRITTEN state.
    pub nv_written: Option<bool>,
    /// Policy expires at this TPM time (ms since `_TPM_Init`); 0 = never.
    pub timeout_ms: u64,
    /// PolicyPhysicalPresence.
    pub pp_required: bool,
}

/// What the policy's cpHash field binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpHashKind {
    CpHash,
    NameHash,
    Template,
}

/// One loaded session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub kind: SessionKind,
    pub alg: HashAlg,
    pub nonce_tpm: Vec<u8>,
    /// KDFa(authHash, bindAuth || salt, "ATH", nonceTPM, nonceCaller): empty for unbound,
    /// unsalted sessions.
    pub session_key: Vec<u8>,
    pub symmetric: SessionSymmetric,
    /// Bind value (entity Name || authValue at start) of a bound HMAC session.
    pub bound: Option<Vec<u8>>,
    /// Bound to a DA-protected entity: every use is subject to lockout.
    pub da_bound: bool,
    /// Bound to lockoutAuth.
    pub lockout_bound: bool,
    /// Policy digest (policy and trial sessions), digest-size zeros at start.
    pub policy_digest: Vec<u8>,
    pub policy: PolicyState,
    /// nonceTPM at session start: the policy-commands' `nonceTPM` for expiration checks is
    /// the current one, this one is kept for PolicyTicket epochs.
    pub start_time_ms: u64,
    /// Audit digest once used as an audit session.
    pub audit_digest: Option<Vec<u8>>,
}

impl Session {
    pub fn is_policy(&self) -> bool {
        !matches!(self.kind, SessionKind::Hmac)
    }

    /// Resets the policy to its initial state (PolicyRestart, and after each use of a policy
    /// session that continues: Part 1, 19.7.1).
    pub fn reset_policy(&mut self, now_ms: u64) {
        self.policy_digest = alloc::vec![0u8; self.alg.digest_size()];
        self.policy = PolicyState::default();
        self.start_time_ms = now_ms;
    }
}

/// Loaded sessions and the handles of saved ones.
#[derive(Clone, Debug, Default)]
pub struct SessionStore {
    loaded: BTreeMap<u32, Session>,
    /// Saved contexts: handle → context sequence number of the one valid saved copy.
    saved: BTreeMap<u32, u64>,
    next_sequence: u64,
}

impl SessionStore {
    /// Slot index part of a session handle (HMAC and policy sessions share the slots).
    fn index(h: Handle) -> u32 {
        h.0 & 0x00FF_FFFF
    }

    fn is_active_index(&self, i: u32) -> bool {
        let h = |first: Handle| first.0 + i;
        [Handle::HMAC_SESSION_FIRST, Handle::POLICY_SESSION_FIRST]
            .iter()
            .any(|f| self.loaded.contains_key(&h(*f)) || self.saved.contains_key(&h(*f)))
    }

    pub fn loaded_count(&self) -> usize {
        self.loaded.len()
    }

    pub fn active_count(&self) -> usize {
        self.loaded.len() + self.saved.len()
    }

    /// Adds a new session; `None` when memory (TPM_RC_SESSION_MEMORY) or handles
    /// (TPM_RC_SESSION_HANDLES) are exhausted — the caller tells which by `loaded_count`.
    pub fn insert(&mut self, session: Session) -> Option<Handle> {
        if self.loaded.len() >= MAX_LOADED_SESSIONS {
            return None;
        }
        let first = match session.kind {
            SessionKind::Hmac => Handle::HMAC_SESSION_FIRST,
            SessionKind::Policy | SessionKind::Trial => Handle::POLICY_SESSION_FIRST,
        };
        let i = (0..MAX_ACTIVE_SESSIONS as u32).find(|&i| !self.is_active_index(i))?;
        let h = Handle(first.0 + i);
        self.loaded.insert(h.0, session);
        Some(h)
    }

    pub fn get(&self, h: Handle) -> Option<&Session> {
        self.loaded.get(&h.0)
    }

    pub fn get_mut(&mut self, h: Handle) -> Option<&mut Session> {
        self.loaded.get_mut(&h.0)
    }

    pub fn is_loaded(&self, h: Handle) -> bool {
        self.loaded.contains_key(&h.0)
    }

    pub fn is_saved(&self, h: Handle) -> bool {
        self.saved.contains_key(&h.0)
    }

    /// Removes a loaded or saved session (FlushContext, continueSession CLEAR).
    pub fn flush(&mut self, h: Handle) -> bool {
        self.loaded.remove(&h.0).is_some() || self.saved.remove(&h.0).is_some()
    }

    /// Loaded session handles in ascending order (TPM_CAP_HANDLES, TPM_HT_LOADED_SESSION).
    pub fn loaded_handles(&self) -> impl Iterator<Item = Handle> + '_ {
        self.loaded.keys().map(|&h| Handle(h))
    }

    /// Saved session handles (TPM_CAP_HANDLES, TPM_HT_SAVED_SESSION).
    pub fn saved_handles(&self) -> impl Iterator<Item = Handle> + '_ {
        self.saved.keys().map(|&h| Handle(h))
    }

    /// ContextSave of a session (Part 3, 28.2): the session leaves memory, its handle stays
    /// reserved; returns the session and the sequence number the saved context must carry.
    pub fn save(&mut self, h: Handle) -> Option<(Session, u64)> {
        let s = self.loaded.remove(&h.0)?;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.saved.insert(h.0, self.next_sequence);
        Some((s, self.next_sequence))
    }

    /// ContextLoad of a session: only the last saved context of an active handle loads, once
    /// (replay protection, Part 1, 30.4). `Err(true)` = no memory, `Err(false)` = not valid.
    pub fn load(&mut self, h: Handle, sequence: u64, session: Session) -> Result<(), bool> {
        if self.saved.get(&h.0) != Some(&sequence) {
            return Err(false);
        }
        if self.loaded.len() >= MAX_LOADED_SESSIONS {
            return Err(true);
        }
        let expected = match h.kind() {
            HandleType::HmacSession => session.kind == SessionKind::Hmac,
            HandleType::PolicySession => session.kind != SessionKind::Hmac,
            _ => false,
        };
        if !expected {
            return Err(false);
        }
        self.saved.remove(&h.0);
        self.loaded.insert(h.0, session);
        Ok(())
    }

    /// TPM Reset: every session is gone (Part 1, 19.6.2).
    pub fn clear(&mut self) {
        self.loaded.clear();
        self.saved.clear();
    }

    /// Index helper for callers that need the slot number.
    pub fn slot(h: Handle) -> u32 {
        Self::index(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(kind: SessionKind) -> Session {
        Session {
            kind,
            alg: HashAlg::Sha256,
            nonce_tpm: alloc::vec![1; 16],
            session_key: Vec::new(),
            symmetric: SessionSymmetric {
                alg: 0x10,
                key_bits: 0,
                mode: 0,
            },
            bound: None,
            da_bound: false,
            lockout_bound: false,
            policy_digest: alloc::vec![0; 32],
            policy: PolicyState::default(),
            start_time_ms: 0,
            audit_digest: None,
        }
    }

    #[test]
    fn handles_share_slots_and_save_load_once() {
        let mut st = SessionStore::default();
        let a = st.insert(session(SessionKind::Hmac)).unwrap();
        let b = st.insert(session(SessionKind::Policy)).unwrap();
        assert_eq!(a, Handle(0x0200_0000));
        assert_eq!(b, Handle(0x0300_0001));
        let (s, seq) = st.save(a).unwrap();
        assert!(!st.is_loaded(a) && st.is_saved(a));
        // The saved handle stays reserved.
        let c = st.insert(session(SessionKind::Hmac)).unwrap();
        assert_eq!(c, Handle(0x0200_0002));
        assert_eq!(st.load(a, seq + 1, s.clone()), Err(false));
        assert_eq!(st.load(a, seq, s.clone()), Ok(()));
        assert_eq!(st.load(a, seq, s), Err(false));
        assert!(st.flush(a) && !st.flush(a));
    }
}
