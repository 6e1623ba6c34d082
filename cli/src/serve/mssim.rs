//! The TCG (Microsoft) TPM 2.0 simulator's TCP protocol, `TpmTcpProtocol.h` of the reference
//! implementation (`TPMCmd/Simulator`): interface command codes, and the platform port P+1.
//!
//! Every request is a big-endian u32 code, sometimes followed by parameters; every reply but
//! `TPM_SESSION_END` and `TPM_STOP` ends with a u32 0 (`TcpServer.c`, `PlatformServer`). An
//! unknown code is answered with u32 1 and the connection is closed, as the simulator does.
//! The data-port commands (`TPM_SEND_COMMAND`, handshake, ...) are framed in `data.rs`.

use super::device::{Device, Tpm};
use super::wire::be32;
use super::{Reply, Then};

pub const TPM_SIGNAL_POWER_ON: u32 = 1;
pub const TPM_SIGNAL_POWER_OFF: u32 = 2;
pub const TPM_SIGNAL_PHYS_PRES_ON: u32 = 3;
pub const TPM_SIGNAL_PHYS_PRES_OFF: u32 = 4;
pub const TPM_SEND_COMMAND: u32 = 8;
pub const TPM_SIGNAL_CANCEL_ON: u32 = 9;
pub const TPM_SIGNAL_CANCEL_OFF: u32 = 10;
pub const TPM_SIGNAL_NV_ON: u32 = 11;
pub const TPM_SIGNAL_NV_OFF: u32 = 12;
pub const TPM_SIGNAL_KEY_CACHE_ON: u32 = 13;
pub const TPM_SIGNAL_KEY_CACHE_OFF: u32 = 14;
pub const TPM_REMOTE_HANDSHAKE: u32 = 15;
pub const TPM_SET_ALTERNATIVE_RESULT: u32 = 16;
pub const TPM_SIGNAL_RESET: u32 = 17;
pub const TPM_SIGNAL_RESTART: u32 = 18;
pub const TPM_SESSION_END: u32 = 20;
pub const TPM_STOP: u32 = 21;
pub const TPM_GET_COMMAND_RESPONSE_SIZES: u32 = 25;
pub const TPM_ACT_GET_SIGNALED: u32 = 26;

/// `ServerVersion` the simulator reports in the handshake.
pub const SERVER_VERSION: u32 = 1;
/// Handshake flags: `tpmPlatformAvailable | tpmInRawMode | tpmSupportsPP`.
pub const SERVER_FLAGS: u32 = 0x01 | 0x04 | 0x08;

/// u32 values followed by the u32 0 acknowledgement.
pub fn ack_with(values: &[u32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 * values.len() + 4);
    for x in values {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(&0u32.to_be_bytes());
    v
}

/// Handles the first platform request in `buf`; `None` if it is not complete yet.
/// Returns the bytes consumed and the reply.
pub fn platform<T: Tpm>(device: &mut Device<T>, buf: &[u8]) -> Option<(usize, Reply)> {
    let code = be32(buf, 0)?;
    let ack = || Reply {
        bytes: ack_with(&[]),
        then: Then::Continue,
    };
    let reply = match code {
        TPM_SIGNAL_POWER_ON => {
            device.power_on();
            ack()
        }
        TPM_SIGNAL_POWER_OFF => {
            device.power_off();
            ack()
        }
        TPM_SIGNAL_RESET => {
            device.reset();
            ack()
        }
        TPM_SIGNAL_CANCEL_ON => {
            device.cancel();
            ack()
        }
        TPM_SIGNAL_NV_ON => {
            device.set_nv_available(true);
            ack()
        }
        TPM_SIGNAL_NV_OFF => {
            device.set_nv_available(false);
            ack()
        }
        TPM_SIGNAL_CANCEL_OFF
        | TPM_SIGNAL_PHYS_PRES_ON
        | TPM_SIGNAL_PHYS_PRES_OFF
        | TPM_SIGNAL_KEY_CACHE_ON
        | TPM_SIGNAL_KEY_CACHE_OFF
        | TPM_SIGNAL_RESTART => ack(),
        TPM_SESSION_END => Reply {
            bytes: Vec::new(),
            then: Then::Close,
        },
        TPM_STOP => Reply {
            bytes: Vec::new(),
            then: Then::Terminate,
        },
        TPM_GET_COMMAND_RESPONSE_SIZES => {
            // The simulator sends its `CommandResponseSizes` struct as it is in memory (x86:
            // little-endian sizes, command codes as they were on the wire), length-prefixed.
            let s = device.take_sizes();
            let mut bytes = 16u32.to_be_bytes().to_vec();
            bytes.extend_from_slice(&s.largest_command_size.to_le_bytes());
            bytes.extend_from_slice(&s.largest_command.to_be_bytes());
            bytes.extend_from_slice(&s.largest_response_size.to_le_bytes());
            bytes.extend_from_slice(&s.largest_response.to_be_bytes());
            bytes.extend_from_slice(&0u32.to_be_bytes());
            Reply {
                bytes,
                then: Then::Continue,
            }
        }
        TPM_ACT_GET_SIGNALED => {
            be32(buf, 4)?;
            return Some((
                8,
                Reply {
                    bytes: ack_with(&[0]),
                    then: Then::Continue,
                },
            ));
        }
        other => {
            tracing::warn!(code = other, "unknown simulator platform command; closing");
            Reply {
                bytes: 1u32.to_be_bytes().to_vec(),
                then: Then::Close,
            }
        }
    };
    Some((4, reply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::device::fake::started_device;

    fn send(code: u32) -> Reply {
        let mut d = started_device();
        platform(&mut d, &code.to_be_bytes())
            .map(|(_, r)| r)
            .unwrap_or(Reply {
                bytes: b"incomplete".to_vec(),
                then: Then::Close,
            })
    }

    #[test]
    fn signals_the_tcti_sends_are_acknowledged_with_zero() {
        for code in [
            TPM_SIGNAL_POWER_ON,
            TPM_SIGNAL_NV_ON,
            TPM_SIGNAL_CANCEL_ON,
            TPM_SIGNAL_CANCEL_OFF,
        ] {
            let r = send(code);
            assert_eq!(r.bytes, [0, 0, 0, 0], "code {code}");
            assert_eq!(r.then, Then::Continue);
        }
    }

    #[test]
    fn session_end_and_stop_have_no_reply() {
        assert_eq!(
            send(TPM_SESSION_END),
            Reply {
                bytes: vec![],
                then: Then::Close
            }
        );
        assert_eq!(
            send(TPM_STOP),
            Reply {
                bytes: vec![],
                then: Then::Terminate
            }
        );
    }

    #[test]
    fn unknown_code_gets_one_and_close() {
        assert_eq!(
            send(30),
            Reply {
                bytes: vec![0, 0, 0, 1],
                then: Then::Close
            }
        );
    }

    #[test]
    fn power_cycle_and_nv() {
        let mut d = started_device();
        platform(&mut d, &TPM_SIGNAL_POWER_OFF.to_be_bytes());
        assert!(d.execute(&[0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0x7b]).is_empty());
        platform(&mut d, &TPM_SIGNAL_POWER_ON.to_be_bytes());
        platform(&mut d, &TPM_SIGNAL_NV_OFF.to_be_bytes());
        assert!(!d.tpm().nv);
        platform(&mut d, &TPM_SIGNAL_NV_ON.to_be_bytes());
        assert!(d.tpm().nv);
    }

    #[test]
    fn act_get_signaled_waits_for_its_handle() {
        let mut d = started_device();
        assert!(platform(&mut d, &TPM_ACT_GET_SIGNALED.to_be_bytes()).is_none());
        let req = [
            TPM_ACT_GET_SIGNALED.to_be_bytes(),
            0x4000_0110u32.to_be_bytes(),
        ]
        .concat();
        let (n, r) = platform(&mut d, &req).unwrap_or_default();
        assert_eq!((n, r.bytes), (8, vec![0; 8]));
    }

    #[test]
    fn command_response_sizes() {
        let mut d = started_device();
        d.take_sizes();
        d.execute(&[0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x7b, 0, 8]);
        let (_, r) =
            platform(&mut d, &TPM_GET_COMMAND_RESPONSE_SIZES.to_be_bytes()).unwrap_or_default();
        assert_eq!(&r.bytes[..4], &[0, 0, 0, 16]);
        assert_eq!(&r.bytes[4..8], &12u32.to_le_bytes());
        assert_eq!(&r.bytes[8..12], &[0, 0, 1, 0x7b]);
        assert_eq!(r.bytes.len(), 24);
    }
}
