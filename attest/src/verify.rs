//! Verification of an SNP attestation report against a pin (DESIGN §4, §7). Host side, `std`.
//!
//! Order of checks, each failure with its own [`VerifyError`] variant:
//! 1. framing: length (1184), VERSION >= 2, SIGNATURE_ALGO = 1 (ECDSA P-384/SHA-384), KEY_INFO
//!    says the VCEK signed it, reserved bytes zero (so the bytes `sev` re-encodes and verifies are
//!    exactly the bytes received), R/S zero-extended;
//! 2. certificate chain ARK → ASK → VCEK (RSA-PSS/SHA-384, `sev::certs::snp`), with the ARK one of
//!    the trust anchors (AMD Milan/Genoa/Turin roots built into `sev` by default);
//! 3. the VCEK's TCB and hardware-id extensions (VCEK spec #57230, Table 8) equal the report's
//!    REPORTED_TCB and CHIP_ID, so an older, weaker VCEK cannot vouch for a newer claimed TCB;
//! 4. the report signature by the VCEK (`sev`, P-384 ECDSA over bytes 0x000..0x2A0);
//! 5. content: MEASUREMENT among the pinned digests, policy (debug off, SMT and migration agent
//!    as pinned, every other bit as pinned), VMPL, REPORTED_TCB >= minimum per component,
//!    REPORT_DATA and HOST_DATA when pinned.
//!
//! No ASN.1 or cryptography is written here: certificates are parsed by `x509-cert` (through
//! `sev`), signatures are checked by `sev` with RustCrypto `rsa` and `p384`.

use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use sev::certs::snp::{Certificate, Verifiable, builtin};
use sev::parser::ByteParser;
use x509_cert::der::asn1::OctetString;
use x509_cert::der::{Decode, oid::ObjectIdentifier};

use crate::policy::GuestPolicy;
use crate::report::{AttestationReport, REPORT_SIZE, ReportError, SIGNED_LEN, SigningKey};
use crate::tcb::{TcbLayout, TcbVersion};

pub use sev::certs::snp::Certificate as SevCertificate;

/// What the verifier expects of a report; built from the tenant's pinned manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Accepted launch digests (one per pinned vCPU count / vCPU type).
    pub measurements: Vec<[u8; 48]>,
    /// The guest policy the backend is launched with.
    pub policy: GuestPolicy,
    /// VMPL the report must have been requested at (0: the backend runs at VMPL0).
    pub vmpl: u32,
    /// Minimum REPORTED_TCB, per component.
    pub min_tcb: TcbVersion,
    /// Expected REPORT_DATA, if the caller knows it (e.g. the handshake binding).
    pub report_data: Option<[u8; 64]>,
    /// Expected HOST_DATA, if pinned (e.g. SHA-256 of the agent's static key).
    pub host_data: Option<[u8; 32]>,
}

/// Certificates that come with a report (files the user supplies; never fetched here).
#[derive(Debug, Clone)]
pub struct Certs {
    /// The VCEK certificate for this chip and TCB.
    pub vcek: Certificate,
    /// The ASK; the trust anchor's ASK is used when absent.
    pub ask: Option<Certificate>,
    /// The ARK; must equal a trust anchor's ARK when present.
    pub ark: Option<Certificate>,
}

impl Certs {
    /// Parses PEM or DER certificates.
    ///
    /// # Errors
    /// [`VerifyError::Certificate`] naming the certificate that does not parse.
    pub fn from_bytes(
        vcek: &[u8],
        ask: Option<&[u8]>,
        ark: Option<&[u8]>,
    ) -> Result<Self, VerifyError> {
        Ok(Self {
            vcek: parse_certificate("VCEK", vcek)?,
            ask: ask.map(|b| parse_certificate("ASK", b)).transpose()?,
            ark: ark.map(|b| parse_certificate("ARK", b)).transpose()?,
        })
    }
}

/// Parses one PEM or DER certificate.
///
/// # Errors
/// [`VerifyError::Certificate`].
pub fn parse_certificate(what: &'static str, bytes: &[u8]) -> Result<Certificate, VerifyError> {
    let r = if bytes.starts_with(b"-----BEGIN") {
        Certificate::from_pem(bytes)
    } else {
        Certificate::from_der(bytes)
    };
    r.map_err(|e| VerifyError::Certificate {
        what,
        detail: e.to_string(),
    })
}

/// A root of trust: an ARK and the ASK it signs.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    /// Name for messages ("Milan", "Genoa", "Turin", "test root").
    pub name: String,
    /// Self-signed AMD Root Key certificate.
    pub ark: Certificate,
    /// AMD SEV Key certificate signed by the ARK.
    pub ask: Certificate,
}

/// The set of accepted roots.
#[derive(Debug, Clone)]
pub struct TrustAnchors(pub Vec<TrustAnchor>);

impl TrustAnchors {
    /// The AMD ARK/ASK pairs for Milan, Genoa and Turin embedded in the `sev` crate.
    ///
    /// # Errors
    /// Only if the embedded PEMs do not parse (a broken `sev` build).
    pub fn amd() -> Result<Self, VerifyError> {
        let pair = |name: &str,
                    ark: std::io::Result<Certificate>,
                    ask: std::io::Result<Certificate>|
         -> Result<TrustAnchor, VerifyError> {
            let e = |d: std::io::Error| VerifyError::Certificate {
                what: "built-in AMD root",
                detail: d.to_string(),
            };
            Ok(TrustAnchor {
                name: name.into(),
                ark: ark.map_err(e)?,
                ask: ask.map_err(e)?,
            })
        };
        Ok(Self(vec![
            pair("Milan", builtin::milan::ark(), builtin::milan::ask())?,
            pair("Genoa", builtin::genoa::ark(), builtin::genoa::ask())?,
            pair("Turin", builtin::turin::ark(), builtin::turin::ask())?,
        ]))
    }
}

/// A report that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReport {
    /// The report.
    pub report: AttestationReport,
    /// Name of the trust anchor whose chain verified.
    pub anchor: String,
    /// REPORTED_TCB, decoded.
    pub tcb: TcbVersion,
}

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Not a report.
    #[error(transparent)]
    Malformed(#[from] ReportError),
    /// VERSION below 2.
    #[error("attestation report version {0} is not supported (need 2 or later)")]
    UnsupportedVersion(u32),
    /// SIGNATURE_ALGO other than ECDSA P-384/SHA-384.
    #[error("report signature algorithm {0} is not ECDSA P-384 with SHA-384 (1)")]
    UnsupportedSignatureAlgorithm(u32),
    /// Signed by the VLEK, or not signed.
    #[error(
        "report is not signed by a VCEK (KEY_INFO signing key: {0:?}); only VCEK-signed reports are accepted"
    )]
    NotVcekSigned(SigningKey),
    /// Reserved bytes set: the report is not what the firmware emits.
    #[error("report has non-zero reserved bytes; refusing a report that is not in canonical form")]
    NonCanonical,
    /// `sev` cannot decode the report (e.g. unknown CPU generation).
    #[error("report cannot be decoded: {0}")]
    Decode(String),
    /// A certificate does not parse.
    #[error("{what} certificate is invalid: {detail}")]
    Certificate {
        /// Which certificate.
        what: &'static str,
        /// Parser message.
        detail: String,
    },
    /// No trust anchors given.
    #[error("no trust anchors configured")]
    NoTrustAnchors,
    /// The supplied ARK is none of the trusted roots.
    #[error("the supplied ARK is not a trusted AMD root (trusted: {trusted})")]
    UntrustedArk {
        /// Names of the trusted roots.
        trusted: String,
    },
    /// A trust anchor's ARK does not verify itself.
    #[error("ARK {anchor} is not validly self-signed: {detail}")]
    ArkNotSelfSigned {
        /// Anchor name.
        anchor: String,
        /// Cause.
        detail: String,
    },
    /// The ASK is not signed by any trusted ARK.
    #[error("ASK is not signed by the ARK ({anchor}): {detail}")]
    AskNotSignedByArk {
        /// Anchor name(s) tried.
        anchor: String,
        /// Cause.
        detail: String,
    },
    /// The VCEK is not signed by the ASK.
    #[error("VCEK is not signed by the ASK ({anchor}): {detail}")]
    VcekNotSignedByAsk {
        /// Anchor name(s) tried.
        anchor: String,
        /// Cause.
        detail: String,
    },
    /// A VCEK extension is missing or malformed.
    #[error("VCEK certificate extension {oid} ({name}) is missing or malformed")]
    VcekExtension {
        /// OID.
        oid: &'static str,
        /// Meaning.
        name: &'static str,
    },
    /// The VCEK was issued for another TCB than the report claims.
    #[error("VCEK was issued for TCB {vcek:?} but the report claims REPORTED_TCB {report:?}")]
    VcekTcbMismatch {
        /// From the certificate.
        vcek: TcbVersion,
        /// From the report.
        report: TcbVersion,
    },
    /// The VCEK was issued for another chip.
    #[error("VCEK hardware id does not match the report's CHIP_ID: certificate for another chip")]
    VcekChipMismatch,
    /// The report signature does not verify with the VCEK.
    #[error("report signature is invalid: {0}")]
    BadSignature(String),
    /// Launch digest not pinned.
    #[error(
        "measurement {got} is not pinned (pinned: {pinned}): a different image or launch configuration"
    )]
    MeasurementMismatch {
        /// Report value, hex.
        got: String,
        /// Pinned values, hex, comma separated.
        pinned: String,
    },
    /// DEBUG policy bit set.
    #[error("guest policy {0:#x} allows debugging: the host can read the guest's memory")]
    DebugAllowed(u64),
    /// SMT bit differs.
    #[error("guest policy SMT-allowed is {got}, pinned {pinned}")]
    SmtPolicy {
        /// Pinned.
        pinned: bool,
        /// Report.
        got: bool,
    },
    /// MIGRATE_MA bit differs.
    #[error("guest policy migration-agent-allowed is {got}, pinned {pinned}")]
    MigrationPolicy {
        /// Pinned.
        pinned: bool,
        /// Report.
        got: bool,
    },
    /// Another policy bit differs.
    #[error("guest policy {got:#x} differs from the pinned {pinned:#x}")]
    PolicyMismatch {
        /// Pinned.
        pinned: u64,
        /// Report.
        got: u64,
    },
    /// VMPL differs.
    #[error("report was requested at VMPL{got}, pinned VMPL{pinned}")]
    Vmpl {
        /// Pinned.
        pinned: u32,
        /// Report.
        got: u32,
    },
    /// TCB below the minimum.
    #[error(
        "platform TCB too old: {component} SVN {got} < pinned minimum {min}; update the host firmware"
    )]
    TcbTooOld {
        /// Component name.
        component: &'static str,
        /// Report value.
        got: u8,
        /// Minimum.
        min: u8,
    },
    /// REPORT_DATA differs.
    #[error("report_data {got} differs from the expected {expected}: not bound to this session")]
    ReportData {
        /// Expected, hex.
        expected: String,
        /// Report, hex.
        got: String,
    },
    /// HOST_DATA differs.
    #[error(
        "host_data {got} differs from the pinned {expected}: backend launched for another guest"
    )]
    HostData {
        /// Expected, hex.
        expected: String,
        /// Report, hex.
        got: String,
    },
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// VCEK certificate extensions, VCEK/VLEK specification #57230, Table 8.
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HW_ID: &str = "1.3.6.1.4.1.3704.1.4";

fn extension<'a>(cert: &'a x509_cert::Certificate, oid: &str) -> Option<&'a [u8]> {
    let oid = ObjectIdentifier::new(oid).ok()?;
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

fn spl(
    cert: &x509_cert::Certificate,
    oid: &'static str,
    name: &'static str,
) -> Result<u8, VerifyError> {
    let raw = extension(cert, oid).ok_or(VerifyError::VcekExtension { oid, name })?;
    u8::from_der(raw).map_err(|_| VerifyError::VcekExtension { oid, name })
}

/// The TCB the VCEK certificate was issued for.
fn vcek_tcb(cert: &x509_cert::Certificate, layout: TcbLayout) -> Result<TcbVersion, VerifyError> {
    Ok(TcbVersion {
        fmc: match layout {
            TcbLayout::Turin => Some(spl(cert, OID_FMC_SPL, "fmcSPL")?),
            TcbLayout::Legacy => None,
        },
        bootloader: spl(cert, OID_BL_SPL, "blSPL")?,
        tee: spl(cert, OID_TEE_SPL, "teeSPL")?,
        snp: spl(cert, OID_SNP_SPL, "snpSPL")?,
        microcode: spl(cert, OID_UCODE_SPL, "ucodeSPL")?,
    })
}

/// The VCEK's hardware id: raw bytes, or an OCTET STRING holding them (both are seen in the wild).
fn vcek_hwid(cert: &x509_cert::Certificate) -> Result<Vec<u8>, VerifyError> {
    let missing = VerifyError::VcekExtension {
        oid: OID_HW_ID,
        name: "hwID",
    };
    let raw = extension(cert, OID_HW_ID).ok_or(missing)?;
    if let Ok(os) = OctetString::from_der(raw)
        && matches!(os.as_bytes().len(), 8 | 64)
    {
        return Ok(os.as_bytes().to_vec());
    }
    Ok(raw.to_vec())
}

/// Checks ARK → ASK → VCEK against the anchors; returns the name of the anchor that verified.
fn verify_chain(certs: &Certs, anchors: &TrustAnchors) -> Result<String, VerifyError> {
    if anchors.0.is_empty() {
        return Err(VerifyError::NoTrustAnchors);
    }
    let names = || {
        anchors
            .0
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let candidates: Vec<&TrustAnchor> = match &certs.ark {
        Some(ark) => {
            let der = ark.to_der().map_err(|e| VerifyError::Certificate {
                what: "ARK",
                detail: e.to_string(),
            })?;
            let hit = anchors
                .0
                .iter()
                .find(|a| a.ark.to_der().ok().as_deref() == Some(der.as_slice()));
            vec![hit.ok_or_else(|| VerifyError::UntrustedArk { trusted: names() })?]
        }
        None => anchors.0.iter().collect(),
    };
    // Keep the error of the candidate that got furthest along the chain.
    let mut best: Option<(u8, VerifyError)> = None;
    for a in &candidates {
        let ask = certs.ask.as_ref().unwrap_or(&a.ask);
        let (stage, err) = if let Err(e) = (&a.ark, &a.ark).verify() {
            (
                0,
                VerifyError::ArkNotSelfSigned {
                    anchor: a.name.clone(),
                    detail: e.to_string(),
                },
            )
        } else if let Err(e) = (&a.ark, ask).verify() {
            (
                1,
                VerifyError::AskNotSignedByArk {
                    anchor: a.name.clone(),
                    detail: e.to_string(),
                },
            )
        } else if let Err(e) = (ask, &certs.vcek).verify() {
            (
                2,
                VerifyError::VcekNotSignedByAsk {
                    anchor: a.name.clone(),
                    detail: e.to_string(),
                },
            )
        } else {
            return Ok(a.name.clone());
        };
        if best.as_ref().is_none_or(|(s, _)| stage > *s) {
            best = Some((stage, err));
        }
    }
    let tried = if candidates.len() > 1 {
        format!("tried {}", names())
    } else {
        String::new()
    };
    Err(match best {
        Some((_, VerifyError::AskNotSignedByArk { anchor, detail })) if !tried.is_empty() => {
            VerifyError::AskNotSignedByArk {
                anchor: tried,
                detail: format!("last ({anchor}): {detail}"),
            }
        }
        Some((_, VerifyError::VcekNotSignedByAsk { anchor, detail })) if !tried.is_empty() => {
            VerifyError::VcekNotSignedByAsk {
                anchor: tried,
                detail: format!("last ({anchor}): {detail}"),
            }
        }
        Some((_, e)) => e,
        None => VerifyError::NoTrustAnchors,
    })
}

/// Verifies `report_bytes` against `pin` with the AMD roots built into `sev`.
///
/// # Errors
/// The first failed check, see [`VerifyError`].
pub fn verify(
    report_bytes: &[u8],
    pin: &Pin,
    certs: &Certs,
) -> Result<VerifiedReport, VerifyError> {
    verify_with_anchors(report_bytes, pin, certs, &TrustAnchors::amd()?)
}

/// Verifies `report_bytes` against `pin`, trusting exactly `anchors`.
///
/// # Errors
/// The first failed check, see [`VerifyError`].
pub fn verify_with_anchors(
    report_bytes: &[u8],
    pin: &Pin,
    certs: &Certs,
    anchors: &TrustAnchors,
) -> Result<VerifiedReport, VerifyError> {
    // 1. Framing.
    let raw: &[u8; REPORT_SIZE] = report_bytes
        .try_into()
        .map_err(|_| ReportError::Length(report_bytes.len()))?;
    let report = AttestationReport::from_array(raw);
    if report.version < 2 {
        return Err(VerifyError::UnsupportedVersion(report.version));
    }
    if report.signature_algo != crate::report::SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(VerifyError::UnsupportedSignatureAlgorithm(
            report.signature_algo,
        ));
    }
    if report.signing_key() != SigningKey::Vcek || report.mask_chip_key() {
        return Err(VerifyError::NotVcekSigned(report.signing_key()));
    }
    if !AttestationReport::is_canonical(raw) {
        return Err(VerifyError::NonCanonical);
    }
    // P-384 scalars are 48 bytes; the upper 24 of each 72-byte field must be zero.
    if report.signature.r[48..].iter().any(|&b| b != 0)
        || report.signature.s[48..].iter().any(|&b| b != 0)
    {
        return Err(VerifyError::BadSignature(
            "R or S is not a zero-extended 48-byte value".into(),
        ));
    }
    let sev_report = sev::firmware::guest::AttestationReport::from_bytes(report_bytes)
        .map_err(|e| VerifyError::Decode(e.to_string()))?;
    // sev verifies the signature over its own re-encoding; make sure that is our exact bytes.
    let reencoded = sev_report
        .to_bytes()
        .map_err(|e| VerifyError::Decode(e.to_string()))?;
    if reencoded.as_ref().get(..SIGNED_LEN) != Some(&raw[..SIGNED_LEN]) {
        return Err(VerifyError::NonCanonical);
    }

    // 2. Chain.
    let anchor = verify_chain(certs, anchors)?;

    // 3. VCEK bound to this TCB and chip.
    let vcek_x509: x509_cert::Certificate = certs.vcek.clone().into();
    let layout = report.tcb_layout();
    let tcb = report.reported_tcb();
    let cert_tcb = vcek_tcb(&vcek_x509, layout)?;
    if cert_tcb != tcb {
        return Err(VerifyError::VcekTcbMismatch {
            vcek: cert_tcb,
            report: tcb,
        });
    }
    if report.chip_id != [0u8; 64] {
        let hwid = vcek_hwid(&vcek_x509)?;
        let n = hwid.len().min(64);
        if hwid.is_empty()
            || report.chip_id[..n] != hwid[..n]
            || report.chip_id[n..].iter().any(|&b| b != 0)
        {
            return Err(VerifyError::VcekChipMismatch);
        }
    }

    // 4. Signature.
    (&certs.vcek, &sev_report)
        .verify()
        .map_err(|e| VerifyError::BadSignature(e.to_string()))?;

    // 5. Content.
    if !pin.measurements.contains(&report.measurement) {
        return Err(VerifyError::MeasurementMismatch {
            got: hex(&report.measurement),
            pinned: pin
                .measurements
                .iter()
                .map(|m| hex(m))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let got = report.policy;
    if got.debug_allowed() {
        return Err(VerifyError::DebugAllowed(got.0));
    }
    if got.smt_allowed() != pin.policy.smt_allowed() {
        return Err(VerifyError::SmtPolicy {
            pinned: pin.policy.smt_allowed(),
            got: got.smt_allowed(),
        });
    }
    if got.migrate_ma_allowed() != pin.policy.migrate_ma_allowed() {
        return Err(VerifyError::MigrationPolicy {
            pinned: pin.policy.migrate_ma_allowed(),
            got: got.migrate_ma_allowed(),
        });
    }
    if got != pin.policy {
        return Err(VerifyError::PolicyMismatch {
            pinned: pin.policy.0,
            got: got.0,
        });
    }
    if report.vmpl != pin.vmpl {
        return Err(VerifyError::Vmpl {
            pinned: pin.vmpl,
            got: report.vmpl,
        });
    }
    if let Some((component, got, min)) = tcb.first_below(&pin.min_tcb) {
        return Err(VerifyError::TcbTooOld {
            component,
            got,
            min,
        });
    }
    if let Some(expected) = &pin.report_data
        && *expected != report.report_data
    {
        return Err(VerifyError::ReportData {
            expected: hex(expected),
            got: hex(&report.report_data),
        });
    }
    if let Some(expected) = &pin.host_data
        && *expected != report.host_data
    {
        return Err(VerifyError::HostData {
            expected: hex(expected),
            got: hex(&report.host_data),
        });
    }
    Ok(VerifiedReport {
        report,
        anchor,
        tcb,
    })
}
