//! Guest messages against a software model of the PSP side of SNP_GUEST_REQUEST: it decrypts
//! the request with VMPCK0, checks the header and the sequence number exactly as the firmware
//! does (SNP ABI #56860 §8.26), and answers with an encrypted MSG_REPORT_RSP (a report built
//! with `ukvtpm_attest`) or MSG_KEY_RSP (a model derivation mixing in the selected fields).

use ukvtpm_attest::report::field as rf;
use ukvtpm_attest::{AttestationReport, GuestPolicy, REPORT_SIZE};

use super::guest_request::*;
use super::secrets::Vmpck;

const VMPCK0: [u8; 32] = [0x42; 32];
const MEASUREMENT: [u8; 48] = [0x5a; 48];
const HOST_DATA: [u8; 32] = [0x77; 32];
const POLICY: u64 = 0x3_0000;

/// The PSP as a test double.
struct FirmwareModel {
    key: Vmpck,
    /// Last sequence number the firmware accepted or answered with.
    last_seqno: u64,
    measurement: [u8; 48],
    policy: u64,
    /// Test knobs: what the hostile hypervisor in the middle does.
    tamper_response_tag: bool,
    replay: Option<[u8; MSG_PAGE_SIZE]>,
    last_response: Option<[u8; MSG_PAGE_SIZE]>,
    fw_status: u32,
    requests: usize,
}

impl FirmwareModel {
    fn new() -> Self {
        Self {
            key: Vmpck::new(0, VMPCK0),
            last_seqno: 0,
            measurement: MEASUREMENT,
            policy: POLICY,
            tamper_response_tag: false,
            replay: None,
            last_response: None,
            fw_status: 0,
            requests: 0,
        }
    }

    fn report(&self, report_data: [u8; 64], vmpl: u32) -> [u8; REPORT_SIZE] {
        let mut b = [0u8; REPORT_SIZE];
        b[rf::VERSION].copy_from_slice(&3u32.to_le_bytes());
        b[rf::CPUID_FAM_ID] = 0x19;
        b[rf::CPUID_MOD_ID] = 0x11;
        let mut r = AttestationReport::from_array(&b);
        r.policy = GuestPolicy(self.policy);
        r.vmpl = vmpl;
        r.signature_algo = 1;
        r.report_data = report_data;
        r.measurement = self.measurement;
        r.host_data = HOST_DATA;
        r.chip_id = [0xc1; 64];
        r.current_tcb = 0x1500_0000_0000_0304;
        r.reported_tcb = r.current_tcb;
        r.signature.r[..48].fill(0xaa);
        r.signature.s[..48].fill(0xbb);
        r.to_bytes()
    }

    /// Model derivation: two AES-GCM tags over the mixed-in material under a model root key.
    fn derive(&self, req: &[u8]) -> [u8; 32] {
        use aes_gcm::aead::AeadInOut;
        use aes_gcm::{Aes256Gcm, KeyInit};
        let select = u64::from_le_bytes(req[8..16].try_into().unwrap());
        let mut mix = [0u8; 32 + 48 + 8];
        mix[..32].copy_from_slice(req); // root/key select, field select, VMPL, SVN, TCB
        if select & field_select::MEASUREMENT != 0 {
            mix[32..80].copy_from_slice(&self.measurement);
        }
        if select & field_select::GUEST_POLICY != 0 {
            mix[80..88].copy_from_slice(&self.policy.to_le_bytes());
        }
        let root = Aes256Gcm::new(&[0x99u8; 32].into());
        let mut out = [0u8; 32];
        for (i, half) in out.chunks_mut(16).enumerate() {
            let mut nonce = [0u8; 12];
            nonce[0] = i as u8;
            let tag = root
                .encrypt_inout_detached(&nonce.into(), &mix, (&mut [][..]).into())
                .unwrap();
            half.copy_from_slice(&tag);
        }
        out
    }
}

impl GuestRequestTransport for FirmwareModel {
    fn exchange(
        &mut self,
        request: &[u8; MSG_PAGE_SIZE],
        response: &mut [u8; MSG_PAGE_SIZE],
    ) -> Result<(), TransportError> {
        self.requests += 1;
        if let Some(old) = self.replay.take() {
            *response = old;
            return Ok(());
        }
        // SNP_GUEST_REQUEST: the firmware rejects a bad header or sequence number with
        // INVALID_PARAM / AUTH failure without consuming the number.
        let mut plain = [0u8; MAX_PAYLOAD];
        let (h, len) = open(&self.key, request, &mut plain).map_err(|_| TransportError {
            vmm: 0,
            firmware: 0x1B, // BAD_MEASUREMENT-like auth failure code, any non-zero will do
        })?;
        if h.seqno != self.last_seqno + 1 || h.vmpck != 0 || h.msg_version != MSG_VERSION {
            return Err(TransportError {
                vmm: 0,
                firmware: 0x16,
            });
        }
        let mut payload = [0u8; MAX_PAYLOAD];
        let (rsp_type, rsp_len) = match h.msg_type {
            t if t == MsgType::ReportReq as u8 => {
                assert_eq!(len, REPORT_REQ_SIZE);
                let report_data: [u8; 64] = plain[..64].try_into().unwrap();
                let vmpl = u32::from_le_bytes(plain[0x40..0x44].try_into().unwrap());
                payload[0..4].copy_from_slice(&self.fw_status.to_le_bytes());
                payload[4..8].copy_from_slice(&(REPORT_SIZE as u32).to_le_bytes());
                payload[REPORT_RSP_REPORT..REPORT_RSP_SIZE]
                    .copy_from_slice(&self.report(report_data, vmpl));
                (MsgType::ReportRsp, REPORT_RSP_SIZE)
            }
            t if t == MsgType::KeyReq as u8 => {
                assert_eq!(len, KEY_REQ_SIZE);
                payload[0..4].copy_from_slice(&self.fw_status.to_le_bytes());
                payload[0x20..0x40].copy_from_slice(&self.derive(&plain[..KEY_REQ_SIZE]));
                (MsgType::KeyRsp, KEY_RSP_SIZE)
            }
            _ => {
                return Err(TransportError {
                    vmm: 0,
                    firmware: 0x16,
                });
            }
        };
        let rsp_seqno = h.seqno + 1;
        let header = MsgHeader::new(rsp_type as u8, rsp_seqno, rsp_len as u16, 0);
        seal(&self.key, &header, &payload[..rsp_len], response).unwrap();
        self.last_seqno = rsp_seqno;
        if self.tamper_response_tag {
            response[0] ^= 1;
        }
        self.last_response = Some(*response);
        Ok(())
    }
}

fn channel() -> GuestChannel {
    GuestChannel::new(Vmpck::new(0, VMPCK0), 0)
}

#[test]
fn header_layout_matches_table_97() {
    assert_eq!(HDR_SIZE, 96);
    assert_eq!(MAX_PAYLOAD, 4000);
    assert_eq!(hdr::AUTHTAG, 0x00..0x20);
    assert_eq!(hdr::MSG_SEQNO, 0x20..0x28);
    assert_eq!(hdr::RESERVED1, 0x28..0x30);
    assert_eq!(
        [
            hdr::ALGO,
            hdr::HDR_VERSION,
            hdr::MSG_TYPE,
            hdr::MSG_VERSION,
            hdr::MSG_VMPCK
        ],
        [0x30, 0x31, 0x34, 0x35, 0x3C]
    );
    assert_eq!(hdr::HDR_SIZE, 0x32..0x34);
    assert_eq!(hdr::MSG_SIZE, 0x36..0x38);
    assert_eq!(hdr::RESERVED2, 0x38..0x3C);
    assert_eq!(hdr::RESERVED3, 0x3D..0x60);
    assert_eq!(hdr::AAD, 0x30..0x60);
    assert_eq!(hdr::AAD.len(), 48);
    // Table 99 message types.
    assert_eq!(
        [
            MsgType::CpuidReq,
            MsgType::KeyReq,
            MsgType::KeyRsp,
            MsgType::ReportReq,
            MsgType::ReportRsp
        ]
        .map(|t| t as u8),
        [1, 3, 4, 5, 6]
    );

    let mut page = [0u8; MSG_PAGE_SIZE];
    let h = MsgHeader::new(MsgType::ReportReq as u8, 0x0102_0304_0506_0708, 0x60, 0);
    h.write(&mut page);
    assert_eq!(&page[0x20..0x28], &[8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(&page[0x30..0x38], &[1, 1, 0x60, 0, 5, 1, 0x60, 0]);
    assert_eq!(MsgHeader::read(&page), h);
}

#[test]
fn payload_layouts_match_tables_17_to_23() {
    let r = ReportRequest {
        report_data: [9; 64],
        vmpl: 2,
        key_sel: KeySel::Vcek,
    };
    let b = r.to_bytes();
    assert_eq!(b.len(), 0x60);
    assert_eq!(&b[..64], &[9; 64]);
    assert_eq!(&b[0x40..0x48], &[2, 0, 0, 0, 1, 0, 0, 0]);
    assert!(b[0x48..].iter().all(|&x| x == 0));
    assert_eq!(REPORT_RSP_SIZE, 0x4C0);

    let k = KeyRequest {
        root_key: RootKey::Vmrk,
        key_sel: KeySel::Vlek,
        guest_field_select: 0x3f,
        vmpl: 1,
        guest_svn: 7,
        tcb_version: 0x1122_3344_5566_7788,
    };
    let b = k.to_bytes();
    assert_eq!(b.len(), 0x20);
    assert_eq!(&b[0..8], &[0b101, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&b[8..16], &[0x3f, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&b[0x10..0x18], &[1, 0, 0, 0, 7, 0, 0, 0]);
    assert_eq!(&b[0x18..0x20], &0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(KeyRequest::sealing().guest_field_select, 0b1001);
    assert_eq!(KEY_RSP_SIZE, 0x40);
}

#[test]
fn report_round_trip_parsed_by_attest_byte_for_byte() {
    let mut fw = FirmwareModel::new();
    let mut ch = channel();
    let req = ReportRequest {
        report_data: [0xab; 64],
        vmpl: 0,
        key_sel: KeySel::Default,
    };
    let got = ch.get_report(&mut fw, &req).unwrap();
    let expected = fw.report([0xab; 64], 0);
    assert_eq!(got.bytes, expected);
    assert_eq!(got.report, AttestationReport::parse(&expected).unwrap());
    assert_eq!(got.report.to_bytes(), got.bytes);
    assert_eq!(got.report.report_data, [0xab; 64]);
    assert_eq!(got.report.measurement, MEASUREMENT);
    assert_eq!(got.report.host_data, HOST_DATA);
    assert_eq!(got.report.policy.0, POLICY);
    // Sequence numbers: request 1, response 2; next request 3, response 4.
    assert_eq!(ch.last_seqno(), 2);
    assert_eq!(fw.last_seqno, 2);
    ch.get_report(&mut fw, &req).unwrap();
    assert_eq!(ch.last_seqno(), 4);
}

#[test]
fn derived_key_round_trip_binds_selected_fields() {
    let mut fw = FirmwareModel::new();
    let mut ch = channel();
    let k1 = ch.get_derived_key(&mut fw, &KeyRequest::sealing()).unwrap();
    let k2 = ch.get_derived_key(&mut fw, &KeyRequest::sealing()).unwrap();
    assert_eq!(k1, k2, "same image, same policy: same key");
    assert_eq!(format!("{k1:?}"), "DerivedKey(..)");

    let mut other_image = FirmwareModel::new();
    other_image.measurement[0] ^= 1;
    let mut ch2 = channel();
    let k3 = ch2
        .get_derived_key(&mut other_image, &KeyRequest::sealing())
        .unwrap();
    assert_ne!(k1, k3, "measurement is mixed in");

    // Without the measurement bit the image does not matter.
    let no_meas = KeyRequest {
        guest_field_select: field_select::GUEST_POLICY,
        ..KeyRequest::default()
    };
    let a = channel()
        .get_derived_key(&mut FirmwareModel::new(), &no_meas)
        .unwrap();
    let mut fw_b = FirmwareModel::new();
    fw_b.measurement[0] ^= 1;
    let b = channel().get_derived_key(&mut fw_b, &no_meas).unwrap();
    assert_eq!(a, b);
}

#[test]
fn wrong_key_is_refused_and_disables_the_channel() {
    let mut fw = FirmwareModel::new();
    let mut ch = GuestChannel::new(Vmpck::new(0, [0x43; 32]), 0);
    let req = ReportRequest {
        report_data: [0; 64],
        vmpl: 0,
        key_sel: KeySel::Default,
    };
    let err = ch.get_report(&mut fw, &req).unwrap_err();
    assert!(matches!(err, GuestRequestError::Transport(_)), "{err:?}");
    assert!(ch.is_disabled());
    assert_eq!(
        ch.get_report(&mut fw, &req).unwrap_err(),
        GuestRequestError::Disabled
    );
    assert_eq!(fw.requests, 1, "a disabled channel sends nothing");
}

#[test]
fn tampered_tag_is_refused() {
    let mut fw = FirmwareModel::new();
    fw.tamper_response_tag = true;
    let mut ch = channel();
    let err = ch
        .get_derived_key(&mut fw, &KeyRequest::sealing())
        .unwrap_err();
    assert_eq!(
        err,
        GuestRequestError::Message(MessageError::Authentication)
    );
    assert!(ch.is_disabled());
}

#[test]
fn tampered_header_or_payload_is_refused() {
    let key = Vmpck::new(0, VMPCK0);
    let mut page = [0u8; MSG_PAGE_SIZE];
    let h = MsgHeader::new(MsgType::KeyRsp as u8, 2, 4, 0);
    seal(&key, &h, &[1, 2, 3, 4], &mut page).unwrap();
    let mut out = [0u8; MAX_PAYLOAD];
    assert_eq!(open(&key, &page, &mut out).unwrap(), (h, 4));
    assert_eq!(&out[..4], &[1, 2, 3, 4]);
    for at in [hdr::MSG_TYPE, hdr::MSG_VMPCK, 0x50, HDR_SIZE, 0x20] {
        let mut bad = page;
        bad[at] ^= 0x80;
        assert_eq!(
            open(&key, &bad, &mut [0; MAX_PAYLOAD]).unwrap_err(),
            MessageError::Authentication,
            "byte {at:#x}"
        );
    }
    // The reserved bytes before ALGO are outside the AAD (per spec): not authenticated.
    let mut outside = page;
    outside[hdr::RESERVED1.start] ^= 1;
    assert!(open(&key, &outside, &mut [0; MAX_PAYLOAD]).is_ok());
    let mut bad = page;
    bad[hdr::ALGO] = 2;
    assert_eq!(
        open(&key, &bad, &mut [0; MAX_PAYLOAD]).unwrap_err(),
        MessageError::Header
    );
}

#[test]
fn replayed_response_is_refused() {
    let mut fw = FirmwareModel::new();
    let mut ch = channel();
    let req = ReportRequest {
        report_data: [1; 64],
        vmpl: 0,
        key_sel: KeySel::Default,
    };
    ch.get_report(&mut fw, &req).unwrap();
    // The hypervisor answers the next request with the previous (authentic) response.
    fw.replay = fw.last_response;
    let err = ch.get_report(&mut fw, &req).unwrap_err();
    assert_eq!(err, GuestRequestError::Mismatch("sequence number"));
    assert!(ch.is_disabled());
}

#[test]
fn replayed_request_is_refused_by_the_firmware() {
    // A guest that restarted its counter (e.g. forgot the OS-area seqno) is refused by the
    // PSP: the IV is never reused for a different message.
    let mut fw = FirmwareModel::new();
    let req = ReportRequest {
        report_data: [1; 64],
        vmpl: 0,
        key_sel: KeySel::Default,
    };
    channel().get_report(&mut fw, &req).unwrap();
    let err = channel().get_report(&mut fw, &req).unwrap_err();
    assert_eq!(
        err,
        GuestRequestError::Transport(TransportError {
            vmm: 0,
            firmware: 0x16
        })
    );
}

#[test]
fn firmware_status_is_reported() {
    let mut fw = FirmwareModel::new();
    fw.fw_status = 0x27;
    let mut ch = channel();
    let err = ch
        .get_derived_key(&mut fw, &KeyRequest::sealing())
        .unwrap_err();
    assert_eq!(err, GuestRequestError::Status(0x27));
    // The exchange itself authenticated: the counter moved on and the channel stays usable.
    assert_eq!(ch.last_seqno(), 2);
    fw.fw_status = 0;
    assert!(ch.get_derived_key(&mut fw, &KeyRequest::sealing()).is_ok());
}

#[test]
fn oversized_payload_is_refused_before_sending() {
    let mut fw = FirmwareModel::new();
    let mut ch = channel();
    let big = [0u8; MAX_PAYLOAD + 1];
    let err = ch
        .request(&mut fw, MsgType::KeyReq, &big, &mut [0; MAX_PAYLOAD])
        .unwrap_err();
    assert_eq!(err, GuestRequestError::Message(MessageError::Size));
    assert!(!ch.is_disabled());
    assert_eq!(fw.requests, 0);
}

#[test]
fn snp_guest_request_exit_fields_and_errors() {
    use crate::snp::ghcb::{GhcbPage, exit, field};
    use crate::snp::testutil::ModelHv;

    // The hypervisor's answer: SW_EXITINFO2 = vmm error << 32 | firmware error.
    let answer = |info2: u64| {
        ModelHv::new(
            |_| 0,
            move |g: &mut GhcbPage| {
                g.set_qword(field::SW_EXIT_INFO_1, 0);
                g.set_qword(field::SW_EXIT_INFO_2, info2);
            },
        )
    };
    let request = [0x5au8; MSG_PAGE_SIZE];
    let mut response = [0xffu8; MSG_PAGE_SIZE];
    let (mut req_page, mut rsp_page) = ([0u8; MSG_PAGE_SIZE], [0x11u8; MSG_PAGE_SIZE]);

    let mut hv = answer(0);
    let mut t = GhcbTransport {
        hv: &mut hv,
        request_page: &mut req_page,
        request_gpa: 0xA000,
        response_page: &mut rsp_page,
        response_gpa: 0xB000,
    };
    t.exchange(&request, &mut response).unwrap();
    assert_eq!(req_page, request, "request copied into the shared page");
    assert_eq!(
        response, [0u8; MSG_PAGE_SIZE],
        "response copied out of the shared page"
    );
    let sent = &hv.exits[0];
    assert_eq!(sent.qword(field::SW_EXIT_CODE), exit::SNP_GUEST_REQUEST);
    assert_eq!(sent.qword(field::SW_EXIT_INFO_1), 0xA000);
    assert_eq!(sent.qword(field::SW_EXIT_INFO_2), 0xB000);

    let mut hv = answer((1 << 32) | 0x16);
    let mut t = GhcbTransport {
        hv: &mut hv,
        request_page: &mut req_page,
        request_gpa: 0xA000,
        response_page: &mut rsp_page,
        response_gpa: 0xB000,
    };
    assert_eq!(
        t.exchange(&request, &mut response),
        Err(TransportError {
            vmm: 1,
            firmware: 0x16
        })
    );
    assert_eq!(hv.exits.len(), 1, "only BUSY is retried");
}

/// The hypervisor and the PSP behind the GHCB: reads the request page and writes the response
/// (and certificate) pages by GPA, where the tests pass the host addresses of the pages they
/// hand to the transport (identity "guest memory"). It answers BUSY `busy` times first; an
/// extended request whose buffer is smaller than `certs_pages` gets INVALID_LEN with the
/// page count in RBX.
struct HostModel {
    page: crate::snp::ghcb::GhcbPage,
    fw: FirmwareModel,
    busy: usize,
    certs_pages: u64,
    /// (exit code, SW_EXITINFO1, SW_EXITINFO2, RAX, RBX) as the guest sent them.
    exits: Vec<[u64; 5]>,
}

impl HostModel {
    fn new(busy: usize) -> Self {
        Self {
            page: crate::snp::ghcb::GhcbPage::new(),
            fw: FirmwareModel::new(),
            busy,
            certs_pages: 2,
            exits: Vec::new(),
        }
    }
}

impl crate::snp::ghcb::Hypervisor for HostModel {
    fn msr_protocol(&mut self, _request: u64) -> u64 {
        unreachable!("guest requests use the GHCB page")
    }
    fn ghcb(&mut self) -> Option<&mut crate::snp::ghcb::GhcbPage> {
        Some(&mut self.page)
    }
    fn ghcb_gpa(&self) -> u64 {
        crate::snp::testutil::MODEL_GHCB_GPA
    }
    fn ghcb_exit(&mut self) {
        use crate::snp::ghcb::{exit, field};
        let g = &mut self.page;
        let sent = [
            g.qword(field::SW_EXIT_CODE),
            g.qword(field::SW_EXIT_INFO_1),
            g.qword(field::SW_EXIT_INFO_2),
            g.qword(field::RAX),
            g.qword(field::RBX),
        ];
        self.exits.push(sent);
        let [code, req, rsp, rax, rbx] = sent;
        g.set_qword(field::SW_EXIT_INFO_1, 0);
        if self.busy > 0 {
            self.busy -= 1;
            g.set_qword(field::SW_EXIT_INFO_2, u64::from(vmm_error::BUSY) << 32);
            return;
        }
        if code == exit::SNP_EXT_GUEST_REQUEST && rbx < self.certs_pages {
            g.set_qword(
                field::SW_EXIT_INFO_2,
                u64::from(vmm_error::INVALID_LEN) << 32,
            );
            g.set_qword(field::RBX, self.certs_pages);
            return;
        }
        // SAFETY: test only. The GPAs are the addresses of live, distinct page buffers the test
        // handed to the transport, which does not touch them during the exit; like the real
        // hypervisor, the model writes guest memory behind the transport's `&mut` borrow.
        let (request, response) = unsafe {
            (
                &*(req as *const [u8; MSG_PAGE_SIZE]),
                &mut *(rsp as *mut [u8; MSG_PAGE_SIZE]),
            )
        };
        let info2 = match self.fw.exchange(request, response) {
            Ok(()) => 0,
            Err(e) => (u64::from(e.vmm) << 32) | u64::from(e.firmware),
        };
        if code == exit::SNP_EXT_GUEST_REQUEST && info2 == 0 {
            // SAFETY: test only, as above; `rax` is the live certificate buffer (2 pages).
            unsafe { (rax as *mut u8).copy_from_nonoverlapping(b"CERT-TABLE".as_ptr(), 10) };
        }
        g.set_qword(field::SW_EXIT_INFO_2, info2);
    }
}

type Page = Box<[u8; MSG_PAGE_SIZE]>;

fn pages() -> (Page, Page) {
    (
        Box::new([0u8; MSG_PAGE_SIZE]),
        Box::new([0u8; MSG_PAGE_SIZE]),
    )
}

fn transport<'a>(
    hv: &'a mut HostModel,
    req: &'a mut Page,
    rsp: &'a mut Page,
) -> GhcbTransport<'a, HostModel> {
    let (request_gpa, response_gpa) = (req.as_ptr() as u64, rsp.as_ptr() as u64);
    GhcbTransport {
        hv,
        request_page: req,
        request_gpa,
        response_page: rsp,
        response_gpa,
    }
}

#[test]
fn busy_hypervisor_gets_the_same_message_again() {
    let mut hv = HostModel::new(3);
    let (mut req, mut rsp) = pages();
    let mut ch = channel();
    let report = ch
        .get_report(
            &mut transport(&mut hv, &mut req, &mut rsp),
            &ReportRequest {
                report_data: [7; 64],
                vmpl: 0,
                key_sel: KeySel::Default,
            },
        )
        .unwrap();
    assert_eq!(report.report.report_data, [7; 64]);
    assert_eq!(hv.exits.len(), 4, "3 x BUSY, then forwarded");
    assert!(
        hv.exits.windows(2).all(|w| w[0] == w[1]),
        "same exit each time"
    );
    assert_eq!(hv.fw.requests, 1, "the PSP saw the message once");
    assert_eq!(ch.last_seqno(), 2);
    // The next request still lines up with the firmware's sequence numbers.
    ch.get_derived_key(
        &mut transport(&mut hv, &mut req, &mut rsp),
        &KeyRequest::sealing(),
    )
    .unwrap();
    assert_eq!(ch.last_seqno(), 4);
}

#[test]
fn busy_forever_is_bounded_and_disables_the_channel() {
    let mut hv = HostModel::new(usize::MAX);
    let (mut req, mut rsp) = pages();
    let mut ch = channel();
    let err = ch
        .get_derived_key(
            &mut transport(&mut hv, &mut req, &mut rsp),
            &KeyRequest::sealing(),
        )
        .unwrap_err();
    assert_eq!(
        err,
        GuestRequestError::Transport(TransportError {
            vmm: vmm_error::BUSY,
            firmware: 0
        })
    );
    assert_eq!(hv.exits.len(), BUSY_RETRIES + 1);
    assert_eq!(hv.fw.requests, 0);
    assert!(ch.is_disabled());
}

#[test]
fn extended_request_fills_the_certificate_buffer() {
    use crate::snp::ghcb::exit;
    let mut hv = HostModel::new(1);
    let (mut req, mut rsp) = pages();
    let mut certs = vec![0xeeu8; 2 * 4096];
    let certs_gpa = certs.as_ptr() as u64;
    let mut t = ExtGhcbTransport {
        base: transport(&mut hv, &mut req, &mut rsp),
        certs: &mut certs,
        certs_gpa,
        pages_needed: None,
    };
    let mut ch = channel();
    let req_data = ReportRequest {
        report_data: [9; 64],
        vmpl: 0,
        key_sel: KeySel::Default,
    };
    let report = ch.get_report(&mut t, &req_data).unwrap();
    assert_eq!(report.report.report_data, [9; 64]);
    assert_eq!(t.pages_needed, None);
    assert_eq!(&certs[..10], b"CERT-TABLE");
    assert!(certs[10..].iter().all(|&b| b == 0), "stale bytes cleared");
    let [code, _, _, rax, rbx] = hv.exits[1];
    assert_eq!(code, exit::SNP_EXT_GUEST_REQUEST);
    assert_eq!((rax, rbx), (certs_gpa, 2));
    assert_eq!(hv.exits.len(), 2, "BUSY once, then forwarded");
}

#[test]
fn extended_request_reports_a_short_certificate_buffer() {
    let mut hv = HostModel::new(0);
    hv.certs_pages = 3;
    let (mut req, mut rsp) = pages();
    let mut certs = vec![0u8; 4096];
    let certs_gpa = certs.as_ptr() as u64;
    let mut t = ExtGhcbTransport {
        base: transport(&mut hv, &mut req, &mut rsp),
        certs: &mut certs,
        certs_gpa,
        pages_needed: None,
    };
    let mut ch = channel();
    let err = ch
        .get_report(
            &mut t,
            &ReportRequest {
                report_data: [0; 64],
                vmpl: 0,
                key_sel: KeySel::Default,
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        GuestRequestError::Transport(TransportError {
            vmm: vmm_error::INVALID_LEN,
            firmware: 0
        })
    );
    assert_eq!(t.pages_needed, Some(3));
    // Fail closed: the message may have been seen, so the channel is not reused.
    assert!(ch.is_disabled());
}
