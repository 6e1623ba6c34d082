//! GetCapability paging and content, TestParms.

mod common;
use common::*;
use ukvtpm_tpm_core::TpmRc;

fn getcap(e: &mut Tpm, cap: u32, prop: u32, count: u32) -> Vec<u8> {
    let mut b = cap.to_be_bytes().to_vec();
    b.extend_from_slice(&prop.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    e.execute(0, &cmd(0x17A, &b))
}

/// (moreData, entries as raw chunks of `size` bytes).
fn list(r: &[u8], cap: u32, size: usize) -> (bool, Vec<Vec<u8>>) {
    let mut rd = Rd(params(r));
    let more = rd.u8() == 1;
    assert_eq!(rd.u32(), cap);
    let n = rd.u32() as usize;
    let items = (0..n).map(|_| rd.bytes(size).to_vec()).collect();
    assert!(rd.0.is_empty());
    (more, items)
}

fn props(e: &mut Tpm, start: u32) -> Vec<(u32, u32)> {
    let r = getcap(e, 6, start, 127);
    let (more, items) = list(&r, 6, 8);
    assert!(!more);
    items
        .iter()
        .map(|i| {
            (
                u32::from_be_bytes(i[..4].try_into().unwrap()),
                u32::from_be_bytes(i[4..].try_into().unwrap()),
            )
        })
        .collect()
}

#[test]
fn commands_are_exactly_the_implemented_ones() {
    let mut e = started();
    let r = getcap(&mut e, 2, 0, 1000);
    let (more, items) = list(&r, 2, 4);
    assert!(!more);
    let attrs: Vec<u32> = items
        .iter()
        .map(|i| u32::from_be_bytes(i[..].try_into().unwrap()))
        .collect();
    let find = |cc: u32| attrs.iter().copied().find(|a| a & 0xFFFF == cc);
    // Every listed command answers something other than TPM_RC_COMMAND_CODE.
    for a in &attrs {
        let r = e.execute(0, &cmd(a & 0xFFFF, &[]));
        assert_ne!(rc(&r), TpmRc::COMMAND_CODE, "{a:#x}");
    }
    // PCR_Extend: 1 handle, nv. HashSequenceStart: rHandle. SequenceComplete: flushed.
    assert_eq!(find(0x182), Some(0x182 | 1 << 22 | 1 << 25));
    assert_eq!(find(0x186), Some(0x186 | 1 << 28));
    assert_eq!(find(0x13E), Some(0x13E | 1 << 24 | 1 << 25));
    assert_eq!(find(0x126), Some(0x126 | 1 << 22 | 1 << 23 | 1 << 25));
    // Paging: 3 at a time, starting after the last one seen.
    let mut seen = Vec::new();
    let mut next = 0;
    loop {
        let r = getcap(&mut e, 2, next, 3);
        let (more, items) = list(&r, 2, 4);
        assert!(items.len() <= 3);
        for i in &items {
            let a = u32::from_be_bytes(i[..].try_into().unwrap());
            seen.push(a);
            next = (a & 0xFFFF) + 1;
        }
        if !more {
            break;
        }
    }
    assert_eq!(seen, attrs);
    // TOTAL_COMMANDS agrees.
    let total = props(&mut e, 0x100)
        .into_iter()
        .find(|p| p.0 == 0x129)
        .unwrap()
        .1;
    assert_eq!(total as usize, attrs.len());
    // An unimplemented command (FieldUpgradeStart) is not listed.
    assert!(find(0x12F).is_none());
}

#[test]
fn properties() {
    let mut e = started();
    let fixed = props(&mut e, 0x100);
    assert!(fixed.iter().all(|p| (0x100..0x200).contains(&p.0)));
    let get = |v: &[(u32, u32)], p: u32| v.iter().find(|x| x.0 == p).map(|x| x.1);
    assert_eq!(get(&fixed, 0x100), Some(0x322E_3000));
    assert_eq!(get(&fixed, 0x105), Some(u32::from_be_bytes(*b"UKVT")));
    assert_eq!(get(&fixed, 0x112), Some(24));
    assert_eq!(get(&fixed, 0x113), Some(3));
    assert_eq!(get(&fixed, 0x11E), Some(4096));
    assert_eq!(get(&fixed, 0x120), Some(48));
    let var = props(&mut e, 0x200);
    assert_eq!(get(&var, 0x200), Some(1 << 10));
    assert_eq!(get(&var, 0x201).map(|v| v & 0xF), Some(0xF));
    assert_eq!(get(&var, 0x20F), Some(3));
    // Paging inside a group; count 0 → empty list with moreData.
    let r = getcap(&mut e, 6, 1, 2);
    let (more, items) = list(&r, 6, 8);
    assert!(more);
    assert_eq!(&items[0][..4], &0x100u32.to_be_bytes());
    let (more, items) = list(&getcap(&mut e, 6, 0x100, 0), 6, 8);
    assert!(more && items.is_empty());
    let (more, items) = list(&getcap(&mut e, 6, 0x300, 5), 6, 8);
    assert!(!more && items.is_empty());
    // ownerAuthSet follows HierarchyChangeAuth.
    e.execute(0, &auth_cmd(0x129, &[OWNER], &[b""], &tpm2b(b"pw")));
    let var = props(&mut e, 0x200);
    assert_eq!(get(&var, 0x200).map(|v| v & 1), Some(1));
}

#[test]
fn handles_pcrs_algs() {
    let mut e = started();
    let (more, items) = list(&getcap(&mut e, 1, 0, 100), 1, 4);
    assert!(!more);
    assert_eq!(items.len(), 24);
    let (more, items) = list(&getcap(&mut e, 1, 5, 3), 1, 4);
    assert!(more);
    assert_eq!(items[0], 5u32.to_be_bytes());
    let (_, items) = list(&getcap(&mut e, 1, 0x4000_0000, 100), 1, 4);
    assert!(items.contains(&OWNER.to_be_bytes().to_vec()));
    let (_, items) = list(&getcap(&mut e, 1, 0x8000_0000, 100), 1, 4);
    assert!(items.is_empty());
    assert_eq!(rc(&getcap(&mut e, 1, 0xFF00_0000, 8)), TpmRc(0x2CB));
    // PCR banks.
    let r = getcap(&mut e, 5, 0, 10);
    let mut rd = Rd(params(&r));
    rd.u8();
    rd.u32();
    assert_eq!(rd.u32(), 3);
    for alg in [SHA1, SHA256, SHA384] {
        assert_eq!(rd.u16(), alg);
        assert_eq!(rd.u8(), 3);
        assert_eq!(rd.bytes(3), &[0xFF; 3]);
    }
    assert_eq!(rc(&getcap(&mut e, 5, 1, 10)), TpmRc(0x2C4));
    // Algorithms include the hashes with the hash attribute.
    let (_, items) = list(&getcap(&mut e, 0, 0, 200), 0, 6);
    for alg in [SHA1, SHA256, SHA384] {
        let i = items
            .iter()
            .find(|i| i[..2] == alg.to_be_bytes())
            .expect("hash listed");
        assert_eq!(&i[2..], &4u32.to_be_bytes());
    }
    // Bad capability; policies; ACT.
    assert_eq!(rc(&getcap(&mut e, 0xB, 0, 1)), TpmRc(0x1C4));
    let (_, items) = list(&getcap(&mut e, 9, 0x4000_0000, 10), 9, 6);
    assert_eq!(items.len(), 4);
    assert_eq!(rc(&getcap(&mut e, 9, 0x8100_0000, 10)), TpmRc(0x2C4));
    assert_eq!(rc(&getcap(&mut e, 10, 0, 10)), TpmRc(0x2C4));
    let (_, items) = list(&getcap(&mut e, 10, 0x4000_0110, 10), 10, 12);
    assert!(items.is_empty());
}

#[test]
fn test_parms() {
    let mut e = started();
    // Unknown type.
    assert_eq!(
        rc(&e.execute(0, &cmd(0x18A, &0x0099u16.to_be_bytes()))),
        TpmRc(0x1CA)
    );
    // KEYEDHASH with HMAC-SHA256: fine; with an unknown hash: TPM_RC_HASH.
    let ok = [0x00, 0x08, 0x00, 0x05, 0x00, 0x0B];
    assert_eq!(rc(&e.execute(0, &cmd(0x18A, &ok))), TpmRc::SUCCESS);
    let bad = [0x00, 0x08, 0x00, 0x05, 0x00, 0x99];
    assert_eq!(rc(&e.execute(0, &cmd(0x18A, &bad))).base(), TpmRc::HASH);
    // Truncated and trailing.
    assert_eq!(rc(&e.execute(0, &cmd(0x18A, &ok[..4]))), TpmRc(0x1DA));
    let mut long = ok.to_vec();
    long.push(0);
    assert_eq!(rc(&e.execute(0, &cmd(0x18A, &long))), TpmRc::SIZE);
}
