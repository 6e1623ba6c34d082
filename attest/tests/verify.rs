//! Report verification against a test PKI generated here: an RSA ARK and ASK (RSA-PSS/SHA-384
//! signatures, as AMD's chain uses) and a P-384 VCEK carrying the TCB and hwID extensions. A valid
//! report passes; each tampered or wrongly-signed copy is refused for its own reason.

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use p384::ecdsa::signature::DigestSigner;
use rand_core::OsRng;
use rsa::pkcs8::EncodePublicKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::{RsaPrivateKey, pkcs8::spki::DynSignatureAlgorithmIdentifier};
use sha2::{Digest, Sha384};
use ukvtpm_attest::report::{SIGNED_LEN, field};
use ukvtpm_attest::verify::{
    Certs, Pin, SevCertificate, TrustAnchor, TrustAnchors, VerifyError, verify, verify_with_anchors,
};
use ukvtpm_attest::{GuestPolicy, TcbLayout, TcbVersion};
use x509_cert::der::asn1::{BitString, OctetString};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::Validity;
use x509_cert::{Certificate, TbsCertificate};

const RSA_BITS: usize = 2048;
const TCB: TcbVersion = TcbVersion {
    fmc: None,
    bootloader: 3,
    tee: 0,
    snp: 8,
    microcode: 115,
};
const CHIP_ID: [u8; 64] = [0x5a; 64];
const MEASUREMENT: [u8; 48] = [0x11; 48];
const REPORT_DATA: [u8; 64] = [0x22; 64];
const HOST_DATA: [u8; 32] = [0x33; 32];

fn rsa_spki(key: &RsaPrivateKey) -> SubjectPublicKeyInfoOwned {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .expect("encode RSA SPKI");
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).expect("decode RSA SPKI")
}

/// Issues a certificate signed with RSA-PSS/SHA-384 by `issuer_key`.
fn issue(
    subject: &str,
    issuer: &str,
    spki: SubjectPublicKeyInfoOwned,
    issuer_key: &RsaPrivateKey,
    extensions: Option<Vec<Extension>>,
) -> SevCertificate {
    let signer = rsa::pss::SigningKey::<Sha384>::new(issuer_key.clone());
    let alg = signer
        .signature_algorithm_identifier()
        .expect("PSS algorithm identifier");
    let tbs = TbsCertificate {
        version: x509_cert::Version::V3,
        serial_number: SerialNumber::new(&[1, 2, 3]).expect("serial"),
        signature: alg.clone(),
        issuer: Name::from_str(issuer).expect("issuer"),
        validity: Validity::from_now(Duration::from_secs(86_400)).expect("validity"),
        subject: Name::from_str(subject).expect("subject"),
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions,
    };
    let msg = tbs.to_der().expect("TBS DER");
    let sig = signer.sign_with_rng(&mut OsRng, &msg);
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(&sig.to_bytes()).expect("bit string"),
    }
    .into()
}

fn vcek_extensions(tcb: TcbVersion, chip_id: &[u8]) -> Vec<Extension> {
    let int = |oid: &str, v: u8| Extension {
        extn_id: ObjectIdentifier::new_unwrap(oid),
        critical: false,
        extn_value: OctetString::new(v.to_der().expect("int DER")).expect("octets"),
    };
    vec![
        int("1.3.6.1.4.1.3704.1.3.1", tcb.bootloader),
        int("1.3.6.1.4.1.3704.1.3.2", tcb.tee),
        int("1.3.6.1.4.1.3704.1.3.3", tcb.snp),
        int("1.3.6.1.4.1.3704.1.3.8", tcb.microcode),
        Extension {
            extn_id: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4"),
            critical: false,
            extn_value: OctetString::new(chip_id.to_vec()).expect("octets"),
        },
    ]
}

struct Root {
    ark_key: RsaPrivateKey,
    ark: SevCertificate,
    ask_key: RsaPrivateKey,
    ask: SevCertificate,
}

fn root(name: &str) -> Root {
    let ark_key = RsaPrivateKey::new(&mut OsRng, RSA_BITS).expect("ARK key");
    let ask_key = RsaPrivateKey::new(&mut OsRng, RSA_BITS).expect("ASK key");
    let ark_name = format!("CN=ARK-{name},O=ukvtpm test");
    let ask_name = format!("CN=SEV-{name},O=ukvtpm test");
    let ark = issue(&ark_name, &ark_name, rsa_spki(&ark_key), &ark_key, None);
    let ask = issue(&ask_name, &ark_name, rsa_spki(&ask_key), &ark_key, None);
    Root {
        ark_key,
        ark,
        ask_key,
        ask,
    }
}

struct Pki {
    good: Root,
    evil: Root,
    vcek_key: p384::ecdsa::SigningKey,
    vcek: SevCertificate,
}

fn vcek_for(
    r: &Root,
    key: &p384::ecdsa::SigningKey,
    tcb: TcbVersion,
    chip: &[u8],
) -> SevCertificate {
    let der = key.verifying_key().to_public_key_der().expect("VCEK SPKI");
    let spki = SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).expect("decode");
    issue(
        "CN=SEV-VCEK,O=ukvtpm test",
        "CN=SEV-test,O=ukvtpm test",
        spki,
        &r.ask_key,
        Some(vcek_extensions(tcb, chip)),
    )
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let good = root("test");
        let evil = root("evil");
        let vcek_key = p384::ecdsa::SigningKey::random(&mut OsRng);
        let vcek = vcek_for(&good, &vcek_key, TCB, &CHIP_ID);
        Pki {
            good,
            evil,
            vcek_key,
            vcek,
        }
    })
}

fn anchors() -> TrustAnchors {
    let p = pki();
    TrustAnchors(vec![TrustAnchor {
        name: "test root".into(),
        ark: p.good.ark.clone(),
        ask: p.good.ask.clone(),
    }])
}

fn certs() -> Certs {
    let p = pki();
    Certs {
        vcek: p.vcek.clone(),
        ask: Some(p.good.ask.clone()),
        ark: Some(p.good.ark.clone()),
    }
}

fn pin() -> Pin {
    Pin {
        measurements: vec![[0xAA; 48], MEASUREMENT],
        policy: GuestPolicy::UKVTPM_DEFAULT,
        vmpl: 0,
        min_tcb: TCB,
        report_data: Some(REPORT_DATA),
        host_data: Some(HOST_DATA),
    }
}

/// Unsigned v3 Genoa report with the pinned contents.
fn body() -> [u8; 1184] {
    let mut b = [0u8; 1184];
    b[field::VERSION].copy_from_slice(&3u32.to_le_bytes());
    b[field::POLICY].copy_from_slice(&GuestPolicy::UKVTPM_DEFAULT.0.to_le_bytes());
    b[field::SIGNATURE_ALGO].copy_from_slice(&1u32.to_le_bytes());
    let tcb = TCB.to_raw(TcbLayout::Legacy).to_le_bytes();
    for r in [
        field::CURRENT_TCB,
        field::REPORTED_TCB,
        field::COMMITTED_TCB,
        field::LAUNCH_TCB,
    ] {
        b[r].copy_from_slice(&tcb);
    }
    b[field::REPORT_DATA].copy_from_slice(&REPORT_DATA);
    b[field::MEASUREMENT].copy_from_slice(&MEASUREMENT);
    b[field::HOST_DATA].copy_from_slice(&HOST_DATA);
    b[field::CPUID_FAM_ID] = 0x19;
    b[field::CPUID_MOD_ID] = 0x11;
    b[field::CPUID_STEP] = 1;
    b[field::CHIP_ID].copy_from_slice(&CHIP_ID);
    b[field::CURRENT_VERSION].copy_from_slice(&[30, 55, 1]);
    b[field::COMMITTED_VERSION].copy_from_slice(&[30, 55, 1]);
    b
}

/// Signs `b` in place like the PSP: ECDSA P-384 over SHA-384(bytes 0..0x2A0), R/S little-endian.
fn sign(mut b: [u8; 1184], key: &p384::ecdsa::SigningKey) -> [u8; 1184] {
    let sig: p384::ecdsa::Signature = key.sign_digest(Sha384::new_with_prefix(&b[..SIGNED_LEN]));
    let (r, s) = sig.split_bytes();
    let mut r_le = r.to_vec();
    r_le.reverse();
    let mut s_le = s.to_vec();
    s_le.reverse();
    b[field::SIG_R].fill(0);
    b[field::SIG_S].fill(0);
    b[field::SIG_R.start..field::SIG_R.start + 48].copy_from_slice(&r_le);
    b[field::SIG_S.start..field::SIG_S.start + 48].copy_from_slice(&s_le);
    b
}

fn signed_with(edit: impl FnOnce(&mut [u8; 1184])) -> [u8; 1184] {
    let mut b = body();
    edit(&mut b);
    sign(b, &pki().vcek_key)
}

fn check(report: &[u8]) -> Result<(), VerifyError> {
    verify_with_anchors(report, &pin(), &certs(), &anchors()).map(|_| ())
}

#[test]
fn valid_report_passes() {
    let r = signed_with(|_| {});
    let v = verify_with_anchors(&r, &pin(), &certs(), &anchors()).expect("valid report");
    assert_eq!(v.anchor, "test root");
    assert_eq!(v.tcb, TCB);
    assert_eq!(v.report.measurement, MEASUREMENT);
    // Without ARK/ASK files the anchor's own are used.
    let only_vcek = Certs {
        ask: None,
        ark: None,
        ..certs()
    };
    verify_with_anchors(&r, &pin(), &only_vcek, &anchors()).expect("anchor's ASK");
    // Optional pins may be left out.
    let loose = Pin {
        report_data: None,
        host_data: None,
        ..pin()
    };
    verify_with_anchors(&r, &loose, &certs(), &anchors()).expect("no data pins");
}

#[test]
fn bit_flips_after_signing_break_the_signature() {
    let good = signed_with(|_| {});
    for (name, at) in [
        ("measurement", field::MEASUREMENT.start),
        ("report_data", field::REPORT_DATA.start + 5),
        ("host_data", field::HOST_DATA.start + 31),
        ("policy", field::POLICY.start),
        ("vmpl", field::VMPL.start),
        ("signature R", field::SIG_R.start),
        ("signature S", field::SIG_S.start + 47),
    ] {
        let mut r = good;
        r[at] ^= 0x01;
        let e = check(&r).expect_err(name);
        assert!(
            matches!(e, VerifyError::BadSignature(_)),
            "{name}: expected BadSignature, got {e}"
        );
    }
    let mut r = good;
    r[field::SIG_R.start + 60] = 1;
    assert!(matches!(check(&r), Err(VerifyError::BadSignature(_))));
    // Reserved bytes are not signed; accepting them would make reports malleable.
    let mut r = good;
    r[field::RESERVED1.start] = 1;
    assert!(matches!(check(&r), Err(VerifyError::NonCanonical)));
}

#[test]
fn genuinely_signed_but_wrong_content_is_refused_for_the_right_reason() {
    let e = check(&signed_with(|b| b[field::MEASUREMENT].fill(0x99))).unwrap_err();
    assert!(matches!(e, VerifyError::MeasurementMismatch { .. }), "{e}");
    assert!(e.to_string().contains("is not pinned"));

    let e = check(&signed_with(|b| b[field::REPORT_DATA].fill(0))).unwrap_err();
    assert!(matches!(e, VerifyError::ReportData { .. }), "{e}");

    let e = check(&signed_with(|b| b[field::HOST_DATA].fill(0))).unwrap_err();
    assert!(matches!(e, VerifyError::HostData { .. }), "{e}");

    let policy =
        |p: u64| move |b: &mut [u8; 1184]| b[field::POLICY].copy_from_slice(&p.to_le_bytes());
    let e = check(&signed_with(policy(0x30000 | GuestPolicy::DEBUG))).unwrap_err();
    assert!(matches!(e, VerifyError::DebugAllowed(_)), "{e}");
    let e = check(&signed_with(policy(0x20000))).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::SmtPolicy {
                pinned: true,
                got: false
            }
        ),
        "{e}"
    );
    let e = check(&signed_with(policy(0x30000 | GuestPolicy::MIGRATE_MA))).unwrap_err();
    assert!(matches!(e, VerifyError::MigrationPolicy { .. }), "{e}");
    let e = check(&signed_with(policy(0x30000 | GuestPolicy::SINGLE_SOCKET))).unwrap_err();
    assert!(matches!(e, VerifyError::PolicyMismatch { .. }), "{e}");

    let e = check(&signed_with(|b| {
        b[field::VMPL].copy_from_slice(&1u32.to_le_bytes())
    }))
    .unwrap_err();
    assert!(matches!(e, VerifyError::Vmpl { pinned: 0, got: 1 }), "{e}");
}

#[test]
fn old_tcb_is_refused() {
    let r = signed_with(|_| {});
    let strict = Pin {
        min_tcb: TcbVersion { snp: 9, ..TCB },
        ..pin()
    };
    let e = verify_with_anchors(&r, &strict, &certs(), &anchors()).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::TcbTooOld {
                component: "snp",
                got: 8,
                min: 9
            }
        ),
        "{e}"
    );
    // A report claiming a newer TCB than its VCEK was issued for.
    let newer = TcbVersion { snp: 20, ..TCB };
    let claims_newer = signed_with(|b| {
        b[field::REPORTED_TCB].copy_from_slice(&newer.to_raw(TcbLayout::Legacy).to_le_bytes())
    });
    let e = check(&claims_newer).unwrap_err();
    assert!(matches!(e, VerifyError::VcekTcbMismatch { .. }), "{e}");
}

#[test]
fn wrong_chain_is_refused() {
    let p = pki();
    let r = signed_with(|_| {});

    // An ARK that is not a trust anchor.
    let foreign_ark = Certs {
        ark: Some(p.evil.ark.clone()),
        ask: Some(p.evil.ask.clone()),
        ..certs()
    };
    let e = verify_with_anchors(&r, &pin(), &foreign_ark, &anchors()).unwrap_err();
    assert!(matches!(e, VerifyError::UntrustedArk { .. }), "{e}");

    // An ASK from another root, presented without an ARK.
    let foreign_ask = Certs {
        ark: None,
        ask: Some(p.evil.ask.clone()),
        ..certs()
    };
    let e = verify_with_anchors(&r, &pin(), &foreign_ask, &anchors()).unwrap_err();
    assert!(matches!(e, VerifyError::AskNotSignedByArk { .. }), "{e}");

    // A VCEK issued by another root's ASK, presented with the good chain.
    let rogue_vcek = vcek_for(&p.evil, &p.vcek_key, TCB, &CHIP_ID);
    let rogue = Certs {
        vcek: rogue_vcek,
        ..certs()
    };
    let e = verify_with_anchors(&r, &pin(), &rogue, &anchors()).unwrap_err();
    assert!(matches!(e, VerifyError::VcekNotSignedByAsk { .. }), "{e}");

    // A report signed by a key other than the VCEK's.
    let other_key = p384::ecdsa::SigningKey::random(&mut OsRng);
    let e = check(&sign(body(), &other_key)).unwrap_err();
    assert!(matches!(e, VerifyError::BadSignature(_)), "{e}");

    // A VCEK for another chip.
    let other_chip = Certs {
        vcek: vcek_for(&p.good, &p.vcek_key, TCB, &[0x77; 64]),
        ..certs()
    };
    let e = verify_with_anchors(&r, &pin(), &other_chip, &anchors()).unwrap_err();
    assert!(matches!(e, VerifyError::VcekChipMismatch), "{e}");

    // The test chain is not trusted by default: the AMD roots are.
    let e = verify(
        &r,
        &pin(),
        &Certs {
            ark: None,
            ask: None,
            ..certs()
        },
    )
    .unwrap_err();
    assert!(matches!(e, VerifyError::VcekNotSignedByAsk { .. }), "{e}");
    let e = verify(&r, &pin(), &certs()).unwrap_err();
    assert!(matches!(e, VerifyError::UntrustedArk { .. }), "{e}");
    let _ = &p.good.ark_key;
    let _ = &p.evil.ark_key;
}

#[test]
fn framing_errors() {
    let e = check(&[0u8; 100]).unwrap_err();
    assert!(matches!(e, VerifyError::Malformed(_)), "{e}");
    assert!(e.to_string().contains("1184"));
    let e = check(&signed_with(|b| {
        b[field::SIGNATURE_ALGO].copy_from_slice(&2u32.to_le_bytes())
    }))
    .unwrap_err();
    assert!(
        matches!(e, VerifyError::UnsupportedSignatureAlgorithm(2)),
        "{e}"
    );
    let e = check(&signed_with(|b| {
        b[field::KEY_INFO].copy_from_slice(&(1u32 << 2).to_le_bytes())
    }))
    .unwrap_err();
    assert!(matches!(e, VerifyError::NotVcekSigned(_)), "{e}");
    let e = check(&signed_with(|b| {
        b[field::VERSION].copy_from_slice(&1u32.to_le_bytes())
    }))
    .unwrap_err();
    assert!(matches!(e, VerifyError::UnsupportedVersion(1)), "{e}");
}

#[test]
fn amd_roots_are_built_in_and_verify() {
    use sev::certs::snp::Verifiable;
    let a = TrustAnchors::amd().expect("built-in roots");
    let names: Vec<_> = a.0.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Milan", "Genoa", "Turin"]);
    for t in &a.0 {
        (&t.ark, &t.ark).verify().expect("ARK self-signed");
        (&t.ark, &t.ask).verify().expect("ARK signs ASK");
    }
}
