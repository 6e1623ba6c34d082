//! Authorization values (Part 1, 19.6.4 "Password Authorizations").

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A TPM2B_AUTH value. Stored with trailing zero octets removed, as the reference
/// implementation does, so a password compares equal with or without zero padding.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct AuthValue(Vec<u8>);

fn trim(v: &[u8]) -> &[u8] {
    let end = v.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &v[..end]
}

impl AuthValue {
    pub fn new(v: &[u8]) -> Self {
        Self(trim(v).to_vec())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time comparison with a password from a password session.
    pub fn matches(&self, password: &[u8]) -> bool {
        let p = trim(password);
        p.len() == self.0.len() && bool::from(p.ct_eq(&self.0))
    }
}

impl core::fmt::Debug for AuthValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AuthValue(<{} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_zeros_ignored() {
        let a = AuthValue::new(b"abc\0\0");
        assert!(a.matches(b"abc"));
        assert!(a.matches(b"abc\0"));
        assert!(!a.matches(b"ab"));
        assert!(AuthValue::default().matches(b""));
    }
}
