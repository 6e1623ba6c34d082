//! The swtpm data-channel framing ("plain mode", see shared/reference/swtpm-protocol.md): the
//! client writes one TPM 2.0 command with no extra framing, a 10-byte header (tag u16,
//! commandSize u32 = total length, commandCode u32, all big-endian) and the parameters; the
//! server answers with one complete response. This module only reassembles commands from a
//! byte stream; it knows nothing of sockets or the engine.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

/// Length of a TPM 2.0 command or response header.
pub const HEADER_LEN: usize = 10;
/// Largest command accepted (DESIGN §3: every allocation bounded).
pub const MAX_COMMAND: usize = 4096;
/// TPM_RC_COMMAND_SIZE: commandSize disagrees with the bytes, or is out of range.
pub const TPM_RC_COMMAND_SIZE: u32 = 0x142;
/// TPM_ST_NO_SESSIONS.
const TPM_ST_NO_SESSIONS: u16 = 0x8001;

/// Where the assembler stands after taking bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// More bytes are needed.
    Incomplete,
    /// A whole command is buffered: take it with [`Assembler::take`].
    Complete,
    /// The header's commandSize is below 10 or above [`MAX_COMMAND`]: the stream cannot be
    /// re-synchronised; answer [`size_error_response`] and close the connection.
    BadSize(u32),
}

/// Reassembles one command at a time from a byte stream.
#[derive(Debug, Default)]
pub struct Assembler {
    buf: Vec<u8>,
}

impl Assembler {
    /// An empty assembler.
    pub fn new() -> Assembler {
        Assembler::default()
    }

    /// Whether part of a command is buffered.
    pub fn is_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The command's declared total size, once the header is in.
    fn declared(&self) -> Option<u32> {
        let size = self.buf.get(2..6)?;
        Some(u32::from_be_bytes([size[0], size[1], size[2], size[3]]))
    }

    /// How many more bytes the current command needs (0 once complete or bad).
    pub fn wanted(&self) -> usize {
        if self.buf.len() < HEADER_LEN {
            return HEADER_LEN - self.buf.len();
        }
        match self.status() {
            Status::Incomplete => self
                .declared()
                .and_then(|d| usize::try_from(d).ok())
                .map_or(0, |d| d.saturating_sub(self.buf.len())),
            _ => 0,
        }
    }

    /// Current status.
    pub fn status(&self) -> Status {
        let Some(declared) = self.declared() else {
            return Status::Incomplete;
        };
        if self.buf.len() < HEADER_LEN {
            return Status::Incomplete;
        }
        let size = usize::try_from(declared).unwrap_or(usize::MAX);
        if !(HEADER_LEN..=MAX_COMMAND).contains(&size) {
            Status::BadSize(declared)
        } else if self.buf.len() == size {
            Status::Complete
        } else {
            Status::Incomplete
        }
    }

    /// Takes up to [`wanted`](Self::wanted) bytes from `data`; returns how many were used.
    /// Bytes beyond the current command are left for the next one.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        // First the header, then (once its size is known) the rest of the command.
        loop {
            let n = self.wanted().min(data.len() - used);
            if n == 0 {
                return used;
            }
            self.buf.extend_from_slice(&data[used..used + n]);
            used += n;
        }
    }

    /// Removes and returns the complete command, leaving the assembler empty.
    pub fn take(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.buf)
    }

    /// Drops a partial command (the client went away).
    pub fn reset(&mut self) {
        self.buf.clear();
    }
}

/// A 10-byte error response with response code `rc`.
pub fn error_response(rc: u32) -> Vec<u8> {
    let mut r = Vec::with_capacity(HEADER_LEN);
    r.extend_from_slice(&TPM_ST_NO_SESSIONS.to_be_bytes());
    r.extend_from_slice(&(HEADER_LEN as u32).to_be_bytes());
    r.extend_from_slice(&rc.to_be_bytes());
    r
}

/// The answer to [`Status::BadSize`].
pub fn size_error_response() -> Vec<u8> {
    error_response(TPM_RC_COMMAND_SIZE)
}

/// swtpm control channel (port P+1; `include/swtpm/tpm_ioctl.h`): a request is a big-endian
/// u32 command code and its parameters, the reply starts with a u32 result (0 = success). The
/// unikernel implements what the tpm2-tss `swtpm:` TCTI uses: `CMD_GET_CAPABILITY` and
/// `CMD_SET_LOCALITY`; everything else gets `TPM_BAD_ORDINAL`. (The attested channel replaces
/// this plaintext port later; locality then comes from the agent.)
pub mod control {
    use alloc::vec::Vec;

    /// `CMD_GET_CAPABILITY`.
    pub const CMD_GET_CAPABILITY: u32 = 0x01;
    /// `CMD_SET_LOCALITY`.
    pub const CMD_SET_LOCALITY: u32 = 0x05;
    /// `PTM_CAP_SET_LOCALITY`: the only capability offered.
    pub const PTM_CAP_SET_LOCALITY: u32 = 1 << 3;
    /// TPM 1.2-style results used by swtpm's control channel.
    pub const TPM_SUCCESS: u32 = 0;
    /// Unknown or unsupported command.
    pub const TPM_BAD_ORDINAL: u32 = 0x0a;
    /// Locality above 4.
    pub const TPM_BAD_LOCALITY: u32 = 0x3d;

    /// Total request length for `code` (code included).
    pub fn request_len(code: u32) -> usize {
        if code == CMD_SET_LOCALITY { 5 } else { 4 }
    }

    fn code(buf: &[u8]) -> Option<u32> {
        let c = buf.get(0..4)?;
        Some(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Bytes still missing from the request in `buf`.
    pub fn wanted(buf: &[u8]) -> usize {
        match code(buf) {
            None => 4 - buf.len(),
            Some(c) => request_len(c).saturating_sub(buf.len()),
        }
    }

    /// Appends what the current request still needs from `data`; returns the bytes used.
    pub fn push(buf: &mut Vec<u8>, data: &[u8]) -> usize {
        let mut used = 0;
        loop {
            let n = wanted(buf).min(data.len() - used);
            if n == 0 {
                return used;
            }
            buf.extend_from_slice(&data[used..used + n]);
            used += n;
        }
    }

    /// Whether `buf` holds a whole request.
    pub fn is_complete(buf: &[u8]) -> bool {
        buf.len() >= 4 && wanted(buf) == 0
    }

    /// Handles one complete request (`request_len` bytes); updates `locality`.
    pub fn reply(request: &[u8], locality: &mut u8) -> Vec<u8> {
        let Some(code) = code(request) else {
            return TPM_BAD_ORDINAL.to_be_bytes().to_vec();
        };
        let words: &[u32] = match (code, request.get(4)) {
            (CMD_GET_CAPABILITY, _) => &[TPM_SUCCESS, PTM_CAP_SET_LOCALITY],
            (CMD_SET_LOCALITY, Some(&l)) if l <= 4 => {
                *locality = l;
                &[TPM_SUCCESS]
            }
            (CMD_SET_LOCALITY, _) => &[TPM_BAD_LOCALITY],
            _ => &[TPM_BAD_ORDINAL],
        };
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_requests() {
        let mut locality = 0;
        assert_eq!(control::request_len(5), 5);
        assert_eq!(
            control::reply(&[0, 0, 0, 5, 3], &mut locality),
            [0, 0, 0, 0]
        );
        assert_eq!(locality, 3);
        assert_eq!(
            control::reply(&[0, 0, 0, 5, 9], &mut locality),
            [0, 0, 0, 0x3d]
        );
        assert_eq!(locality, 3);
        assert_eq!(
            control::reply(&[0, 0, 0, 1], &mut locality),
            [0, 0, 0, 0, 0, 0, 0, 8]
        );
        assert_eq!(
            control::reply(&[0, 0, 0, 0x0c], &mut locality),
            [0, 0, 0, 0x0a]
        );
        let mut buf = Vec::new();
        assert_eq!(control::push(&mut buf, &[0, 0, 0]), 3);
        assert!(!control::is_complete(&buf));
        assert_eq!(control::push(&mut buf, &[5, 1, 0, 0, 0, 1]), 2);
        assert!(control::is_complete(&buf));
    }

    const GET_RANDOM_8: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 8];

    #[test]
    fn whole_command_in_one_piece() {
        let mut a = Assembler::new();
        assert_eq!(a.push(&GET_RANDOM_8), 12);
        assert_eq!(a.status(), Status::Complete);
        assert_eq!(a.take(), GET_RANDOM_8);
        assert!(!a.is_partial());
    }

    #[test]
    fn split_header_and_body() {
        let mut a = Assembler::new();
        for chunk in GET_RANDOM_8.chunks(3) {
            assert_eq!(a.status(), Status::Incomplete);
            assert_eq!(a.push(chunk), chunk.len());
        }
        assert_eq!(a.status(), Status::Complete);
    }

    #[test]
    fn leaves_the_next_command_alone() {
        let mut a = Assembler::new();
        let mut two = GET_RANDOM_8.to_vec();
        two.extend_from_slice(&GET_RANDOM_8);
        assert_eq!(a.push(&two), 12);
        assert_eq!(a.status(), Status::Complete);
        assert_eq!(a.wanted(), 0);
        assert_eq!(a.push(&two[12..]), 0);
    }

    #[test]
    fn rejects_bad_sizes() {
        for size in [0u32, 9, 4097, u32::MAX] {
            let mut a = Assembler::new();
            let mut h = vec![0x80, 0x01];
            h.extend_from_slice(&size.to_be_bytes());
            h.extend_from_slice(&[0, 0, 1, 0x7b]);
            assert_eq!(a.push(&h), 10);
            assert_eq!(a.status(), Status::BadSize(size));
            assert_eq!(a.wanted(), 0);
        }
    }

    #[test]
    fn header_only_command_is_complete() {
        let mut a = Assembler::new();
        a.push(&[0x80, 0x01, 0, 0, 0, 10, 0, 0, 1, 0x44]);
        assert_eq!(a.status(), Status::Complete);
    }

    #[test]
    fn error_response_layout() {
        assert_eq!(size_error_response(), [0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0x42]);
    }
}
