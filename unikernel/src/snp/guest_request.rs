//! SNP guest messages: attestation reports and derived keys from the PSP, encrypted with
//! VMPCK0 and carried by the hypervisor (which sees only ciphertext).
//!
//! Spec: SEV-SNP Firmware ABI #56860 (rev. 1.51 numbering; later revisions shift tables):
//! - message header, §8.26 "SNP_GUEST_REQUEST", Table 97 (header), Table 98 (AEAD algorithms),
//!   Table 99 (message types);
//! - MSG_KEY_REQ Table 17 / MSG_KEY_RSP Table 19 (§7.2 "Key Derivation");
//! - MSG_REPORT_REQ Table 20 / MSG_REPORT_RSP Table 23 (§7.3 "Attestation"), the report itself
//!   is `ukvtpm_attest::AttestationReport`.
//! - Transport: GHCB #56421 §4.1.8 "SNP Guest Request" (NAE event 0x8000_0011): SW_EXITINFO1 =
//!   GPA of the request page, SW_EXITINFO2 = GPA of the response page (both shared); on return
//!   SW_EXITINFO2 holds the firmware error in bits 31:0 and the hypervisor error in 63:32.
//!
//! Header (96 bytes): AUTHTAG[32] @0x00 (AES-GCM tag in the first 16), MSG_SEQNO u64 @0x20,
//! reserved[8], ALGO u8 @0x30 (1 = AES-256-GCM), HDR_VERSION u8 @0x31 (1), HDR_SIZE u16 @0x32
//! (0x60), MSG_TYPE u8 @0x34, MSG_VERSION u8 @0x35, MSG_SIZE u16 @0x36, reserved u32,
//! MSG_VMPCK u8 @0x3C, reserved[35]. The AAD is bytes 0x30..0x60 (from ALGO to the end); the
//! IV is MSG_SEQNO little-endian, zero-padded to 12 bytes; the payload follows the header.
//!
//! Sequence numbers: the guest sends `last + 1`, the PSP answers with `last + 2`, and both
//! sides then move on by two. A number is never used twice with a key: after any failure
//! whose effect on the PSP's counter is unknown, the channel disables itself.
#![forbid(unsafe_code)]

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use ukvtpm_attest::{AttestationReport, REPORT_SIZE};
use zeroize::Zeroize;

use super::secrets::Vmpck;

/// A guest message page.
pub const MSG_PAGE_SIZE: usize = 4096;
/// Header size (HDR_SIZE).
pub const HDR_SIZE: usize = 0x60;
/// Largest payload.
pub const MAX_PAYLOAD: usize = MSG_PAGE_SIZE - HDR_SIZE;
/// ALGO: AES-256-GCM (Table 98).
pub const ALGO_AES_256_GCM: u8 = 1;
/// HDR_VERSION this code speaks.
pub const HDR_VERSION: u8 = 1;
/// MSG_VERSION of the requests this code sends.
pub const MSG_VERSION: u8 = 1;
/// AES-GCM tag length inside AUTHTAG.
pub const TAG_LEN: usize = 16;

/// Byte ranges of the message header (Table 97).
pub mod hdr {
    use core::ops::Range;
    /// AUTHTAG.
    pub const AUTHTAG: Range<usize> = 0x00..0x20;
    /// MSG_SEQNO.
    pub const MSG_SEQNO: Range<usize> = 0x20..0x28;
    /// reserved.
    pub const RESERVED1: Range<usize> = 0x28..0x30;
    /// ALGO.
    pub const ALGO: usize = 0x30;
    /// HDR_VERSION.
    pub const HDR_VERSION: usize = 0x31;
    /// HDR_SIZE.
    pub const HDR_SIZE: Range<usize> = 0x32..0x34;
    /// MSG_TYPE.
    pub const MSG_TYPE: usize = 0x34;
    /// MSG_VERSION.
    pub const MSG_VERSION: usize = 0x35;
    /// MSG_SIZE.
    pub const MSG_SIZE: Range<usize> = 0x36..0x38;
    /// reserved.
    pub const RESERVED2: Range<usize> = 0x38..0x3C;
    /// MSG_VMPCK.
    pub const MSG_VMPCK: usize = 0x3C;
    /// reserved.
    pub const RESERVED3: Range<usize> = 0x3D..0x60;
    /// Additional authenticated data: ALGO to the end of the header.
    pub const AAD: Range<usize> = 0x30..0x60;
}

/// MSG_TYPE values (Table 99).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgType {
    /// MSG_CPUID_REQ.
    CpuidReq = 1,
    /// MSG_CPUID_RSP.
    CpuidRsp = 2,
    /// MSG_KEY_REQ.
    KeyReq = 3,
    /// MSG_KEY_RSP.
    KeyRsp = 4,
    /// MSG_REPORT_REQ.
    ReportReq = 5,
    /// MSG_REPORT_RSP.
    ReportRsp = 6,
}

/// Decoded header fields (the tag is handled separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgHeader {
    /// MSG_SEQNO.
    pub seqno: u64,
    /// ALGO.
    pub algo: u8,
    /// HDR_VERSION.
    pub hdr_version: u8,
    /// HDR_SIZE.
    pub hdr_size: u16,
    /// MSG_TYPE.
    pub msg_type: u8,
    /// MSG_VERSION.
    pub msg_version: u8,
    /// MSG_SIZE.
    pub msg_size: u16,
    /// MSG_VMPCK.
    pub vmpck: u8,
}

impl MsgHeader {
    /// A header for a message this code sends.
    pub fn new(msg_type: u8, seqno: u64, msg_size: u16, vmpck: u8) -> Self {
        Self {
            seqno,
            algo: ALGO_AES_256_GCM,
            hdr_version: HDR_VERSION,
            hdr_size: HDR_SIZE as u16,
            msg_type,
            msg_version: MSG_VERSION,
            msg_size,
            vmpck,
        }
    }

    /// Writes the header (with a zero AUTHTAG) into the first [`HDR_SIZE`] bytes of `page`;
    /// reserved bytes are zeroed.
    pub fn write(&self, page: &mut [u8; MSG_PAGE_SIZE]) {
        page[..HDR_SIZE].fill(0);
        page[hdr::MSG_SEQNO].copy_from_slice(&self.seqno.to_le_bytes());
        page[hdr::ALGO] = self.algo;
        page[hdr::HDR_VERSION] = self.hdr_version;
        page[hdr::HDR_SIZE].copy_from_slice(&self.hdr_size.to_le_bytes());
        page[hdr::MSG_TYPE] = self.msg_type;
        page[hdr::MSG_VERSION] = self.msg_version;
        page[hdr::MSG_SIZE].copy_from_slice(&self.msg_size.to_le_bytes());
        page[hdr::MSG_VMPCK] = self.vmpck;
    }

    /// Reads the header fields of `page`.
    pub fn read(page: &[u8; MSG_PAGE_SIZE]) -> Self {
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&page[hdr::MSG_SEQNO]);
        Self {
            seqno: u64::from_le_bytes(seq),
            algo: page[hdr::ALGO],
            hdr_version: page[hdr::HDR_VERSION],
            hdr_size: u16::from_le_bytes([
                page[hdr::HDR_SIZE.start],
                page[hdr::HDR_SIZE.start + 1],
            ]),
            msg_type: page[hdr::MSG_TYPE],
            msg_version: page[hdr::MSG_VERSION],
            msg_size: u16::from_le_bytes([
                page[hdr::MSG_SIZE.start],
                page[hdr::MSG_SIZE.start + 1],
            ]),
            vmpck: page[hdr::MSG_VMPCK],
        }
    }
}

/// Why a message could not be sealed or opened. Deliberately coarse on the crypto side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// Payload longer than [`MAX_PAYLOAD`] or MSG_SIZE out of range.
    Size,
    /// ALGO, HDR_VERSION or HDR_SIZE not what this code speaks.
    Header,
    /// The tag did not verify (wrong key, tampered header or payload).
    Authentication,
}

fn nonce(seqno: u64) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&seqno.to_le_bytes());
    iv.into()
}

fn cipher(key: &Vmpck) -> Aes256Gcm {
    Aes256Gcm::new(key.key().into())
}

/// Encrypts `payload` under `key` into `page` with header `header` (its MSG_SIZE must equal
/// `payload.len()`): the payload goes after the header, the tag into AUTHTAG[0..16].
///
/// # Errors
/// [`MessageError::Size`] when the payload does not fit or MSG_SIZE disagrees.
pub fn seal(
    key: &Vmpck,
    header: &MsgHeader,
    payload: &[u8],
    page: &mut [u8; MSG_PAGE_SIZE],
) -> Result<(), MessageError> {
    if payload.len() > MAX_PAYLOAD || usize::from(header.msg_size) != payload.len() {
        return Err(MessageError::Size);
    }
    page.fill(0);
    header.write(page);
    let (head, body) = page.split_at_mut(HDR_SIZE);
    let body = &mut body[..payload.len()];
    body.copy_from_slice(payload);
    let tag = cipher(key)
        .encrypt_inout_detached(&nonce(header.seqno), &head[hdr::AAD], body.into())
        .map_err(|_| MessageError::Size)?;
    head[hdr::AUTHTAG.start..hdr::AUTHTAG.start + TAG_LEN].copy_from_slice(&tag);
    Ok(())
}

/// Checks the header shape and decrypts `page` under `key` into `out`; returns the header and
/// the payload length. Nothing is written to `out` unless the tag verifies.
///
/// # Errors
/// [`MessageError`] for a malformed header or a tag that does not verify.
pub fn open(
    key: &Vmpck,
    page: &[u8; MSG_PAGE_SIZE],
    out: &mut [u8; MAX_PAYLOAD],
) -> Result<(MsgHeader, usize), MessageError> {
    let header = MsgHeader::read(page);
    if header.algo != ALGO_AES_256_GCM
        || header.hdr_version != HDR_VERSION
        || usize::from(header.hdr_size) != HDR_SIZE
    {
        return Err(MessageError::Header);
    }
    let len = usize::from(header.msg_size);
    if len > MAX_PAYLOAD {
        return Err(MessageError::Size);
    }
    let mut buf = [0u8; MAX_PAYLOAD];
    buf[..len].copy_from_slice(&page[HDR_SIZE..HDR_SIZE + len]);
    let tag = aes_gcm::Tag::<aes_gcm::aead::consts::U16>::try_from(
        &page[hdr::AUTHTAG.start..hdr::AUTHTAG.start + TAG_LEN],
    )
    .map_err(|_| MessageError::Header)?;
    let verdict = cipher(key).decrypt_inout_detached(
        &nonce(header.seqno),
        &page[hdr::AAD],
        (&mut buf[..len]).into(),
        &tag,
    );
    if verdict.is_err() {
        buf.zeroize();
        return Err(MessageError::Authentication);
    }
    out[..len].copy_from_slice(&buf[..len]);
    buf.zeroize();
    Ok((header, len))
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// KEY_SEL of MSG_REPORT_REQ / MSG_KEY_REQ: which endorsement key signs or roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum KeySel {
    /// VLEK if one is installed, else VCEK.
    #[default]
    Default = 0,
    /// VCEK.
    Vcek = 1,
    /// VLEK.
    Vlek = 2,
}

/// MSG_REPORT_REQ (Table 20): REPORT_DATA[64] @0x00, VMPL u32 @0x40, KEY_SEL bits 1:0 of the
/// u32 @0x44, reserved to 0x60.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRequest {
    /// Guest data bound into the report (REPORT_DATA).
    pub report_data: [u8; 64],
    /// VMPL to report (≥ the current VMPL).
    pub vmpl: u32,
    /// Signing key.
    pub key_sel: KeySel,
}

/// Size of MSG_REPORT_REQ.
pub const REPORT_REQ_SIZE: usize = 0x60;
/// Size of MSG_REPORT_RSP: STATUS u32 @0, REPORT_SIZE u32 @4, reserved to 0x20, REPORT @0x20.
pub const REPORT_RSP_SIZE: usize = 0x20 + REPORT_SIZE;
/// Offset of the report in MSG_REPORT_RSP.
pub const REPORT_RSP_REPORT: usize = 0x20;

impl ReportRequest {
    /// The payload bytes.
    pub fn to_bytes(&self) -> [u8; REPORT_REQ_SIZE] {
        let mut b = [0u8; REPORT_REQ_SIZE];
        b[..0x40].copy_from_slice(&self.report_data);
        b[0x40..0x44].copy_from_slice(&self.vmpl.to_le_bytes());
        b[0x44..0x48].copy_from_slice(&(self.key_sel as u32).to_le_bytes());
        b
    }
}

/// MSG_KEY_REQ ROOT_KEY_SELECT (bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RootKey {
    /// Versioned chip endorsement key: bound to this chip and TCB.
    #[default]
    Vcek = 0,
    /// VM root key (from a migration agent).
    Vmrk = 1,
}

/// GUEST_FIELD_SELECT bits of MSG_KEY_REQ (Table 17): which launch data is mixed in.
pub mod field_select {
    /// Guest policy.
    pub const GUEST_POLICY: u64 = 1 << 0;
    /// Image ID.
    pub const IMAGE_ID: u64 = 1 << 1;
    /// Family ID.
    pub const FAMILY_ID: u64 = 1 << 2;
    /// Launch measurement.
    pub const MEASUREMENT: u64 = 1 << 3;
    /// Guest SVN.
    pub const GUEST_SVN: u64 = 1 << 4;
    /// TCB version.
    pub const TCB_VERSION: u64 = 1 << 5;
}

/// MSG_KEY_REQ (Table 17, message version 1, 0x20 bytes): bit 0 ROOT_KEY_SELECT and bits 2:1
/// KEY_SEL of the u32 @0x00, reserved u32, GUEST_FIELD_SELECT u64 @0x08, VMPL u32 @0x10,
/// GUEST_SVN u32 @0x14, TCB_VERSION u64 @0x18.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyRequest {
    /// Root key.
    pub root_key: RootKey,
    /// Endorsement key the VCEK root means (newer ABIs).
    pub key_sel: KeySel,
    /// GUEST_FIELD_SELECT ([`field_select`]).
    pub guest_field_select: u64,
    /// VMPL mixed in (≥ the current VMPL).
    pub vmpl: u32,
    /// Guest SVN mixed in when selected.
    pub guest_svn: u32,
    /// TCB version mixed in when selected.
    pub tcb_version: u64,
}

/// Size of MSG_KEY_REQ (version 1).
pub const KEY_REQ_SIZE: usize = 0x20;
/// Size of MSG_KEY_RSP: STATUS u32 @0, reserved[28], DERIVED_KEY[32] @0x20.
pub const KEY_RSP_SIZE: usize = 0x40;

impl KeyRequest {
    /// DESIGN §5: the sealing root, bound to the chip (VCEK), the launch measurement and the
    /// guest policy.
    pub fn sealing() -> Self {
        Self {
            guest_field_select: field_select::MEASUREMENT | field_select::GUEST_POLICY,
            ..Self::default()
        }
    }

    /// The payload bytes.
    pub fn to_bytes(&self) -> [u8; KEY_REQ_SIZE] {
        let mut b = [0u8; KEY_REQ_SIZE];
        let select = (self.root_key as u32) | ((self.key_sel as u32) << 1);
        b[0x00..0x04].copy_from_slice(&select.to_le_bytes());
        b[0x08..0x10].copy_from_slice(&self.guest_field_select.to_le_bytes());
        b[0x10..0x14].copy_from_slice(&self.vmpl.to_le_bytes());
        b[0x14..0x18].copy_from_slice(&self.guest_svn.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&self.tcb_version.to_le_bytes());
        b
    }
}

/// A 32-byte key from MSG_KEY_RSP; zeroized on drop, `Debug` redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct DerivedKey(pub [u8; 32]);

impl Drop for DerivedKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl core::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DerivedKey(..)")
    }
}

/// A report as the PSP returned it: the exact bytes (for the verifier) and their parse.
#[derive(Debug, Clone)]
pub struct SignedReport {
    /// The 1184 bytes, signature included.
    pub bytes: [u8; REPORT_SIZE],
    /// Parsed by `ukvtpm_attest`.
    pub report: AttestationReport,
}

// ---------------------------------------------------------------------------------------------
// The channel

/// Why the hypervisor's SNP_GUEST_REQUEST exit failed: SW_EXITINFO2 split in halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportError {
    /// Hypervisor error (bits 63:32), e.g. 1 = invalid length, 2 = busy.
    pub vmm: u32,
    /// Firmware error (bits 31:0), SNP ABI status codes.
    pub firmware: u32,
}

/// How encrypted pages reach the PSP.
pub trait GuestRequestTransport {
    /// Sends the encrypted request page, fills the encrypted response page.
    ///
    /// # Errors
    /// The hypervisor's and firmware's error codes.
    fn exchange(
        &mut self,
        request: &[u8; MSG_PAGE_SIZE],
        response: &mut [u8; MSG_PAGE_SIZE],
    ) -> Result<(), TransportError>;
}

/// Why a guest request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestRequestError {
    /// An earlier failure disabled the channel (sequence numbers can no longer be trusted).
    Disabled,
    /// The 64-bit sequence number space is used up.
    SeqnoExhausted,
    /// The hypervisor or firmware refused the exchange.
    Transport(TransportError),
    /// Sealing or opening failed.
    Message(MessageError),
    /// The response header does not answer this request (type, version, key, sequence number).
    Mismatch(&'static str),
    /// The PSP's STATUS field is not success (0x16 invalid parameters, 0x27 invalid key
    /// selection).
    Status(u32),
    /// The response payload is malformed.
    BadResponse(&'static str),
}

/// A VMPCK channel to the PSP.
#[derive(Debug)]
pub struct GuestChannel {
    key: Vmpck,
    last_seqno: u64,
    disabled: bool,
}

impl GuestChannel {
    /// A channel with `key`, continuing after `last_seqno` (0 right after launch; otherwise
    /// what the OS area of the secrets page recorded).
    pub fn new(key: Vmpck, last_seqno: u64) -> Self {
        Self {
            key,
            last_seqno,
            disabled: false,
        }
    }

    /// The last sequence number consumed (store it back into the secrets page OS area).
    pub fn last_seqno(&self) -> u64 {
        self.last_seqno
    }

    /// Whether a failure has disabled the channel.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// One request/response exchange; returns the decrypted response payload length in `out`.
    ///
    /// # Errors
    /// [`GuestRequestError`]; everything after the request left the guest disables the channel.
    pub fn request(
        &mut self,
        transport: &mut dyn GuestRequestTransport,
        msg_type: MsgType,
        payload: &[u8],
        out: &mut [u8; MAX_PAYLOAD],
    ) -> Result<usize, GuestRequestError> {
        if self.disabled {
            return Err(GuestRequestError::Disabled);
        }
        let req_seqno = self
            .last_seqno
            .checked_add(1)
            .ok_or(GuestRequestError::SeqnoExhausted)?;
        let rsp_seqno = req_seqno
            .checked_add(1)
            .ok_or(GuestRequestError::SeqnoExhausted)?;
        let size = u16::try_from(payload.len())
            .map_err(|_| GuestRequestError::Message(MessageError::Size))?;
        let header = MsgHeader::new(msg_type as u8, req_seqno, size, self.key.index);
        let mut request = [0u8; MSG_PAGE_SIZE];
        seal(&self.key, &header, payload, &mut request).map_err(GuestRequestError::Message)?;

        // From here on the PSP may have consumed `req_seqno`: any failure disables the channel
        // so that no other plaintext is ever encrypted under the same IV.
        let mut response = [0u8; MSG_PAGE_SIZE];
        let result = transport
            .exchange(&request, &mut response)
            .map_err(GuestRequestError::Transport)
            .and_then(|()| self.check_response(&header, rsp_seqno, &response, out));
        match result {
            Ok(len) => {
                self.last_seqno = rsp_seqno;
                Ok(len)
            }
            Err(e) => {
                self.disabled = true;
                Err(e)
            }
        }
    }

    fn check_response(
        &self,
        req: &MsgHeader,
        rsp_seqno: u64,
        page: &[u8; MSG_PAGE_SIZE],
        out: &mut [u8; MAX_PAYLOAD],
    ) -> Result<usize, GuestRequestError> {
        let shown = MsgHeader::read(page);
        if shown.seqno != rsp_seqno {
            return Err(GuestRequestError::Mismatch("sequence number"));
        }
        if shown.msg_type != req.msg_type + 1 {
            return Err(GuestRequestError::Mismatch("message type"));
        }
        if shown.msg_version != req.msg_version {
            return Err(GuestRequestError::Mismatch("message version"));
        }
        if shown.vmpck != req.vmpck {
            return Err(GuestRequestError::Mismatch("VMPCK"));
        }
        let (_, len) = open(&self.key, page, out).map_err(GuestRequestError::Message)?;
        Ok(len)
    }

    /// MSG_REPORT_REQ → MSG_REPORT_RSP.
    ///
    /// # Errors
    /// As [`GuestChannel::request`], plus [`GuestRequestError::Status`] and a malformed report.
    pub fn get_report(
        &mut self,
        transport: &mut dyn GuestRequestTransport,
        req: &ReportRequest,
    ) -> Result<SignedReport, GuestRequestError> {
        let mut out = [0u8; MAX_PAYLOAD];
        let len = self.request(transport, MsgType::ReportReq, &req.to_bytes(), &mut out)?;
        parse_report_response(&out[..len])
    }

    /// MSG_KEY_REQ → MSG_KEY_RSP.
    ///
    /// # Errors
    /// As [`GuestChannel::request`], plus [`GuestRequestError::Status`].
    pub fn get_derived_key(
        &mut self,
        transport: &mut dyn GuestRequestTransport,
        req: &KeyRequest,
    ) -> Result<DerivedKey, GuestRequestError> {
        let mut out = [0u8; MAX_PAYLOAD];
        let len = self.request(transport, MsgType::KeyReq, &req.to_bytes(), &mut out)?;
        let result = parse_key_response(&out[..len]);
        out.zeroize();
        result
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

/// Parses a decrypted MSG_REPORT_RSP.
///
/// # Errors
/// [`GuestRequestError::Status`], or a size that is not the report's.
pub fn parse_report_response(p: &[u8]) -> Result<SignedReport, GuestRequestError> {
    if p.len() < 8 {
        return Err(GuestRequestError::BadResponse("MSG_REPORT_RSP too short"));
    }
    match u32_at(p, 0) {
        0 => {}
        status => return Err(GuestRequestError::Status(status)),
    }
    let size = u32_at(p, 4) as usize;
    if size != REPORT_SIZE || p.len() < REPORT_RSP_SIZE {
        return Err(GuestRequestError::BadResponse("REPORT_SIZE is not 1184"));
    }
    let mut bytes = [0u8; REPORT_SIZE];
    bytes.copy_from_slice(&p[REPORT_RSP_REPORT..REPORT_RSP_SIZE]);
    Ok(SignedReport {
        report: AttestationReport::from_array(&bytes),
        bytes,
    })
}

/// Parses a decrypted MSG_KEY_RSP.
///
/// # Errors
/// [`GuestRequestError::Status`] or a short payload.
pub fn parse_key_response(p: &[u8]) -> Result<DerivedKey, GuestRequestError> {
    if p.len() < KEY_RSP_SIZE {
        return Err(GuestRequestError::BadResponse("MSG_KEY_RSP too short"));
    }
    match u32_at(p, 0) {
        0 => {}
        status => return Err(GuestRequestError::Status(status)),
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&p[0x20..0x40]);
    Ok(DerivedKey(key))
}

/// SW_EXITINFO2[63:32] hypervisor error codes for guest requests (GHCB #56421 §4.1.8, and
/// Linux `SNP_GUEST_VMM_ERR_*`).
pub mod vmm_error {
    /// Extended request: the certificate buffer is too small; RBX holds the pages needed.
    pub const INVALID_LEN: u32 = 1;
    /// The hypervisor is busy (e.g. rate limiting): resend the very same request.
    pub const BUSY: u32 = 2;
}

/// How often a request the hypervisor answered "busy" is re-sent before giving up. Re-sending
/// is safe: "busy" means the PSP never saw the message, so the sequence number is unused
/// (Linux's sev-guest resends the same encrypted message too).
pub const BUSY_RETRIES: usize = 64;

/// The SNP_GUEST_REQUEST NAE event (GHCB #56421 §4.1.8, exit 0x8000_0011) over two pages the
/// guest has made shared: the request is copied into `request_page`, the hypervisor forwards
/// it to the PSP, and the PSP's answer lands in `response_page`.
pub struct GhcbTransport<'a, H: super::ghcb::Hypervisor + ?Sized> {
    /// The hypervisor (GHCB registered).
    pub hv: &'a mut H,
    /// Shared request page and its GPA.
    pub request_page: &'a mut [u8; MSG_PAGE_SIZE],
    /// GPA of `request_page`.
    pub request_gpa: u64,
    /// Shared response page.
    pub response_page: &'a mut [u8; MSG_PAGE_SIZE],
    /// GPA of `response_page`.
    pub response_gpa: u64,
}

/// One guest-request exit, re-sent while the hypervisor reports [`vmm_error::BUSY`] (at most
/// [`BUSY_RETRIES`] extra times). `extra` fills more GHCB fields (the extended request's
/// RAX/RBX). Returns SW_EXITINFO2 and the GHCB's RBX after the last exit.
fn guest_request_exit<H: super::ghcb::Hypervisor + ?Sized>(
    hv: &mut H,
    code: u64,
    req: u64,
    rsp: u64,
    extra: &dyn Fn(&mut super::ghcb::GhcbPage),
) -> Result<(u64, u64), TransportError> {
    use super::ghcb::{self, field};
    for _ in 0..=BUSY_RETRIES {
        let called = ghcb::ghcb_call(hv, code, req, rsp, |g, _| extra(g));
        let page = hv.ghcb();
        let (info2, rbx) = page.map_or((u64::MAX, 0), |g| {
            (g.qword(field::SW_EXIT_INFO_2), g.qword(field::RBX))
        });
        if called.is_err() {
            return Err(TransportError {
                vmm: u32::MAX,
                firmware: 0,
            });
        }
        if (info2 >> 32) as u32 != vmm_error::BUSY {
            return Ok((info2, rbx));
        }
        core::hint::spin_loop();
    }
    Err(TransportError {
        vmm: vmm_error::BUSY,
        firmware: 0,
    })
}

fn split_info2(info2: u64) -> Result<(), TransportError> {
    match info2 {
        0 => Ok(()),
        e => Err(TransportError {
            vmm: (e >> 32) as u32,
            firmware: e as u32,
        }),
    }
}

impl<H: super::ghcb::Hypervisor + ?Sized> GuestRequestTransport for GhcbTransport<'_, H> {
    fn exchange(
        &mut self,
        request: &[u8; MSG_PAGE_SIZE],
        response: &mut [u8; MSG_PAGE_SIZE],
    ) -> Result<(), TransportError> {
        use super::ghcb::exit;
        *self.request_page = *request;
        self.response_page.fill(0);
        let (req, rsp) = (self.request_gpa, self.response_gpa);
        let (info2, _) = guest_request_exit(self.hv, exit::SNP_GUEST_REQUEST, req, rsp, &|_| {})?;
        split_info2(info2)?;
        *response = *self.response_page;
        Ok(())
    }
}

/// The SNP_EXTENDED_GUEST_REQUEST NAE event (GHCB #56421 §4.1.8.2, exit 0x8000_0012): a guest
/// request plus a shared buffer (RAX = its GPA, RBX = its size in pages) that the hypervisor
/// fills with the host's certificate table (VCEK/VLEK, ASK, ARK) for an MSG_REPORT_REQ.
pub struct ExtGhcbTransport<'a, H: super::ghcb::Hypervisor + ?Sized> {
    /// The plain guest-request pages.
    pub base: GhcbTransport<'a, H>,
    /// Shared certificate buffer (whole pages).
    pub certs: &'a mut [u8],
    /// GPA of `certs`.
    pub certs_gpa: u64,
    /// After a [`vmm_error::INVALID_LEN`] answer: the pages the hypervisor asked for.
    pub pages_needed: Option<u64>,
}

impl<H: super::ghcb::Hypervisor + ?Sized> GuestRequestTransport for ExtGhcbTransport<'_, H> {
    fn exchange(
        &mut self,
        request: &[u8; MSG_PAGE_SIZE],
        response: &mut [u8; MSG_PAGE_SIZE],
    ) -> Result<(), TransportError> {
        use super::ghcb::{exit, field};
        *self.base.request_page = *request;
        self.base.response_page.fill(0);
        self.certs.fill(0);
        self.pages_needed = None;
        let (req, rsp) = (self.base.request_gpa, self.base.response_gpa);
        let (gpa, pages) = (self.certs_gpa, (self.certs.len() / 4096) as u64);
        let (info2, rbx) =
            guest_request_exit(self.base.hv, exit::SNP_EXT_GUEST_REQUEST, req, rsp, &|g| {
                g.set_qword(field::RAX, gpa);
                g.set_qword(field::RBX, pages);
            })?;
        if (info2 >> 32) as u32 == vmm_error::INVALID_LEN {
            self.pages_needed = Some(rbx);
        }
        split_info2(info2)?;
        *response = *self.base.response_page;
        Ok(())
    }
}
