use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::vec::Vec;

use super::*;
use crate::snp::ghcb::{GhcbPage, field};
use crate::snp::testutil::{MODEL_GHCB_GPA, ModelHv};

#[test]
fn pvalidate_result_codes() {
    assert_eq!(pvalidate_result(0, false), Ok(()));
    assert_eq!(pvalidate_result(0, true), Err(PvalidateError::NoUpdate));
    assert_eq!(pvalidate_result(1, false), Err(PvalidateError::FailInput));
    assert_eq!(
        pvalidate_result(6, false),
        Err(PvalidateError::SizeMismatch)
    );
    assert_eq!(pvalidate_result(9, false), Err(PvalidateError::Other(9)));
}

#[test]
fn page_plan_uses_2m_pages_where_possible() {
    let plan: Vec<_> = page_plan(0x1F_E000..0x60_3000).collect();
    assert_eq!(plan[0], (0x1F_E000, PageSize::Size4K));
    assert_eq!(plan[1], (0x1F_F000, PageSize::Size4K));
    assert_eq!(plan[2], (0x20_0000, PageSize::Size2M));
    assert_eq!(plan[3], (0x40_0000, PageSize::Size2M));
    assert_eq!(plan[4], (0x60_0000, PageSize::Size4K));
    assert_eq!(plan.len(), 7);
    assert_eq!(page_plan(0x1000..0x1000).count(), 0);
}

#[test]
fn size_mismatch_falls_back_to_4k() {
    let mut calls = Vec::new();
    validate_range(0x20_0000..0x40_0000, true, |a, s, v| {
        calls.push((a, s, v));
        if s == PageSize::Size2M {
            Err(PvalidateError::SizeMismatch)
        } else {
            Ok(())
        }
    })
    .unwrap();
    assert_eq!(calls.len(), 1 + 512);
    assert_eq!(calls[1], (0x20_0000, PageSize::Size4K, true));
    assert_eq!(calls[512], (0x3F_F000, PageSize::Size4K, true));
    // Double validation is an error, not silently accepted.
    assert_eq!(
        validate_range(0x1000..0x2000, true, |_, _, _| Err(
            PvalidateError::NoUpdate
        )),
        Err(PvalidateError::NoUpdate)
    );
}

#[test]
fn unvalidated_ranges_subtract_the_metadata_ranges() {
    // RAM 1 MiB..16 MiB; SNP_SEC_MEM 8 MiB..8 MiB+36 KiB, secrets and CPUID pages after it,
    // and the early RAM the boot stub uses.
    let pre = [
        0x80_0000..0x80_9000,
        0x80_9000..0x80_B000,
        0x10_0000..0x20_0000,
    ];
    let out: Vec<_> = unvalidated_ranges(0x10_0000..0x100_0000, &pre).collect();
    assert_eq!(out, vec![0x20_0000..0x80_0000, 0x80_B000..0x100_0000]);
    let covered = 0..0x10000;
    let none: Vec<_> =
        unvalidated_ranges(0x1000..0x2000, core::slice::from_ref(&covered)).collect();
    assert!(none.is_empty());
    let all: Vec<_> = unvalidated_ranges(0x1000..0x3000, &[]).collect();
    assert_eq!(all, vec![0x1000..0x3000]);
}

#[test]
fn psc_entry_encoding() {
    // §4.1.6: bits 11:0 CUR_PAGE, 51:12 GFN, 55:52 operation, 56 page size.
    let e = PscEntry {
        cur_page: 0,
        gfn: 0x12345,
        state: PageState::Shared,
        large: true,
    };
    assert_eq!(e.encode(), 0x0120_0000_1234_5000);
    let e = PscEntry {
        cur_page: 3,
        gfn: 1,
        state: PageState::Private,
        large: false,
    };
    assert_eq!(e.encode(), 0x0010_0000_0000_1003);
    assert_eq!(
        PSC_MAX_ENTRIES,
        (crate::snp::ghcb::SHARED_BUFFER_SIZE - 8) / 8
    );
}

/// A hypervisor whose RMP is a map gfn -> shared, processing at most `per_exit` entries.
fn psc_model(per_exit: u16, rmp: Rc<RefCell<BTreeMap<u64, bool>>>) -> ModelHv {
    ModelHv::new(
        |_| 0,
        move |g: &mut GhcbPage| {
            assert_eq!(
                g.qword(field::SW_EXIT_CODE),
                crate::snp::ghcb::exit::SNP_PSC
            );
            assert_eq!(g.qword(field::SW_SCRATCH), MODEL_GHCB_GPA + 0x800);
            let buf = g.shared_buffer_mut();
            let (mut cur, end) = psc_progress(buf);
            let mut done = 0;
            while cur <= end && done < per_exit {
                let at = 8 + 8 * usize::from(cur);
                let e = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
                let gfn = (e >> 12) & ((1 << 40) - 1);
                let shared = (e >> 52) & 0xf == 2;
                let pages = if e & (1 << 56) != 0 { 512 } else { 1 };
                for p in 0..pages {
                    rmp.borrow_mut().insert(gfn + p, shared);
                }
                cur += 1;
                done += 1;
            }
            buf[0..2].copy_from_slice(&cur.to_le_bytes());
            g.set_qword(field::SW_EXIT_INFO_1, 0);
            g.set_qword(field::SW_EXIT_INFO_2, 0);
        },
    )
}

#[test]
fn psc_reissues_partial_requests_and_spans_many_exits() {
    let rmp = Rc::new(RefCell::new(BTreeMap::new()));
    let mut hv = psc_model(100, rmp.clone());
    // 300 small pages: two GHCB requests (253 + 47 entries), the first processed in 3 exits.
    page_state_change(&mut hv, 0x1000..0x1000 + 300 * 0x1000, PageState::Shared).unwrap();
    assert_eq!(rmp.borrow().len(), 300);
    assert!(rmp.borrow().values().all(|&s| s));
    assert_eq!(hv.exits.len(), 3 + 1);
    let (_, end) = psc_progress(hv.exits[0].shared_buffer());
    assert_eq!(end, 252);
}

#[test]
fn psc_refuses_a_stalled_hypervisor() {
    let rmp = Rc::new(RefCell::new(BTreeMap::new()));
    let mut hv = psc_model(0, rmp);
    assert!(matches!(
        page_state_change(&mut hv, 0x1000..0x3000, PageState::Shared),
        Err(GhcbError::PageStateChange(_))
    ));
    let mut hv = ModelHv::new(
        |_| 0,
        |g: &mut GhcbPage| g.set_qword(field::SW_EXIT_INFO_2, 5),
    );
    assert_eq!(
        page_state_change(&mut hv, 0x1000..0x2000, PageState::Private),
        Err(GhcbError::PageStateChange(5))
    );
}

#[test]
fn psc_over_the_msr_protocol() {
    let mut hv = ModelHv::new(|req| if req & 0xfff == 0x014 { 0x015 } else { 0 }, |_| {});
    page_state_change_msr(&mut hv, 0x7000, PageState::Shared).unwrap();
    assert_eq!(hv.msr_log, [0x0020_0000_0000_7014]);
    let mut hv = ModelHv::new(|_| 0x0000_0001_0000_0015, |_| {});
    assert_eq!(
        page_state_change_msr(&mut hv, 0x7000, PageState::Shared),
        Err(GhcbError::PageStateChange(1))
    );
}

#[derive(Default)]
struct MemModel {
    log: Vec<String>,
}

impl SnpMemory for MemModel {
    fn set_encrypted(&mut self, range: Range<u64>, encrypted: bool) {
        self.log.push(format!(
            "cbit {:#x}..{:#x} {encrypted}",
            range.start, range.end
        ));
    }
    fn pvalidate(
        &mut self,
        addr: u64,
        size: PageSize,
        validate: bool,
    ) -> Result<(), PvalidateError> {
        self.log
            .push(format!("pvalidate {addr:#x} {size:?} {validate}"));
        Ok(())
    }
}

#[test]
fn make_shared_and_private_order() {
    let rmp = Rc::new(RefCell::new(BTreeMap::new()));
    let mut hv = psc_model(253, rmp.clone());
    let mut mem = MemModel::default();
    make_shared(&mut hv, &mut mem, 0x10_0000..0x10_2000).unwrap();
    assert_eq!(
        mem.log,
        [
            "pvalidate 0x100000 Size4K false",
            "pvalidate 0x101000 Size4K false",
            "cbit 0x100000..0x102000 false"
        ]
    );
    assert_eq!(rmp.borrow().get(&0x100), Some(&true));
    mem.log.clear();
    make_private(&mut hv, &mut mem, 0x10_0000..0x10_1000).unwrap();
    assert_eq!(
        mem.log,
        [
            "cbit 0x100000..0x101000 true",
            "pvalidate 0x100000 Size4K true"
        ]
    );
    assert_eq!(rmp.borrow().get(&0x100), Some(&false));
    assert_eq!(
        make_shared(&mut hv, &mut mem, 0x10_0800..0x10_1000),
        Err(ShareError::Alignment)
    );
    assert_eq!(pte_with_c_bit(0x1003, 1 << 51, true), 0x0008_0000_0000_1003);
    assert_eq!(
        pte_with_c_bit(0x0008_0000_0000_1003, 1 << 51, false),
        0x1003
    );
    assert_eq!(pte_with_c_bit(0x1003, 0, true), 0x1003);
}

#[test]
fn accept_memory_goes_private_then_validates_in_2m_and_4k_pages() {
    let rmp = Rc::new(RefCell::new(BTreeMap::new()));
    // The hypervisor thinks the range is shared (never touched by the guest).
    for gfn in 0x1ff..0x602 {
        rmp.borrow_mut().insert(gfn, true);
    }
    let mut hv = psc_model(2, rmp.clone());
    let mut mem = MemModel::default();
    accept_memory(&mut hv, &mut mem, 0x1F_F000..0x60_2000).unwrap();
    assert_eq!(
        mem.log,
        [
            "pvalidate 0x1ff000 Size4K true",
            "pvalidate 0x200000 Size2M true",
            "pvalidate 0x400000 Size2M true",
            "pvalidate 0x600000 Size4K true",
            "pvalidate 0x601000 Size4K true",
        ]
    );
    // No C-bit change, and every page private in the model RMP.
    assert!(!mem.log.iter().any(|l| l.starts_with("cbit")));
    assert!(rmp.borrow().range(0x1ff..0x602).all(|(_, shared)| !shared));
    assert_eq!(
        accept_memory(&mut hv, &mut mem, 0x1000..0x1800),
        Err(ShareError::Alignment)
    );
}

/// PVALIDATE against an RMP model: frames in `large` are one validated 2 MiB entry, every
/// other page a 4 KiB entry with its validated bit in `small`.
#[derive(Default)]
struct RmpMem {
    large: std::collections::BTreeSet<u64>,
    small: BTreeMap<u64, bool>,
    log: Vec<String>,
}

impl SnpMemory for RmpMem {
    fn set_encrypted(&mut self, range: Range<u64>, encrypted: bool) {
        self.log.push(format!(
            "cbit {:#x}..{:#x} {encrypted}",
            range.start, range.end
        ));
    }
    fn pvalidate(
        &mut self,
        addr: u64,
        size: PageSize,
        validate: bool,
    ) -> Result<(), PvalidateError> {
        self.log
            .push(format!("pvalidate {addr:#x} {size:?} {validate}"));
        let frame = addr & !(PAGE_2M - 1);
        if self.large.contains(&frame) != (size == PageSize::Size2M) {
            return Err(PvalidateError::SizeMismatch);
        }
        if size == PageSize::Size2M {
            return Ok(()); // not tracked further
        }
        let old = self.small.insert(addr, validate).unwrap_or(false);
        if old == validate {
            return Err(PvalidateError::NoUpdate);
        }
        Ok(())
    }
}

#[test]
fn sharing_one_page_of_a_2m_validated_frame_asks_for_psmash() {
    use std::rc::Rc;
    let psc_ops = Rc::new(RefCell::new(Vec::new()));
    let ops = psc_ops.clone();
    let mem = Rc::new(RefCell::new(RmpMem::default()));
    mem.borrow_mut().large.insert(0x40_0000);
    let rmp = mem.clone();
    let mut hv = ModelHv::new(
        |_| 0,
        move |g: &mut GhcbPage| {
            let buf = g.shared_buffer_mut();
            let (cur, end) = psc_progress(buf);
            for i in cur..=end {
                let at = 8 + 8 * usize::from(i);
                let e = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
                let (gfn, op, large) = ((e >> 12) & ((1 << 40) - 1), (e >> 52) & 0xf, e >> 56 & 1);
                ops.borrow_mut().push((gfn << 12, op, large));
                if op == 3 {
                    // PSMASH: 512 validated 4 KiB entries.
                    let frame = gfn << 12;
                    let mut m = rmp.borrow_mut();
                    m.large.remove(&frame);
                    for p in 0..512 {
                        m.small.insert(frame + p * 0x1000, true);
                    }
                }
            }
            buf[0..2].copy_from_slice(&(end + 1).to_le_bytes());
            g.set_qword(field::SW_EXIT_INFO_1, 0);
            g.set_qword(field::SW_EXIT_INFO_2, 0);
        },
    );
    struct Shim(Rc<RefCell<RmpMem>>);
    impl SnpMemory for Shim {
        fn set_encrypted(&mut self, r: Range<u64>, e: bool) {
            self.0.borrow_mut().set_encrypted(r, e)
        }
        fn pvalidate(&mut self, a: u64, s: PageSize, v: bool) -> Result<(), PvalidateError> {
            self.0.borrow_mut().pvalidate(a, s, v)
        }
    }
    make_shared(&mut hv, &mut Shim(mem.clone()), 0x40_3000..0x40_5000).unwrap();
    assert_eq!(
        *psc_ops.borrow(),
        [
            (0x40_0000, 3, 1), // PSMASH the 2 MiB entry
            (0x40_3000, 2, 0), // then both pages shared
            (0x40_4000, 2, 0),
        ]
    );
    assert_eq!(
        mem.borrow().log,
        [
            "pvalidate 0x403000 Size4K false", // SIZEMISMATCH
            "pvalidate 0x403000 Size4K false",
            "pvalidate 0x404000 Size4K false", // already split: no second PSMASH
            "cbit 0x403000..0x405000 false",
        ]
    );
    assert_eq!(mem.borrow().small.get(&0x40_3000), Some(&false));
    assert_eq!(mem.borrow().small.get(&0x40_5000), Some(&true));
}
