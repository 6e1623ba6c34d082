//! swtpm's control channel on port P+1 (`include/swtpm/tpm_ioctl.h`, "Commands used by the
//! non-CUSE TPMs"; behaviour of `src/swtpm/ctrlchannel.c`, swtpm 0.7-0.10).
//!
//! A request is a big-endian u32 command code and that command's request struct; the reply is the
//! response struct, which starts with a u32 result (0 = success, else a TPM 1.2-style code).
//! Like swtpm, a request is taken to be everything that has arrived once the fixed part of the
//! request is in, and commands without parameters refuse extra bytes with `TPM_BAD_PARAMETER`.
//! A request still incomplete after [`super::PARTIAL_TIMEOUT`] closes the connection.
//!
//! Not supported, answered `TPM_BAD_ORDINAL` and left out of `CMD_GET_CAPABILITY`: the
//! H-CRTM hash sequence (the engine has no `_TPM_Hash_*`), state blobs and volatile state
//! (the state file is written after every change instead), `CMD_SET_DATAFD` (Unix sockets
//! only) and `CMD_GET_INFO`.

use super::device::{Device, MAX_COMMAND_SIZE, Tpm};
use super::wire::be32;
use super::{Reply, Then};

pub const CMD_GET_CAPABILITY: u32 = 0x01;
pub const CMD_INIT: u32 = 0x02;
pub const CMD_SHUTDOWN: u32 = 0x03;
pub const CMD_GET_TPMESTABLISHED: u32 = 0x04;
pub const CMD_SET_LOCALITY: u32 = 0x05;
pub const CMD_HASH_START: u32 = 0x06;
pub const CMD_HASH_DATA: u32 = 0x07;
pub const CMD_HASH_END: u32 = 0x08;
pub const CMD_CANCEL_TPM_CMD: u32 = 0x09;
pub const CMD_STORE_VOLATILE: u32 = 0x0a;
pub const CMD_RESET_TPMESTABLISHED: u32 = 0x0b;
pub const CMD_GET_STATEBLOB: u32 = 0x0c;
pub const CMD_SET_STATEBLOB: u32 = 0x0d;
pub const CMD_STOP: u32 = 0x0e;
pub const CMD_GET_CONFIG: u32 = 0x0f;
pub const CMD_SET_DATAFD: u32 = 0x10;
pub const CMD_SET_BUFFERSIZE: u32 = 0x11;
pub const CMD_GET_INFO: u32 = 0x12;
pub const CMD_LOCK_STORAGE: u32 = 0x13;

/// `PTM_CAP_*` bits.
pub const PTM_CAP_INIT: u32 = 1;
pub const PTM_CAP_SHUTDOWN: u32 = 1 << 1;
pub const PTM_CAP_GET_TPMESTABLISHED: u32 = 1 << 2;
pub const PTM_CAP_SET_LOCALITY: u32 = 1 << 3;
pub const PTM_CAP_CANCEL_TPM_CMD: u32 = 1 << 5;
pub const PTM_CAP_RESET_TPMESTABLISHED: u32 = 1 << 7;
pub const PTM_CAP_STOP: u32 = 1 << 10;
pub const PTM_CAP_GET_CONFIG: u32 = 1 << 11;
pub const PTM_CAP_SET_BUFFERSIZE: u32 = 1 << 13;
pub const PTM_CAP_SEND_COMMAND_HEADER: u32 = 1 << 15;
pub const PTM_CAP_LOCK_STORAGE: u32 = 1 << 16;

/// What `CMD_GET_CAPABILITY` reports: exactly the commands implemented here.
pub const CAPABILITIES: u32 = PTM_CAP_INIT
    | PTM_CAP_SHUTDOWN
    | PTM_CAP_GET_TPMESTABLISHED
    | PTM_CAP_SET_LOCALITY
    | PTM_CAP_CANCEL_TPM_CMD
    | PTM_CAP_RESET_TPMESTABLISHED
    | PTM_CAP_STOP
    | PTM_CAP_GET_CONFIG
    | PTM_CAP_SET_BUFFERSIZE
    | PTM_CAP_SEND_COMMAND_HEADER
    | PTM_CAP_LOCK_STORAGE;

/// TPM 1.2 result codes swtpm's control channel uses.
pub const TPM_SUCCESS: u32 = 0;
pub const TPM_BAD_PARAMETER: u32 = 0x03;
pub const TPM_BAD_ORDINAL: u32 = 0x0a;
pub const TPM_BAD_LOCALITY: u32 = 0x3d;

/// Bytes a request needs before it is handled (code included); swtpm `ctrlchannel_recv_cmd`.
fn needed(code: u32) -> usize {
    match code {
        CMD_INIT | CMD_SET_BUFFERSIZE | CMD_LOCK_STORAGE => 8,
        CMD_SET_LOCALITY | CMD_RESET_TPMESTABLISHED => 5,
        _ => 4,
    }
}

/// Handles the request in `buf` (all of it, see the module docs); `None` if it is incomplete.
pub fn control<T: Tpm>(device: &mut Device<T>, buf: &[u8]) -> Option<(usize, Reply)> {
    let code = be32(buf, 0)?;
    if buf.len() < needed(code) {
        return None;
    }
    let body = &buf[4..];
    Some((buf.len(), handle(device, code, body)))
}

fn result(rc: u32) -> Reply {
    Reply {
        bytes: rc.to_be_bytes().to_vec(),
        then: Then::Continue,
    }
}

fn words(values: &[u32]) -> Reply {
    Reply {
        bytes: values.iter().flat_map(|v| v.to_be_bytes()).collect(),
        then: Then::Continue,
    }
}

fn handle<T: Tpm>(device: &mut Device<T>, code: u32, body: &[u8]) -> Reply {
    // swtpm checks "running" before the parameters for these.
    let needs_running = matches!(
        code,
        CMD_GET_TPMESTABLISHED | CMD_RESET_TPMESTABLISHED | CMD_CANCEL_TPM_CMD
    );
    if needs_running && !device.running() {
        return result(TPM_BAD_ORDINAL);
    }
    match code {
        CMD_GET_CAPABILITY => words(&[TPM_SUCCESS, CAPABILITIES]),
        CMD_INIT => {
            if body.len() != 4 {
                return result(TPM_BAD_PARAMETER);
            }
            // PTM_INIT_FLAG_DELETE_VOLATILE: there is no volatile state file to delete.
            device.init();
            tracing::info!("CMD_INIT: TPM reset (_TPM_Init); the client must send TPM2_Startup");
            result(TPM_SUCCESS)
        }
        CMD_STOP | CMD_SHUTDOWN => {
            if !body.is_empty() {
                return result(TPM_BAD_PARAMETER);
            }
            device.stop();
            if code == CMD_SHUTDOWN {
                tracing::info!("CMD_SHUTDOWN: stopping the server");
                Reply {
                    bytes: TPM_SUCCESS.to_be_bytes().to_vec(),
                    then: Then::Terminate,
                }
            } else {
                tracing::info!("CMD_STOP: TPM stopped until CMD_INIT");
                result(TPM_SUCCESS)
            }
        }
        CMD_GET_TPMESTABLISHED => {
            if !body.is_empty() {
                return result(TPM_BAD_PARAMETER);
            }
            // ptm_est: result, bit, 3 bytes of padding.
            let mut bytes = TPM_SUCCESS.to_be_bytes().to_vec();
            bytes.extend_from_slice(&[u8::from(device.established()), 0, 0, 0]);
            Reply {
                bytes,
                then: Then::Continue,
            }
        }
        CMD_RESET_TPMESTABLISHED => {
            let Some(&locality) = body.first() else {
                return result(TPM_BAD_PARAMETER);
            };
            // Only localities 3 and 4 may reset the bit (TPM 2.0 PC Client PTP, TPM_ACCESS).
            if locality == 3 || locality == 4 {
                device.reset_established();
                result(TPM_SUCCESS)
            } else {
                result(TPM_BAD_LOCALITY)
            }
        }
        CMD_SET_LOCALITY => {
            let Some(&locality) = body.first() else {
                return result(TPM_BAD_PARAMETER);
            };
            if locality > 4 {
                return result(TPM_BAD_LOCALITY);
            }
            device.set_locality(locality);
            result(TPM_SUCCESS)
        }
        CMD_CANCEL_TPM_CMD => {
            if !body.is_empty() {
                return result(TPM_BAD_PARAMETER);
            }
            device.cancel();
            result(TPM_SUCCESS)
        }
        CMD_GET_CONFIG => {
            if !body.is_empty() {
                return result(TPM_BAD_PARAMETER);
            }
            // No file key, no migration key.
            words(&[TPM_SUCCESS, 0])
        }
        CMD_SET_BUFFERSIZE => {
            let requested = be32(body, 0).unwrap_or(0);
            if requested > 0 && device.running() {
                return result(TPM_BAD_ORDINAL);
            }
            // The buffer is fixed: whatever is asked for, this is the size in use.
            let size = MAX_COMMAND_SIZE as u32;
            words(&[TPM_SUCCESS, size, size, size])
        }
        CMD_LOCK_STORAGE => {
            // The state directory is locked for the server's whole life.
            result(TPM_SUCCESS)
        }
        CMD_HASH_START | CMD_HASH_DATA | CMD_HASH_END | CMD_SET_STATEBLOB => {
            // Unsupported, and their payload may still be arriving: answer and hang up.
            tracing::warn!(code, "unsupported swtpm control command");
            Reply {
                bytes: TPM_BAD_ORDINAL.to_be_bytes().to_vec(),
                then: Then::Close,
            }
        }
        other => {
            if !matches!(
                other,
                CMD_STORE_VOLATILE | CMD_GET_STATEBLOB | CMD_SET_DATAFD | CMD_GET_INFO
            ) {
                tracing::warn!(code = other, "unknown swtpm control command");
            }
            result(TPM_BAD_ORDINAL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::device::fake::{FakeTpm, started_device};
    use crate::serve::device::{TPM_RC_FAILURE, response_code};

    fn ctrl(d: &mut Device<FakeTpm>, req: &[u8]) -> Reply {
        match control(d, req) {
            Some((n, r)) => {
                assert_eq!(n, req.len());
                r
            }
            None => Reply {
                bytes: b"incomplete".to_vec(),
                then: Then::Close,
            },
        }
    }

    fn req(code: u32, body: &[u8]) -> Vec<u8> {
        [&code.to_be_bytes()[..], body].concat()
    }

    const GET_RANDOM: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 0x08];

    #[test]
    fn set_locality_as_the_swtpm_tcti_sends_it() {
        let mut d = started_device();
        // `00000005 00` -> `00000000`.
        assert_eq!(ctrl(&mut d, &[0, 0, 0, 5, 0]).bytes, [0, 0, 0, 0]);
        assert_eq!(
            ctrl(&mut d, &req(CMD_SET_LOCALITY, &[3])).bytes,
            [0, 0, 0, 0]
        );
        assert_eq!(d.locality(), 3);
        assert_eq!(
            ctrl(&mut d, &req(CMD_SET_LOCALITY, &[5])).bytes,
            [0, 0, 0, 0x3d]
        );
        assert!(control(&mut d, &req(CMD_SET_LOCALITY, &[])).is_none());
    }

    #[test]
    fn get_capability() {
        let mut d = started_device();
        let r = ctrl(&mut d, &req(CMD_GET_CAPABILITY, &[]));
        assert_eq!(r.bytes, [0, 0, 0, 0, 0, 0x01, 0xac, 0xaf]);
    }

    #[test]
    fn established_bit() {
        let mut d = started_device();
        let r = ctrl(&mut d, &req(CMD_GET_TPMESTABLISHED, &[]));
        assert_eq!(r.bytes, [0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            ctrl(&mut d, &req(CMD_RESET_TPMESTABLISHED, &[0])).bytes,
            [0, 0, 0, 0x3d]
        );
        assert_eq!(
            ctrl(&mut d, &req(CMD_RESET_TPMESTABLISHED, &[3])).bytes,
            [0, 0, 0, 0]
        );
        assert_eq!(
            ctrl(&mut d, &req(CMD_GET_TPMESTABLISHED, &[1])).bytes,
            [0, 0, 0, 3]
        );
    }

    #[test]
    fn init_stop_shutdown() {
        let mut d = started_device();
        assert_eq!(ctrl(&mut d, &req(CMD_INIT, &[0, 0])).bytes, b"incomplete");
        assert_eq!(
            ctrl(&mut d, &req(CMD_INIT, &[0, 0, 0, 0, 9])).bytes,
            [0, 0, 0, 3]
        );
        assert_eq!(ctrl(&mut d, &req(CMD_STOP, &[])).bytes, [0, 0, 0, 0]);
        assert_eq!(response_code(&d.execute(&GET_RANDOM)), Some(TPM_RC_FAILURE));
        // Stopped: the established bit cannot be read, the locality can be set.
        assert_eq!(
            ctrl(&mut d, &req(CMD_GET_TPMESTABLISHED, &[])).bytes,
            [0, 0, 0, 0x0a]
        );
        assert_eq!(
            ctrl(&mut d, &req(CMD_SET_LOCALITY, &[0])).bytes,
            [0, 0, 0, 0]
        );
        assert_eq!(
            ctrl(&mut d, &req(CMD_INIT, &[0, 0, 0, 1])).bytes,
            [0, 0, 0, 0]
        );
        assert!(d.running());
        assert_eq!(d.startup_clear(), Some(0));
        let r = ctrl(&mut d, &req(CMD_SHUTDOWN, &[]));
        assert_eq!((r.bytes, r.then), (vec![0, 0, 0, 0], Then::Terminate));
    }

    #[test]
    fn buffer_size() {
        let mut d = started_device();
        let r = ctrl(&mut d, &req(CMD_SET_BUFFERSIZE, &[0, 0, 0, 0]));
        assert_eq!(r.bytes, words(&[0, 4096, 4096, 4096]).bytes);
        assert_eq!(
            ctrl(&mut d, &req(CMD_SET_BUFFERSIZE, &[0, 0, 4, 0])).bytes,
            [0, 0, 0, 0x0a]
        );
        ctrl(&mut d, &req(CMD_STOP, &[]));
        let r = ctrl(&mut d, &req(CMD_SET_BUFFERSIZE, &[0, 0, 4, 0]));
        assert_eq!(r.bytes, words(&[0, 4096, 4096, 4096]).bytes);
    }

    #[test]
    fn config_cancel_unknown() {
        let mut d = started_device();
        assert_eq!(
            ctrl(&mut d, &req(CMD_GET_CONFIG, &[])).bytes,
            [0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            ctrl(&mut d, &req(CMD_CANCEL_TPM_CMD, &[])).bytes,
            [0, 0, 0, 0]
        );
        assert_eq!(d.tpm().log.last().map(String::as_str), Some("cancel"));
        assert_eq!(ctrl(&mut d, &req(99, &[])).bytes, [0, 0, 0, 0x0a]);
        let r = ctrl(&mut d, &req(CMD_HASH_START, &[]));
        assert_eq!((r.bytes, r.then), (vec![0, 0, 0, 0x0a], Then::Close));
    }
}
