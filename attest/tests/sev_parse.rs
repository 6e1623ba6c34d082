//! The `no_std` report parser must agree with the `sev` crate's decoder byte for byte.

use sev::firmware::guest::AttestationReport as SevReport;
use sev::parser::ByteParser;
use ukvtpm_attest::report::{AttestationReport, REPORT_SIZE, field};
use ukvtpm_attest::tcb::TcbVersion;

/// A canonical report (reserved bytes zero) with every field filled with distinct bytes.
fn generated(version: u32, fam: u8, model: u8, seed: u8) -> [u8; REPORT_SIZE] {
    let mut b = [0u8; REPORT_SIZE];
    let mut x = u32::from(seed) | 0x1000;
    for v in b.iter_mut() {
        // xorshift: deterministic, well spread
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *v = x as u8;
    }
    for r in [
        field::RESERVED0,
        field::RESERVED1,
        field::RESERVED4,
        field::SIG_RESERVED,
    ] {
        b[r].fill(0);
    }
    b[field::RESERVED2] = 0;
    b[field::RESERVED3] = 0;
    b[field::VERSION].copy_from_slice(&version.to_le_bytes());
    // Policy bit 17 is reserved-one; sev's `u64::from(GuestPolicy)` always sets it.
    b[field::POLICY.start + 2] |= 0x02;
    b[field::CPUID_FAM_ID] = fam;
    b[field::CPUID_MOD_ID] = model;
    if version < 3 {
        b[0x188..0x18B].fill(0);
    }
    if version < 5 {
        b[field::LAUNCH_MIT_VECTOR].fill(0);
        b[field::CURRENT_MIT_VECTOR].fill(0);
    }
    let layout = AttestationReport::from_array(&b).tcb_layout();
    // TCB reserved bytes are dropped by sev's decoder: keep them zero (canonical report).
    for r in [
        field::CURRENT_TCB,
        field::REPORTED_TCB,
        field::COMMITTED_TCB,
        field::LAUNCH_TCB,
    ] {
        let raw = u64::from_le_bytes(b[r.clone()].try_into().expect("8 bytes"));
        let canon = TcbVersion::from_raw(raw, layout).to_raw(layout);
        b[r].copy_from_slice(&canon.to_le_bytes());
    }
    b
}

fn same_tcb(ours: TcbVersion, theirs: &sev::firmware::host::TcbVersion) {
    assert_eq!(ours.fmc, theirs.fmc);
    assert_eq!(ours.bootloader, theirs.bootloader);
    assert_eq!(ours.tee, theirs.tee);
    assert_eq!(ours.snp, theirs.snp);
    assert_eq!(ours.microcode, theirs.microcode);
}

fn compare(b: &[u8; REPORT_SIZE]) {
    let ours = AttestationReport::parse(b).expect("ours parses");
    let theirs = SevReport::from_bytes(b).expect("sev parses");
    assert_eq!(ours.version, theirs.version);
    assert_eq!(ours.guest_svn, theirs.guest_svn);
    assert_eq!(ours.policy.0, u64::from(theirs.policy));
    assert_eq!(ours.family_id, theirs.family_id);
    assert_eq!(ours.image_id, theirs.image_id);
    assert_eq!(ours.vmpl, theirs.vmpl);
    assert_eq!(ours.signature_algo, theirs.sig_algo);
    same_tcb(ours.current_tcb(), &theirs.current_tcb);
    assert_eq!(ours.platform_info, u64::from(theirs.plat_info));
    assert_eq!(ours.key_info, u32::from(theirs.key_info));
    assert_eq!(ours.report_data, theirs.report_data);
    assert_eq!(ours.measurement, theirs.measurement);
    assert_eq!(ours.host_data, theirs.host_data);
    assert_eq!(ours.id_key_digest, theirs.id_key_digest);
    assert_eq!(ours.author_key_digest, theirs.author_key_digest);
    assert_eq!(ours.report_id, theirs.report_id);
    assert_eq!(ours.report_id_ma, theirs.report_id_ma);
    same_tcb(ours.reported_tcb(), &theirs.reported_tcb);
    if ours.version >= 3 {
        assert_eq!(Some(ours.cpuid_fam_id), theirs.cpuid_fam_id);
        assert_eq!(Some(ours.cpuid_mod_id), theirs.cpuid_mod_id);
        assert_eq!(Some(ours.cpuid_step), theirs.cpuid_step);
    } else {
        assert_eq!(theirs.cpuid_fam_id, None);
    }
    assert_eq!(ours.chip_id, theirs.chip_id);
    same_tcb(ours.committed_tcb(), &theirs.committed_tcb);
    let v = |x: [u8; 3]| (x[2], x[1], x[0]);
    assert_eq!(
        v(ours.current_version),
        (
            theirs.current.major,
            theirs.current.minor,
            theirs.current.build
        )
    );
    assert_eq!(
        v(ours.committed_version),
        (
            theirs.committed.major,
            theirs.committed.minor,
            theirs.committed.build
        )
    );
    same_tcb(ours.launch_tcb(), &theirs.launch_tcb);
    if ours.version >= 5 {
        assert_eq!(Some(ours.launch_mit_vector), theirs.launch_mit_vector);
        assert_eq!(Some(ours.current_mit_vector), theirs.current_mit_vector);
    }
    assert_eq!(&ours.signature.r, theirs.signature.r());
    assert_eq!(&ours.signature.s, theirs.signature.s());

    // Byte for byte: both serializations give back the input.
    assert_eq!(&ours.to_bytes(), b);
    let sev_bytes = theirs.to_bytes().expect("sev encodes");
    assert_eq!(sev_bytes.as_ref(), &b[..]);
}

#[test]
fn v3_milan_genoa_turin() {
    for (seed, (fam, model)) in [(0x19, 0x01), (0x19, 0x11), (0x19, 0xA0), (0x1A, 0x02)]
        .into_iter()
        .enumerate()
    {
        compare(&generated(3, fam, model, seed as u8));
    }
}

#[test]
fn v5_genoa_and_turin() {
    compare(&generated(5, 0x19, 0x11, 9));
    compare(&generated(5, 0x1A, 0x00, 10));
}

#[test]
fn v2_genoa_like_and_turin_like_chip_ids() {
    let b = generated(2, 0, 0, 20);
    compare(&b);
    let mut t = b;
    t[field::CHIP_ID.start + 8..field::CHIP_ID.end].fill(0);
    // Turin TCB layout now applies: re-canonicalise the TCB fields.
    let layout = AttestationReport::from_array(&t).tcb_layout();
    for r in [
        field::CURRENT_TCB,
        field::REPORTED_TCB,
        field::COMMITTED_TCB,
        field::LAUNCH_TCB,
    ] {
        let raw = u64::from_le_bytes(t[r.clone()].try_into().expect("8 bytes"));
        let canon = TcbVersion::from_raw(raw, layout).to_raw(layout);
        t[r].copy_from_slice(&canon.to_le_bytes());
    }
    compare(&t);
}
