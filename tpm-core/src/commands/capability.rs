//! Part 3, 30 "Capability Commands": TPM2_GetCapability and TPM2_TestParms.
//!
//! Every list is built from the engine's real tables and state: commands from the
//! dispatcher, algorithms from [`algorithms`] (one table, gated on the commands that use each
//! algorithm, so it grows by itself as commands land), handles from the object, session, NV
//! and persistent stores. Paging follows the reference implementation: a list starts at the
//! first entry ≥ `property`, holds at most `propertyCount` entries (capped at what fits in
//! MAX_CAP_BUFFER), and `moreData` is YES exactly when another entry exists after the last
//! one returned. tpm2-tools loops on `moreData`.

use alloc::vec::Vec;

use crate::commands::{CommandDef, Dispatch, Request, Response, cc};
use crate::context::Ctx;
use crate::crypto::hash::MAX_DIGEST_SIZE;
use crate::engine::{MAX_COMMAND_SIZE, MAX_RESPONSE_SIZE};
use crate::handle::{Handle, HandleType};
use crate::marshal::{Reader, Writer};
use crate::rc::{TpmRc, TpmResult};
use crate::state::nv::{MAX_NV_BUFFER_SIZE, MAX_NV_INDEX_SIZE, NV_MEMORY_SIZE, NvType};
use crate::state::objects::MAX_LOADED_OBJECTS;
use crate::state::pcr::{PCR_COUNT, PCR_SELECT_MIN, pcr_attr};
use crate::state::persistent::MAX_PERSISTENT;
use crate::state::sessions::{MAX_ACTIVE_SESSIONS, MAX_LOADED_SESSIONS};

pub const COMMANDS: &[CommandDef] = &[
    CommandDef {
        cc: cc::GET_CAPABILITY,
        handles: &[],
        response_handle: false,
        run: get_capability,
    },
    CommandDef {
        cc: cc::TEST_PARMS,
        handles: &[],
        response_handle: false,
        run: test_parms,
    },
];

/// TPM_CAP values (Part 2, 6.12).
pub mod cap {
    pub const ALGS: u32 = 0x0000_0000;
    pub const HANDLES: u32 = 0x0000_0001;
    pub const COMMANDS: u32 = 0x0000_0002;
    pub const PP_COMMANDS: u32 = 0x0000_0003;
    pub const AUDIT_COMMANDS: u32 = 0x0000_0004;
    pub const PCRS: u32 = 0x0000_0005;
    pub const TPM_PROPERTIES: u32 = 0x0000_0006;
    pub const PCR_PROPERTIES: u32 = 0x0000_0007;
    pub const ECC_CURVES: u32 = 0x0000_0008;
    pub const AUTH_POLICIES: u32 = 0x0000_0009;
    pub const ACT: u32 = 0x0000_000A;
}

/// MAX_CAP_BUFFER (TPM_PT_MAX_CAP_BUFFER): the capability data of one response fits in it;
/// the per-list maxima below are (MAX_CAP_BUFFER - capability - count) / entry size.
const MAX_CAP_BUFFER: u32 = 1024;
const MAX_CAP_DATA: u32 = MAX_CAP_BUFFER - 4 - 4;
const MAX_CAP_ALGS: u32 = MAX_CAP_DATA / 6;
const MAX_CAP_HANDLES: u32 = MAX_CAP_DATA / 4;
const MAX_CAP_CC: u32 = MAX_CAP_DATA / 4;
const MAX_TPM_PROPERTIES: u32 = MAX_CAP_DATA / 8;
const MAX_PCR_PROPERTIES: u32 = MAX_CAP_DATA / 8;
const MAX_ECC_CURVES: u32 = MAX_CAP_DATA / 2;
const MAX_TAGGED_POLICIES: u32 = MAX_CAP_DATA / (4 + 2 + 64);

/// TPMA_ALGORITHM bits (Part 2, 8.2).
pub mod alg_attr {
    pub const ASYMMETRIC: u32 = 1 << 0;
    pub const SYMMETRIC: u32 = 1 << 1;
    pub const HASH: u32 = 1 << 2;
    pub const OBJECT: u32 = 1 << 3;
    pub const SIGNING: u32 = 1 << 8;
    pub const ENCRYPTING: u32 = 1 << 9;
    pub const METHOD: u32 = 1 << 10;
}

/// One algorithm the engine may implement: its TPM_ALG_ID, TPMA_ALGORITHM, and the commands
/// that make it usable — it is reported only when at least one of them is implemented (an
/// empty list means "always").
#[derive(Debug)]
pub struct AlgEntry {
    pub alg: u16,
    pub attributes: u32,
    pub needs: &'static [u32],
}

/// Commands that create or load objects: an object type or parameter is implemented when
/// these exist.
const OBJECTS: &[u32] = &[cc::CREATE_PRIMARY, cc::CREATE, cc::LOAD_EXTERNAL];
const SIGN: &[u32] = &[cc::SIGN, cc::VERIFY_SIGNATURE];
const RSA_ENC: &[u32] = &[cc::RSA_ENCRYPT, cc::RSA_DECRYPT];
const ECDH_CMDS: &[u32] = &[cc::ECDH_KEY_GEN, cc::ECDH_ZGEN];
const SYM_CMDS: &[u32] = &[cc::ENCRYPT_DECRYPT, cc::ENCRYPT_DECRYPT2];

/// THE algorithm table (TPM_CAP_ALGS), in TPM_ALG_ID order. Add a line when the engine
/// implements a new algorithm; gate it on the commands that use it.
pub fn algorithms() -> &'static [AlgEntry] {
    use alg_attr::*;
    const fn e(alg: u16, attributes: u32, needs: &'static [u32]) -> AlgEntry {
        AlgEntry {
            alg,
            attributes,
            needs,
        }
    }
    const TABLE: &[AlgEntry] = &[
        e(0x0001, ASYMMETRIC | OBJECT, OBJECTS),                // RSA
        e(0x0004, HASH, &[]),                                   // SHA1
        e(0x0005, HASH | SIGNING, &[cc::HMAC, cc::HMAC_START]), // HMAC
        e(0x0006, SYMMETRIC, OBJECTS),                          // AES
        e(0x0007, HASH | METHOD, RSA_ENC),                      // MGF1
        e(0x0008, HASH | OBJECT | SIGNING | ENCRYPTING, OBJECTS), // KEYEDHASH
        e(0x000A, SYMMETRIC | HASH, OBJECTS),                   // XOR
        e(0x000B, HASH, &[]),                                   // SHA256
        e(0x000C, HASH, &[]),                                   // SHA384
        e(0x0014, ASYMMETRIC | SIGNING, SIGN),                  // RSASSA
        e(0x0015, ASYMMETRIC | ENCRYPTING, RSA_ENC),            // RSAES
        e(0x0016, ASYMMETRIC | SIGNING, SIGN),                  // RSAPSS
        e(0x0017, ASYMMETRIC | ENCRYPTING, RSA_ENC),            // OAEP
        e(0x0018, ASYMMETRIC | SIGNING, SIGN),                  // ECDSA
        e(0x0019, ASYMMETRIC | METHOD, ECDH_CMDS),              // ECDH
        e(0x001A, ASYMMETRIC | SIGNING, &[cc::COMMIT]),         // ECDAA
        e(0x0020, HASH | METHOD, ECDH_CMDS),                    // KDF1_SP800_56A
        e(0x0022, HASH | METHOD, OBJECTS),                      // KDF1_SP800_108
        e(0x0023, ASYMMETRIC | OBJECT, OBJECTS),                // ECC
        e(0x0025, OBJECT, OBJECTS),                             // SYMCIPHER
        e(0x0040, SYMMETRIC | ENCRYPTING, SYM_CMDS),            // CTR
        e(0x0041, SYMMETRIC | ENCRYPTING, SYM_CMDS),            // OFB
        e(0x0042, SYMMETRIC | ENCRYPTING, SYM_CMDS),            // CBC
        e(0x0043, SYMMETRIC | ENCRYPTING, OBJECTS),             // CFB
        e(0x0044, SYMMETRIC | ENCRYPTING, SYM_CMDS),            // ECB
    ];
    TABLE
}

/// The algorithms implemented now (given the implemented commands).
pub fn implemented_algorithms(dispatch: &Dispatch) -> impl Iterator<Item = &'static AlgEntry> + '_ {
    algorithms()
        .iter()
        .filter(|a| a.needs.is_empty() || a.needs.iter().any(|&c| dispatch.get(c).is_some()))
}

/// TPM_ECC_CURVE values implemented (P-256, P-384), when ECC keys are.
fn ecc_curves(dispatch: &Dispatch) -> &'static [u16] {
    if implemented_algorithms(dispatch).any(|a| a.alg == 0x0023) {
        &[0x0003, 0x0004]
    } else {
        &[]
    }
}

/// TPMA_CC bits a CommandDef cannot know (Part 2, 8.9): nv (may write NV), extensive (may
/// flush many objects), flushed (flushes its object handle). These are properties of the
/// command as Part 3 defines it; the values are the reference implementation's table.
pub(crate) fn cc_flags(code: u32) -> u32 {
    const NV: u32 = 1 << 22;
    const EXTENSIVE: u32 = 1 << 23;
    const FLUSHED: u32 = 1 << 24;
    match code {
        0x121 | 0x124 | 0x125 | 0x126 => NV | EXTENSIVE,
        0x13E => FLUSHED,
        0x185 => NV | FLUSHED,
        0x11F..=0x12E | 0x132..=0x13D | 0x13F | 0x140 | 0x142..=0x146 | 0x14F | 0x182 => NV,
        _ => 0,
    }
}

/// TPMA_CC.nv: the command may write NV (Part 2, 8.9).
pub(crate) fn may_write_nv(code: u32) -> bool {
    cc_flags(code) & (1 << 22) != 0
}

/// TPMA_CC of an implemented command: index, flags, cHandles, rHandle.
pub fn tpma_cc(def: &CommandDef) -> u32 {
    (def.cc & 0xFFFF)
        | cc_flags(def.cc)
        | ((def.handles.len() as u32 & 0x7) << 25)
        | (u32::from(def.response_handle) << 28)
}

/// Builds a paged list: `items` ascending by key, starting at the first ≥ `start`; at most
/// `count` (capped at `max`). Returns (entries, moreData).
fn page<T: Copy>(
    items: impl Iterator<Item = (u32, T)>,
    start: u32,
    count: u32,
    max: u32,
) -> (Vec<T>, bool) {
    let limit = count.min(max) as usize;
    let mut out = Vec::new();
    for (_, item) in items.filter(|(k, _)| *k >= start) {
        if out.len() >= limit {
            return (out, true);
        }
        out.push(item);
    }
    (out, false)
}

/// The TPM properties of one group (PT_FIXED 0x100.. or PT_VAR 0x200..), ascending.
fn tpm_properties(ctx: &Ctx<'_>, dispatch: &Dispatch, var: bool) -> Vec<(u32, u32)> {
    let ps = ctx.ps();
    let vs = &ctx.tpm.vs;
    if !var {
        let total = dispatch.codes().count() as u32;
        let four = |s: &[u8; 4]| u32::from_be_bytes(*s);
        return alloc::vec![
            (0x100, four(b"2.0\0")),                // FAMILY_INDICATOR
            (0x101, 0),                             // LEVEL
            (0x102, SPEC_REVISION),                 // REVISION (1.59 → 159)
            (0x103, SPEC_DAY_OF_YEAR),              // DAY_OF_YEAR
            (0x104, SPEC_YEAR),                     // YEAR
            (0x105, four(MANUFACTURER)),            // MANUFACTURER
            (0x106, four(b"ukvT")),                 // VENDOR_STRING_1
            (0x107, four(b"PM\0\0")),               // VENDOR_STRING_2
            (0x108, 0),                             // VENDOR_STRING_3
            (0x109, 0),                             // VENDOR_STRING_4
            (0x10A, 0),                             // VENDOR_TPM_TYPE
            (0x10B, FIRMWARE_VERSION_1),            // FIRMWARE_VERSION_1
            (0x10C, FIRMWARE_VERSION_2),            // FIRMWARE_VERSION_2
            (0x10D, 1024),                          // INPUT_BUFFER
            (0x10E, MAX_LOADED_OBJECTS as u32),     // HR_TRANSIENT_MIN
            (0x10F, MAX_PERSISTENT as u32),         // HR_PERSISTENT_MIN
            (0x110, MAX_LOADED_SESSIONS as u32),    // HR_LOADED_MIN
            (0x111, MAX_ACTIVE_SESSIONS as u32),    // ACTIVE_SESSIONS_MAX
            (0x112, PCR_COUNT as u32),              // PCR_COUNT
            (0x113, PCR_SELECT_MIN as u32),         // PCR_SELECT_MIN
            (0x114, 0xFFFF),                        // CONTEXT_GAP_MAX
            (0x116, 0),                             // NV_COUNTERS_MAX (no separate limit)
            (0x117, u32::from(MAX_NV_INDEX_SIZE)),  // NV_INDEX_MAX
            (0x118, 0x6),                           // MEMORY: sharedNV | objectCopiedToRam
            (0x119, 1 << 22),                       // CLOCK_UPDATE (ms between NV clock writes)
            (0x11A, 0x000B),                        // CONTEXT_HASH: SHA256
            (0x11B, 0x0006),                        // CONTEXT_SYM: AES
            (0x11C, 256),                           // CONTEXT_SYM_SIZE
            (0x11D, 0xFF),                          // ORDERLY_COUNT
            (0x11E, MAX_COMMAND_SIZE as u32),       // MAX_COMMAND_SIZE
            (0x11F, MAX_RESPONSE_SIZE as u32),      // MAX_RESPONSE_SIZE
            (0x120, MAX_DIGEST_SIZE as u32),        // MAX_DIGEST
            (0x121, 2048),                          // MAX_OBJECT_CONTEXT
            (0x122, 512),                           // MAX_SESSION_CONTEXT
            (0x123, 1),                             // PS_FAMILY_INDICATOR (PC Client)
            (0x124, 0),                             // PS_LEVEL
            (0x125, 0x104),                         // PS_REVISION (1.04)
            (0x126, 0),                             // PS_DAY_OF_YEAR
            (0x127, 0),                             // PS_YEAR
            (0x128, 128),                           // SPLIT_MAX
            (0x129, total),                         // TOTAL_COMMANDS
            (0x12A, total),                         // LIBRARY_COMMANDS
            (0x12B, 0),                             // VENDOR_COMMANDS
            (0x12C, u32::from(MAX_NV_BUFFER_SIZE)), // NV_BUFFER_MAX
            (0x12D, 0),                             // MODES
            (0x12E, MAX_CAP_BUFFER),                // MAX_CAP_BUFFER
        ];
    }
    let da = &ps.da;
    let audit_counter = ps.command_audit.counter;
    let permanent = u32::from(!ps.owner_auth.is_empty())
        | u32::from(!ps.endorsement_auth.is_empty()) << 1
        | u32::from(!ps.lockout_auth.is_empty()) << 2
        | u32::from(ps.disable_clear) << 8
        | u32::from(da.failed_tries >= da.max_tries) << 9
        | 1 << 10; // tpmGeneratedEPS
    let startup_clear = u32::from(vs.ph_enable)
        | u32::from(vs.sh_enable) << 1
        | u32::from(vs.eh_enable) << 2
        | u32::from(vs.ph_enable_nv) << 3
        | u32::from(vs.clock_safe) << 31; // orderly
    let nv_indices = ps.nv.indices.len() as u32;
    let counters = ps
        .nv
        .indices
        .values()
        .filter(|ix| ix.nv_type() == NvType::Counter)
        .count() as u32;
    let loaded = vs.objects.len() as u32;
    let sessions_active = vs.sessions.active_count() as u32;
    let persistent = ps.persistent.len() as u32;
    // An NV index costs at least ~64 octets of the NV budget in this implementation.
    let nv_free = (NV_MEMORY_SIZE.saturating_sub(ps.nv.used()) / 64) as u32;
    alloc::vec![
        (0x200, permanent),                                          // PERMANENT
        (0x201, startup_clear),                                      // STARTUP_CLEAR
        (0x202, nv_indices),                                         // HR_NV_INDEX
        (0x203, loaded),                                             // HR_LOADED
        (0x204, (MAX_LOADED_OBJECTS as u32).saturating_sub(loaded)), // HR_LOADED_AVAIL
        (0x205, sessions_active),                                    // HR_ACTIVE
        (
            0x206,
            (MAX_ACTIVE_SESSIONS as u32).saturating_sub(sessions_active)
        ), // HR_ACTIVE_AVAIL
        (0x207, (MAX_LOADED_OBJECTS as u32).saturating_sub(loaded)), // HR_TRANSIENT_AVAIL
        (0x208, persistent),                                         // HR_PERSISTENT
        (0x209, (MAX_PERSISTENT as u32).saturating_sub(persistent)), // HR_PERSISTENT_AVAIL
        (0x20A, counters),                                           // NV_COUNTERS
        (0x20B, nv_free),                                            // NV_COUNTERS_AVAIL
        (0x20C, ps.algorithm_set),                                   // ALGORITHM_SET
        (0x20D, ecc_curves(dispatch).len() as u32),                  // LOADED_CURVES
        (0x20E, da.failed_tries),                                    // LOCKOUT_COUNTER
        (0x20F, da.max_tries),                                       // MAX_AUTH_FAIL
        (0x210, da.recovery_time),                                   // LOCKOUT_INTERVAL
        (0x211, da.lockout_recovery),                                // LOCKOUT_RECOVERY
        (0x212, 0),                                                  // NV_WRITE_RECOVERY
        // Part 2, 6.13 TPM_PT_AUDIT_COUNTER_0/1: the high and low 32 bits of auditCounter
        // (tpm2-tools' commandaudit.sh reads _1 after SetCommandCodeAuditStatus).
        (0x213, (audit_counter >> 32) as u32), // AUDIT_COUNTER_0
        (0x214, audit_counter as u32),         // AUDIT_COUNTER_1
    ]
}

/// TPM_PT_MANUFACTURER: a four-character vendor ID ("UKVT", not a TCG-registered one).
pub const MANUFACTURER: &[u8; 4] = b"UKVT";
/// Spec version implemented: TPM 2.0 Library 1.59 (revision × 100), dated 2019-11-08.
pub const SPEC_REVISION: u32 = 159;
pub const SPEC_DAY_OF_YEAR: u32 = 312;
pub const SPEC_YEAR: u32 = 2019;
/// TPM_PT_FIRMWARE_VERSION_1/2: crate version major.minor and patch (matches
/// `object::creation::FIRMWARE_VERSION`).
pub const FIRMWARE_VERSION_1: u32 = 0x0001_0000;
pub const FIRMWARE_VERSION_2: u32 = 0x0000_0000;

/// Handles of one TPM_HT range, ascending.
fn handles_of(ctx: &Ctx<'_>, ht: HandleType) -> Vec<u32> {
    let vs = &ctx.tpm.vs;
    let ps = ctx.ps();
    let mut v: Vec<u32> = match ht {
        HandleType::Pcr => (0..PCR_COUNT as u32).collect(),
        HandleType::NvIndex => ps.nv.handles().map(|h| h.0).collect(),
        HandleType::HmacSession => vs.sessions.loaded_handles().map(|h| h.0).collect(),
        HandleType::PolicySession => vs.sessions.saved_handles().map(|h| h.0).collect(),
        HandleType::Permanent => alloc::vec![
            Handle::OWNER.0,
            Handle::NULL.0,
            Handle::PASSWORD.0,
            Handle::LOCKOUT.0,
            Handle::ENDORSEMENT.0,
            Handle::PLATFORM.0,
            Handle::PLATFORM_NV.0,
        ],
        HandleType::Transient => vs.objects.handles().map(|h| h.0).collect(),
        HandleType::Persistent => ps.persistent.handles().map(|h| h.0).collect(),
        HandleType::Other(_) => Vec::new(),
    };
    v.sort_unstable();
    v
}

/// TPML_PCR_SELECTION entries of TPM_CAP_PCR_PROPERTIES: (TPM_PT_PCR tag, PCR bitmap).
fn pcr_properties() -> Vec<(u32, u32)> {
    let mask = |f: &dyn Fn(usize) -> bool| -> u32 {
        (0..PCR_COUNT).filter(|&i| f(i)).fold(0, |m, i| m | 1 << i)
    };
    let mut out = alloc::vec![(0x00, mask(&|i| pcr_attr(i).state_save))];
    for loc in 0..5u8 {
        let bit = 1u8 << loc;
        out.push((
            1 + 2 * u32::from(loc),
            mask(&|i| pcr_attr(i).extend_locality & bit != 0),
        ));
        out.push((
            2 + 2 * u32::from(loc),
            mask(&|i| pcr_attr(i).reset_locality & bit != 0),
        ));
    }
    out.push((0x11, mask(&|i| crate::commands::pcr::no_increment(i)))); // NO_INCREMENT
    out.push((0x12, mask(&|i| (17..=22).contains(&i)))); // DRTM_RESET
    let group = mask(&crate::state::pcr::in_pcr_group);
    out.push((0x13, group)); // POLICY: PCRs in a policy group
    out.push((0x14, group)); // AUTH: PCRs in an authorization group
    out
}

/// Part 3, 30.2 TPM2_GetCapability.
#[doc(alias = "TPM2_GetCapability")]
fn get_capability(ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    let mut r = Reader::params(req.params);
    let capability = r.u32()?;
    if capability > cap::ACT {
        return Err(r.err(TpmRc::VALUE));
    }
    let property = r.u32()?;
    let count = r.u32()?;
    r.finish()?;
    let dispatch = Dispatch::new();
    let mut w = Writer::with_capacity(64);
    let mut body = Writer::with_capacity(64);
    let more = match capability {
        cap::ALGS => {
            let algs = implemented_algorithms(&dispatch).map(|a| (u32::from(a.alg), a));
            let (list, more) = page(algs, property & 0xFFFF, count, MAX_CAP_ALGS);
            body.u32(list.len() as u32);
            for a in list {
                body.u16(a.alg).u32(a.attributes);
            }
            more
        }
        cap::HANDLES => {
            let ht = Handle(property).kind();
            // Only the handle types a TPM lists; the request's property names the range.
            if matches!(ht, HandleType::Other(_)) {
                return Err(TpmRc::HANDLE.param(2));
            }
            let list = handles_of(ctx, ht);
            // Sessions are listed by slot whatever their kind (HMAC 0x02.., policy 0x03..);
            // other ranges by handle.
            let session = matches!(ht, HandleType::HmacSession | HandleType::PolicySession);
            let key = |h: u32| if session { h & 0x00FF_FFFF } else { h };
            let (list, more) = page(
                list.into_iter().map(|h| (key(h), h)),
                key(property),
                count,
                MAX_CAP_HANDLES,
            );
            body.u32(list.len() as u32);
            for h in list {
                body.u32(h);
            }
            more
        }
        cap::COMMANDS => {
            let cmds = dispatch.codes().map(|d| (d.cc, tpma_cc(d)));
            // Vendor commands (V bit) would come after; this TPM has none.
            let (list, more) = page(cmds, property, count, MAX_CAP_CC);
            body.u32(list.len() as u32);
            for a in list {
                body.u32(a);
            }
            more
        }
        cap::AUDIT_COMMANDS => {
            // TPML_CC of the audited commands (TPM2_SetCommandCodeAuditStatus).
            let audited = ctx.ps().command_audit.commands.clone();
            let (list, more) = page(
                audited.into_iter().map(|c| (c, c)),
                property,
                count,
                MAX_CAP_CC,
            );
            body.u32(list.len() as u32);
            for c in list {
                body.u32(c);
            }
            more
        }
        cap::PP_COMMANDS => {
            // Only TPM2_PP_Commands itself requires physical presence (the list cannot
            // change without it); reported from `property` on, as the reference does.
            let list: Vec<u32> = [cc::PP_COMMANDS]
                .into_iter()
                .filter(|&c| c >= property && dispatch.get(c).is_some())
                .take(count as usize)
                .collect();
            body.u32(list.len() as u32);
            for c in list {
                body.u32(c);
            }
            false
        }
        cap::PCRS => {
            if property != 0 {
                return Err(TpmRc::VALUE.param(2));
            }
            if count == 0 {
                body.u32(0);
                true
            } else {
                let banks = &ctx.tpm.vs.pcrs.banks;
                body.u32(banks.len() as u32);
                for b in banks {
                    body.u16(b.alg.alg_id()).u8(PCR_SELECT_MIN as u8);
                    body.bytes(&b.allocated.to_le_bytes()[..PCR_SELECT_MIN]);
                }
                false
            }
        }
        cap::TPM_PROPERTIES => {
            let start = property.max(0x100);
            let group = if start < 0x200 {
                tpm_properties(ctx, &dispatch, false)
            } else {
                tpm_properties(ctx, &dispatch, true)
            };
            let (list, more) = page(
                group.into_iter().map(|p| (p.0, p)),
                start,
                count,
                MAX_TPM_PROPERTIES,
            );
            body.u32(list.len() as u32);
            for (p, v) in list {
                body.u32(p).u32(v);
            }
            more
        }
        cap::PCR_PROPERTIES => {
            let (list, more) = page(
                pcr_properties().into_iter().map(|p| (p.0, p)),
                property,
                count,
                MAX_PCR_PROPERTIES,
            );
            body.u32(list.len() as u32);
            for (tag, m) in list {
                body.u32(tag).u8(PCR_SELECT_MIN as u8);
                body.bytes(&m.to_le_bytes()[..PCR_SELECT_MIN]);
            }
            more
        }
        cap::ECC_CURVES => {
            let curves = ecc_curves(&dispatch).iter().map(|&c| (u32::from(c), c));
            let (list, more) = page(curves, property, count, MAX_ECC_CURVES);
            body.u32(list.len() as u32);
            for c in list {
                body.u16(c);
            }
            more
        }
        cap::AUTH_POLICIES => {
            if Handle(property).kind() != HandleType::Permanent {
                return Err(TpmRc::VALUE.param(2));
            }
            let ps = ctx.ps();
            let policies = [
                (Handle::OWNER.0, &ps.owner_policy),
                (Handle::LOCKOUT.0, &ps.lockout_policy),
                (Handle::ENDORSEMENT.0, &ps.endorsement_policy),
                (Handle::PLATFORM.0, &ctx.tpm.vs.platform_policy),
            ];
            let (list, more) = page(
                policies.into_iter().map(|p| (p.0, p)),
                property,
                count,
                MAX_TAGGED_POLICIES,
            );
            body.u32(list.len() as u32);
            for (h, p) in list {
                body.u32(h).u16(p.alg).bytes(&p.digest);
            }
            more
        }
        _ => {
            // TPM_CAP_ACT: the property must name an ACT handle; none is implemented.
            if !(0x4000_0110..=0x4000_011F).contains(&property) {
                return Err(TpmRc::VALUE.param(2));
            }
            body.u32(0);
            false
        }
    };
    w.u8(u8::from(more)).u32(capability).bytes(body.as_slice());
    Ok(Response::params(w))
}

/// Part 3, 30.3 TPM2_TestParms: the reference implementation checks everything while
/// unmarshalling TPMT_PUBLIC_PARMS, so a parameter set is accepted exactly when it would be
/// accepted in a TPMT_PUBLIC; errors are that unmarshaller's codes + P1.
#[doc(alias = "TPM2_TestParms")]
fn test_parms(_ctx: &mut Ctx<'_>, req: &Request<'_>) -> TpmResult<Response> {
    use crate::object::public::{Cursor, Public};
    let params = req.params;
    // The type alone decides TPM_RC_TYPE before anything else is read.
    let Some(ty) = params.get(..2) else {
        return Err(TpmRc::INSUFFICIENT.param(1));
    };
    let ty = u16::from_be_bytes([ty[0], ty[1]]);
    if !matches!(ty, 0x0001 | 0x0008 | 0x0023 | 0x0025) {
        return Err(TpmRc::TYPE.param(1));
    }
    // Parse as the parameters of a TPMT_PUBLIC (nameAlg SHA-256, no attributes, empty
    // policy), followed by an empty unique field.
    let wrap = |tail: &[u8]| {
        let mut buf = Vec::with_capacity(params.len() + 16);
        buf.extend_from_slice(&params[..2]);
        buf.extend_from_slice(&[0x00, 0x0B, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(&params[2..]);
        buf.extend_from_slice(tail);
        buf
    };
    let unique: &[u8] = if ty == 0x0023 { &[0; 4] } else { &[0; 2] };
    let bare = wrap(&[]);
    let mut c = Cursor::new(&bare);
    match Public::parse_from(&mut c) {
        Err(rc) if rc != TpmRc::INSUFFICIENT => return Err(rc.param(1)),
        _ => {}
    }
    let padded = wrap(unique);
    let mut c = Cursor::new(&padded);
    if Public::parse_from(&mut c).is_err() {
        // The real bytes parsed without error up to their end: they are cut short.
        return Err(TpmRc::INSUFFICIENT.param(1));
    }
    let consumed = padded.len() - c_remaining(&c);
    // Bytes of the request used as parameters (the rest of `consumed` is the padding).
    let used = consumed.saturating_sub(8 + unique.len());
    if used > params.len() {
        return Err(TpmRc::INSUFFICIENT.param(1));
    }
    if used < params.len() {
        return Err(TpmRc::SIZE);
    }
    Ok(Response::empty())
}

fn c_remaining(c: &crate::object::public::Cursor<'_>) -> usize {
    c.buf.len()
}
