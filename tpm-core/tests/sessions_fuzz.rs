//! Robustness of the session, NV and policy code: arbitrary parameter and authorization bytes
//! for every command this work added, with real sessions loaded, never panic.

mod sessions_util;

use proptest::prelude::*;
use sessions_util::*;

const CODES: &[u32] = &[
    0x11F, 0x122, 0x12A, 0x132, 0x133, 0x134, 0x135, 0x136, 0x137, 0x138, 0x13B, 0x140, 0x149,
    0x14D, 0x14E, 0x14F, 0x151, 0x160, 0x161, 0x162, 0x165, 0x169, 0x16A, 0x16B, 0x16C, 0x16D,
    0x16E, 0x16F, 0x170, 0x171, 0x172, 0x176, 0x17F, 0x180, 0x184, 0x187, 0x188, 0x189, 0x18C,
    0x18F, 0x190, 0x192,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]
    #[test]
    fn arbitrary_commands_never_panic(
        code in proptest::sample::select(CODES),
        handles in proptest::collection::vec(
            prop_oneof![
                Just(0x0300_0000u32), Just(0x0200_0001), Just(0x0150_0001), Just(OWNER),
                Just(PLATFORM), Just(NULL), Just(0x8000_0000), any::<u32>()
            ],
            0..4,
        ),
        session in prop_oneof![Just(PW), Just(0x0300_0000u32), Just(0x0200_0001)],
        attrs in any::<u8>(),
        nonce in proptest::collection::vec(any::<u8>(), 0..40),
        hmac in proptest::collection::vec(any::<u8>(), 0..40),
        params in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut e = started();
        let _policy = start_session(&mut e, SE_POLICY, (0x0006, 128), None);
        let _hmac = start_session(&mut e, SE_HMAC, (0x000A, 0x000B), None);
        let mut p = tpm2b(b"");
        p.extend_from_slice(&nv_public(0x0150_0001, 0x0006_0006, &[], 16));
        run_pw(&mut e, cc::NV_DEFINE_SPACE, &[OWNER], &[b""], &p);
        let mut area = session.to_be_bytes().to_vec();
        area.extend_from_slice(&tpm2b(&nonce));
        area.push(attrs & !0x18);
        area.extend_from_slice(&tpm2b(&hmac));
        let r = e.execute(0, &frame(code, &handles, Some(&area), &params));
        prop_assert!(r.len() >= 10);
        let r = e.execute(0, &frame(code, &handles, None, &params));
        prop_assert!(r.len() >= 10);
    }
}
