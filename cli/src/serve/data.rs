//! Framing of the data port P (sans-IO): where one request ends in the bytes received so far.
//!
//! Two framings share the port, told apart per request as swtpm 0.7 does
//! (`tpmlib_handle_tcg_tpm2_cmd_header`):
//! * raw: a TPM 2.0 command as is (tag `0x8001`/`0x8002`, u32 commandSize, u32 commandCode, ...);
//!   the response goes back as is;
//! * the TCG simulator's `TPM_SEND_COMMAND` (u32 8, u8 locality, u32 length, command); the
//!   response goes back as u32 length, response, u32 0.
//!
//! With `--protocol mssim` the other simulator interface commands of `TpmTcpProtocol.h` are
//! understood too (handshake, session end, stop).
//!
//! Raw commands follow swtpm where it matters to a client that gets things wrong: whatever has
//! arrived once the header is complete and `commandSize` bytes are in (or the client has gone quiet
//! for [`super::PARTIAL_TIMEOUT`]) is one command, so a size field that lies, or two commands
//! written at once, get the engine's `TPM_RC_COMMAND_SIZE` as from swtpm, instead of a wedged or
//! desynchronised connection. A command larger than [`MAX_COMMAND_SIZE`] is answered with
//! `TPM_RC_COMMAND_SIZE` without buffering it, and the rest of it is skipped.

use super::device::MAX_COMMAND_SIZE;
use super::mssim::{
    TPM_REMOTE_HANDSHAKE, TPM_SEND_COMMAND, TPM_SESSION_END, TPM_SET_ALTERNATIVE_RESULT, TPM_STOP,
};
use super::wire::{be32, be32_usize};

/// Size of the TPM 2.0 command header (tag, commandSize, commandCode).
const HEADER: usize = 10;
/// Size of the `TPM_SEND_COMMAND` prefix (command, locality, length).
const SEND_PREFIX: usize = 9;

/// One request on the data port.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// A raw TPM command (everything received, see the module docs).
    Raw(&'a [u8]),
    /// `TPM_SEND_COMMAND`.
    Send { locality: u8, command: &'a [u8] },
    /// A command longer than the TPM's buffer: answer `TPM_RC_COMMAND_SIZE` (with the simulator
    /// framing if `framed`) and skip the `discard` bytes of it that have not arrived yet.
    TooLarge { framed: bool, discard: u64 },
    /// `TPM_REMOTE_HANDSHAKE` (mssim only).
    Handshake { client_version: u32 },
    /// `TPM_SET_ALTERNATIVE_RESULT` (mssim only): acknowledged, ignored.
    AlternativeResult,
    /// `TPM_SESSION_END` (mssim only): the client is done with this connection.
    SessionEnd,
    /// A `TPM_SEND_COMMAND` frame with no command in it: swtpm drops such a connection
    /// without answering, and so do we (a client that sends one has lost the framing).
    EmptySend,
    /// `TPM_STOP` (mssim only): the simulator shuts down.
    Stop,
    /// An interface command this server does not implement (mssim only).
    Unknown(u32),
}

/// A request and how many buffered bytes it used.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub consumed: usize,
    pub request: Request<'a>,
}

/// Finds the first request in `buf`, or `None` if more bytes are needed.
///
/// `simulator` enables the simulator interface commands other than `TPM_SEND_COMMAND`;
/// `idle` says the client has sent nothing for a while, which ends a raw command early.
pub fn parse(buf: &[u8], simulator: bool, idle: bool) -> Option<Parsed<'_>> {
    let tag = u16::from_be_bytes([*buf.first()?, *buf.get(1)?]);
    if tag == 0x8001 || tag == 0x8002 {
        return parse_raw(buf, idle);
    }
    let code = be32(buf, 0)?;
    match code {
        TPM_SEND_COMMAND => parse_send(buf),
        _ if !simulator => parse_raw(buf, idle),
        TPM_REMOTE_HANDSHAKE => Some(Parsed {
            consumed: 8,
            request: Request::Handshake {
                client_version: be32(buf, 4)?,
            },
        }),
        TPM_SET_ALTERNATIVE_RESULT => {
            be32(buf, 4)?;
            Some(Parsed {
                consumed: 8,
                request: Request::AlternativeResult,
            })
        }
        TPM_SESSION_END => Some(Parsed {
            consumed: 4,
            request: Request::SessionEnd,
        }),
        TPM_STOP => Some(Parsed {
            consumed: 4,
            request: Request::Stop,
        }),
        other => Some(Parsed {
            consumed: 4,
            request: Request::Unknown(other),
        }),
    }
}

fn parse_raw(buf: &[u8], idle: bool) -> Option<Parsed<'_>> {
    if buf.len() < HEADER {
        return None;
    }
    let size = be32_usize(buf, 2)?;
    if size > MAX_COMMAND_SIZE {
        return Some(Parsed {
            consumed: buf.len(),
            request: Request::TooLarge {
                framed: false,
                discard: remaining(size, buf.len()),
            },
        });
    }
    if buf.len() >= size.max(HEADER) || idle {
        Some(Parsed {
            consumed: buf.len(),
            request: Request::Raw(buf),
        })
    } else {
        None
    }
}

fn parse_send(buf: &[u8]) -> Option<Parsed<'_>> {
    if buf.len() < SEND_PREFIX {
        return None;
    }
    let locality = buf[4];
    let len = be32_usize(buf, 5)?;
    if len > MAX_COMMAND_SIZE {
        let total = SEND_PREFIX.saturating_add(len);
        let consumed = buf.len().min(total);
        return Some(Parsed {
            consumed,
            request: Request::TooLarge {
                framed: true,
                discard: remaining(total, consumed),
            },
        });
    }
    if len == 0 {
        return Some(Parsed {
            consumed: SEND_PREFIX,
            request: Request::EmptySend,
        });
    }
    let end = SEND_PREFIX + len;
    let command = buf.get(SEND_PREFIX..end)?;
    Some(Parsed {
        consumed: end,
        request: Request::Send { locality, command },
    })
}

fn remaining(total: usize, have: usize) -> u64 {
    u64::try_from(total.saturating_sub(have)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TPM2_GetRandom(8), as tpm2-tools sends it.
    const GET_RANDOM: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 0x08];

    fn framed(locality: u8, cmd: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 8, locality];
        v.extend_from_slice(&u32::try_from(cmd.len()).unwrap_or(0).to_be_bytes());
        v.extend_from_slice(cmd);
        v
    }

    #[test]
    fn raw_command_needs_all_its_bytes() {
        for n in 0..GET_RANDOM.len() {
            assert_eq!(parse(&GET_RANDOM[..n], false, false), None, "{n} bytes");
        }
        let p = parse(&GET_RANDOM, false, false);
        assert_eq!(
            p,
            Some(Parsed {
                consumed: 12,
                request: Request::Raw(&GET_RANDOM)
            })
        );
    }

    #[test]
    fn raw_command_with_extra_bytes_is_one_command_like_swtpm() {
        let two = [GET_RANDOM, GET_RANDOM].concat();
        let p = parse(&two, false, false);
        assert_eq!(
            p,
            Some(Parsed {
                consumed: 24,
                request: Request::Raw(&two)
            })
        );
    }

    #[test]
    fn raw_command_shorter_than_its_size_field_waits_until_idle() {
        let mut lie = GET_RANDOM;
        lie[5] = 0x14;
        assert_eq!(parse(&lie, false, false), None);
        assert_eq!(parse(&lie, false, true).map(|p| p.consumed), Some(12));
        // A header never completes early, idle or not.
        assert_eq!(parse(&lie[..9], false, true), None);
    }

    #[test]
    fn raw_command_with_tiny_size_field_is_taken_whole() {
        let mut small = GET_RANDOM;
        small[5] = 5;
        assert_eq!(parse(&small, false, false).map(|p| p.consumed), Some(12));
    }

    #[test]
    fn oversized_raw_command_is_refused_and_skipped() {
        let mut big = vec![0x80, 0x01, 0, 0, 0x13, 0x88, 0, 0, 0x01, 0x7b];
        big.resize(100, 0);
        let p = parse(&big, false, false);
        assert_eq!(
            p,
            Some(Parsed {
                consumed: 100,
                request: Request::TooLarge {
                    framed: false,
                    discard: 4900
                }
            })
        );
    }

    #[test]
    fn simulator_prefix_is_detected_per_command() {
        let f = framed(3, &GET_RANDOM);
        for n in 0..f.len() {
            assert_eq!(parse(&f[..n], false, false), None, "{n} bytes");
        }
        let p = parse(&f, false, false);
        assert_eq!(
            p,
            Some(Parsed {
                consumed: 21,
                request: Request::Send {
                    locality: 3,
                    command: &GET_RANDOM
                }
            })
        );
        // Framed requests are exact: a second one may follow.
        let two = [f.clone(), f].concat();
        assert_eq!(parse(&two, true, false).map(|p| p.consumed), Some(21));
    }

    #[test]
    fn oversized_framed_command() {
        let mut f = vec![0, 0, 0, 8, 0, 0, 0, 0x13, 0x88];
        f.resize(4000, 0);
        let p = parse(&f, true, false);
        assert_eq!(
            p,
            Some(Parsed {
                consumed: 4000,
                request: Request::TooLarge {
                    framed: true,
                    discard: 5009 - 4000
                }
            })
        );
    }

    #[test]
    fn empty_framed_command_closes() {
        let f = [0, 0, 0, 8, 3, 0, 0, 0, 0];
        assert_eq!(
            parse(&f, true, false),
            Some(Parsed {
                consumed: 9,
                request: Request::EmptySend
            })
        );
    }

    #[test]
    fn simulator_interface_commands_only_in_mssim_mode() {
        let end = 20u32.to_be_bytes();
        assert_eq!(
            parse(&end, true, false).map(|p| p.request),
            Some(Request::SessionEnd)
        );
        // swtpm treats it as (the start of) a raw command.
        assert_eq!(parse(&end, false, false), None);
        let hs = [15u32.to_be_bytes(), 1u32.to_be_bytes()].concat();
        assert_eq!(
            parse(&hs, true, false).map(|p| p.request),
            Some(Request::Handshake { client_version: 1 })
        );
        assert_eq!(parse(&hs[..6], true, false), None);
        let stop = 21u32.to_be_bytes();
        assert_eq!(
            parse(&stop, true, false).map(|p| p.request),
            Some(Request::Stop)
        );
        let odd = 99u32.to_be_bytes();
        assert_eq!(
            parse(&odd, true, false).map(|p| p.request),
            Some(Request::Unknown(99))
        );
    }

    #[test]
    fn bad_tag_is_a_raw_command_in_swtpm_mode() {
        let mut bad = GET_RANDOM;
        bad[1] = 0x03;
        assert_eq!(parse(&bad, false, false).map(|p| p.consumed), Some(12));
    }
}
