//! Command dispatch (Part 3): one module per command family, each exporting a `COMMANDS`
//! table of [`CommandDef`]s. [`Dispatch`] indexes them by command code once; GetCapability
//! reports exactly these commands, so the list is the single source of truth.

use alloc::vec::Vec;

use crate::auth::AuthRole;
use crate::context::Ctx;
use crate::handle::{Handle, HandleType};
use crate::marshal::Writer;
use crate::rc::{TpmRc, TpmResult};

pub mod asym;
pub mod attestation;
pub mod capability;
pub mod clock;
pub mod context;
pub mod credential;
pub mod da;
pub mod duplication;
pub mod ecc;
pub mod hash;
pub mod hierarchy;
pub mod hmac;
pub mod nv;
pub mod object;
pub mod pcr;
pub mod policy;
pub mod primary;
pub mod random;
pub mod session;
pub mod signature;
pub mod startup;
pub mod symmetric;
pub mod testing;

/// Command code values (Part 2, 6.5.2 TPM_CC), from the `tpm2-protocol` table.
pub mod cc {
    use tpm2_protocol::data::TpmCc;

    macro_rules! codes {
        ($($name:ident = $variant:ident),* $(,)?) => {
            $(pub const $name: u32 = TpmCc::$variant.value();)*
        };
    }

    codes! {
        STARTUP = Startup,
        SHUTDOWN = Shutdown,
        SELF_TEST = SelfTest,
        INCREMENTAL_SELF_TEST = IncrementalSelfTest,
        GET_TEST_RESULT = GetTestResult,
        GET_CAPABILITY = GetCapability,
        TEST_PARMS = TestParms,
        GET_RANDOM = GetRandom,
        STIR_RANDOM = StirRandom,
        PCR_READ = PcrRead,
        PCR_EXTEND = PcrExtend,
        PCR_EVENT = PcrEvent,
        PCR_RESET = PcrReset,
        HASH = Hash,
        HASH_SEQUENCE_START = HashSequenceStart,
        SEQUENCE_UPDATE = SequenceUpdate,
        SEQUENCE_COMPLETE = SequenceComplete,
        EVENT_SEQUENCE_COMPLETE = EventSequenceComplete,
        READ_CLOCK = ReadClock,
        CLOCK_SET = ClockSet,
        CLOCK_RATE_ADJUST = ClockRateAdjust,
        CLEAR = Clear,
        CLEAR_CONTROL = ClearControl,
        HIERARCHY_CHANGE_AUTH = HierarchyChangeAuth,
        HIERARCHY_CONTROL = HierarchyControl,
        SET_PRIMARY_POLICY = SetPrimaryPolicy,
        DICTIONARY_ATTACK_PARAMETERS = DictionaryAttackParameters,
        DICTIONARY_ATTACK_LOCK_RESET = DictionaryAttackLockReset,
        FLUSH_CONTEXT = FlushContext,
        CONTEXT_SAVE = ContextSave,
        CONTEXT_LOAD = ContextLoad,
        EVICT_CONTROL = EvictControl,
        CHANGE_EPS = ChangeEps,
        CHANGE_PPS = ChangePps,
        PP_COMMANDS = PpCommands,
        SET_ALGORITHM_SET = SetAlgorithmSet,
        PCR_ALLOCATE = PcrAllocate,
        PCR_SET_AUTH_POLICY = PcrSetAuthPolicy,
        PCR_SET_AUTH_VALUE = PcrSetAuthValue,
        CREATE_PRIMARY = CreatePrimary,
        CREATE = Create,
        CREATE_LOADED = CreateLoaded,
        LOAD = Load,
        LOAD_EXTERNAL = LoadExternal,
        READ_PUBLIC = ReadPublic,
        OBJECT_CHANGE_AUTH = ObjectChangeAuth,
        UNSEAL = Unseal,
        SIGN = Sign,
        VERIFY_SIGNATURE = VerifySignature,
        RSA_ENCRYPT = RsaEncrypt,
        RSA_DECRYPT = RsaDecrypt,
        ENCRYPT_DECRYPT = EncryptDecrypt,
        ENCRYPT_DECRYPT2 = EncryptDecrypt2,
        HMAC = Hmac,
        HMAC_START = HmacStart,
        ECDH_KEY_GEN = EcdhKeyGen,
        ECDH_ZGEN = EcdhZGen,
        EC_EPHEMERAL = EcEphemeral,
        COMMIT = Commit,
        ZGEN_2PHASE = ZGen2Phase,
        ECC_PARAMETERS = EccParameters,
        QUOTE = Quote,
        CERTIFY = Certify,
        CERTIFY_CREATION = CertifyCreation,
        GET_TIME = GetTime,
        GET_SESSION_AUDIT_DIGEST = GetSessionAuditDigest,
        GET_COMMAND_AUDIT_DIGEST = GetCommandAuditDigest,
        NV_CERTIFY = NvCertify,
        DUPLICATE = Duplicate,
        IMPORT = Import,
        REWRAP = Rewrap,
        MAKE_CREDENTIAL = MakeCredential,
        ACTIVATE_CREDENTIAL = ActivateCredential,
        START_AUTH_SESSION = StartAuthSession,
        POLICY_RESTART = PolicyRestart,
        POLICY_GET_DIGEST = PolicyGetDigest,
        POLICY_PCR = PolicyPcr,
        POLICY_PASSWORD = PolicyPassword,
        POLICY_AUTH_VALUE = PolicyAuthValue,
        POLICY_SECRET = PolicySecret,
        POLICY_SIGNED = PolicySigned,
        POLICY_TICKET = PolicyTicket,
        POLICY_OR = PolicyOr,
        POLICY_COMMAND_CODE = PolicyCommandCode,
        POLICY_CP_HASH = PolicyCpHash,
        POLICY_NAME_HASH = PolicyNameHash,
        POLICY_LOCALITY = PolicyLocality,
        POLICY_NV = PolicyNv,
        POLICY_COUNTER_TIMER = PolicyCounterTimer,
        POLICY_DUPLICATION_SELECT = PolicyDuplicationSelect,
        POLICY_AUTHORIZE = PolicyAuthorize,
        POLICY_AUTHORIZE_NV = PolicyAuthorizeNv,
        POLICY_NV_WRITTEN = PolicyNvWritten,
        POLICY_TEMPLATE = PolicyTemplate,
        POLICY_PHYSICAL_PRESENCE = PolicyPhysicalPresence,
        NV_DEFINE_SPACE = NvDefineSpace,
        NV_UNDEFINE_SPACE = NvUndefineSpace,
        NV_UNDEFINE_SPACE_SPECIAL = NvUndefineSpaceSpecial,
        NV_WRITE = NvWrite,
        NV_READ = NvRead,
        NV_READ_PUBLIC = NvReadPublic,
        NV_INCREMENT = NvIncrement,
        NV_EXTEND = NvExtend,
        NV_SET_BITS = NvSetBits,
        NV_WRITE_LOCK = NvWriteLock,
        NV_READ_LOCK = NvReadLock,
        NV_GLOBAL_WRITE_LOCK = NvGlobalWriteLock,
        NV_CHANGE_AUTH = NvChangeAuth,
        SET_COMMAND_CODE_AUDIT_STATUS = SetCommandCodeAuditStatus,
    }
}

/// What a handle-area slot accepts (the TPMI_ types of Part 2 used in Part 3's handle areas).
/// A value outside the set is TPM_RC_VALUE + handle number, as the reference unmarshaller
/// returns; an allowed but absent entity is TPM_RC_HANDLE (or TPM_RC_HIERARCHY when disabled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleKind {
    /// TPMI_DH_PCR: a PCR index.
    Pcr,
    /// TPMI_DH_PCR+: a PCR index or TPM_RH_NULL.
    PcrOrNull,
    /// TPMI_RH_HIERARCHY_AUTH: owner, endorsement, platform or lockout.
    HierarchyAuth,
    /// TPMI_RH_HIERARCHY: owner, endorsement or platform.
    Hierarchy,
    /// TPMI_RH_CLEAR: lockout or platform.
    Clear,
    /// TPMI_RH_LOCKOUT.
    Lockout,
    /// TPMI_RH_PROVISION: owner or platform.
    Provision,
    /// TPMI_RH_PLATFORM.
    Platform,
    /// TPMI_RH_HIERARCHY_POLICY: owner, endorsement, platform, lockout.
    HierarchyPolicy,
    /// TPMI_DH_OBJECT: a loaded transient object or sequence, or a persistent object.
    Object,
    /// TPMI_DH_CONTEXT: anything FlushContext/ContextSave accept (objects, sessions).
    Context,
    /// TPMI_RH_HIERARCHY+: owner, endorsement, platform or TPM_RH_NULL (CreatePrimary).
    HierarchyOrNull,
    /// TPMI_DH_PARENT+: a loaded object, a hierarchy or TPM_RH_NULL (CreateLoaded).
    Parent,
    /// TPMI_RH_ENDORSEMENT (GetTime privacyAdminHandle).
    Endorsement,
    /// TPMI_DH_OBJECT+: a loaded object or TPM_RH_NULL (StartAuthSession tpmKey).
    ObjectOrNull,
    /// TPMI_DH_ENTITY: hierarchy, object, NV index or PCR (PolicySecret authHandle).
    Entity,
    /// TPMI_DH_ENTITY+: an entity or TPM_RH_NULL (StartAuthSession bind).
    EntityOrNull,
    /// TPMI_RH_NV_INDEX: a defined NV index.
    NvIndex,
    /// TPMI_RH_NV_AUTH: owner, platform or a defined NV index.
    NvAuth,
    /// TPMI_SH_POLICY: a loaded policy (or trial) session.
    PolicySession,
    /// TPMI_SH_HMAC: a loaded HMAC session.
    HmacSession,
}

/// A handle-area slot: what it accepts and which authorization role it needs, if any.
#[derive(Clone, Copy, Debug)]
pub struct HandleSlot {
    pub kind: HandleKind,
    pub auth: Option<AuthRole>,
}

/// Shorthand for a slot that needs authorization in `role`.
pub const fn auth(kind: HandleKind, role: AuthRole) -> HandleSlot {
    HandleSlot {
        kind,
        auth: Some(role),
    }
}

/// Shorthand for a slot without authorization.
pub const fn plain(kind: HandleKind) -> HandleSlot {
    HandleSlot { kind, auth: None }
}

/// A parsed command as a handler sees it.
#[derive(Debug)]
pub struct Request<'a> {
    pub cc: u32,
    pub handles: &'a [Handle],
    pub params: &'a [u8],
    pub locality: u8,
}

/// What a handler returns: at most one response handle and the parameter area.
#[derive(Debug, Default)]
pub struct Response {
    pub handle: Option<Handle>,
    pub params: Writer,
}

impl Response {
    /// A response with no handle and no parameters.
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn params(params: Writer) -> Self {
        Self {
            handle: None,
            params,
        }
    }
}

pub type Handler = fn(&mut Ctx<'_>, &Request<'_>) -> TpmResult<Response>;

/// One implemented command (Part 3 "Command" tables).
#[derive(Clone, Copy)]
pub struct CommandDef {
    pub cc: u32,
    pub handles: &'static [HandleSlot],
    /// The response carries one handle (e.g. HashSequenceStart's sequenceHandle).
    pub response_handle: bool,
    pub run: Handler,
}

impl core::fmt::Debug for CommandDef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CommandDef({:#x})", self.cc)
    }
}

impl CommandDef {
    /// Number of handles that need an authorization session.
    pub fn auth_count(&self) -> usize {
        self.handles.iter().filter(|h| h.auth.is_some()).count()
    }
}

/// Every command family's table.
const FAMILIES: &[&[CommandDef]] = &[
    asym::COMMANDS,
    attestation::COMMANDS,
    context::COMMANDS,
    credential::COMMANDS,
    duplication::COMMANDS,
    ecc::COMMANDS,
    hmac::COMMANDS,
    nv::COMMANDS,
    object::COMMANDS,
    policy::COMMANDS,
    primary::COMMANDS,
    session::COMMANDS,
    signature::COMMANDS,
    symmetric::COMMANDS,
    startup::COMMANDS,
    testing::COMMANDS,
    random::COMMANDS,
    capability::COMMANDS,
    pcr::COMMANDS,
    hash::COMMANDS,
    clock::COMMANDS,
    hierarchy::COMMANDS,
    da::COMMANDS,
];

/// Command codes in the TPM_CC range the dispatcher indexes directly.
const CC_FIRST: u32 = 0x11F;
const CC_LAST: u32 = 0x1A0;

/// Implemented commands indexed by command code.
#[derive(Debug)]
pub struct Dispatch {
    by_cc: Vec<Option<CommandDef>>,
}

impl Dispatch {
    pub fn new() -> Self {
        let mut by_cc = alloc::vec![None; (CC_LAST - CC_FIRST + 1) as usize];
        for def in FAMILIES.iter().flat_map(|f| f.iter()) {
            if let Some(slot) = def
                .cc
                .checked_sub(CC_FIRST)
                .and_then(|i| by_cc.get_mut(i as usize))
            {
                *slot = Some(*def);
            }
        }
        Self { by_cc }
    }

    pub fn get(&self, cc: u32) -> Option<&CommandDef> {
        let i = cc.checked_sub(CC_FIRST)? as usize;
        self.by_cc.get(i)?.as_ref()
    }

    /// Implemented command codes in ascending order.
    pub fn codes(&self) -> impl Iterator<Item = &CommandDef> + '_ {
        self.by_cc.iter().flatten()
    }
}

impl Default for Dispatch {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks that `h` is acceptable for `kind` and refers to something present
/// (the reference implementation's handle unmarshalling plus EntityGetLoadStatus).
/// `n` is the 1-based handle number for the response code.
pub fn check_handle(ctx: &Ctx<'_>, kind: HandleKind, h: Handle, n: u8) -> TpmResult<()> {
    let value = TpmRc::VALUE.handle(n);
    let hierarchy_enabled = |h: Handle| match h {
        Handle::OWNER => ctx.tpm.vs.sh_enable,
        Handle::ENDORSEMENT => ctx.tpm.vs.eh_enable,
        Handle::PLATFORM => ctx.tpm.vs.ph_enable,
        _ => true,
    };
    let one_of = |allowed: &[Handle]| -> TpmResult<()> {
        if !allowed.contains(&h) {
            return Err(value);
        }
        if !hierarchy_enabled(h) {
            return Err(TpmRc::HIERARCHY.handle(n));
        }
        Ok(())
    };
    match kind {
        HandleKind::Pcr => match h.pcr_index() {
            Some(i) if i < crate::state::pcr::PCR_COUNT => Ok(()),
            _ => Err(value),
        },
        HandleKind::PcrOrNull => match h.pcr_index() {
            Some(i) if i < crate::state::pcr::PCR_COUNT => Ok(()),
            _ if h == Handle::NULL => Ok(()),
            _ => Err(value),
        },
        HandleKind::HierarchyAuth | HandleKind::HierarchyPolicy => one_of(&[
            Handle::OWNER,
            Handle::ENDORSEMENT,
            Handle::PLATFORM,
            Handle::LOCKOUT,
        ]),
        HandleKind::Hierarchy => one_of(&[Handle::OWNER, Handle::ENDORSEMENT, Handle::PLATFORM]),
        HandleKind::Clear => one_of(&[Handle::LOCKOUT, Handle::PLATFORM]),
        HandleKind::Lockout => one_of(&[Handle::LOCKOUT]),
        HandleKind::Provision => one_of(&[Handle::OWNER, Handle::PLATFORM]),
        HandleKind::Platform => one_of(&[Handle::PLATFORM]),
        HandleKind::Object => match h.kind() {
            HandleType::Transient => present_transient(ctx, h, n),
            HandleType::Persistent => persistent_object(ctx, h, n),
            _ => Err(value),
        },
        HandleKind::HierarchyOrNull if h == Handle::NULL => Ok(()),
        HandleKind::HierarchyOrNull => {
            one_of(&[Handle::OWNER, Handle::ENDORSEMENT, Handle::PLATFORM])
        }
        HandleKind::Parent => match h.kind() {
            HandleType::Permanent => one_of(&[
                Handle::OWNER,
                Handle::ENDORSEMENT,
                Handle::PLATFORM,
                Handle::NULL,
            ]),
            _ => check_handle(ctx, HandleKind::Object, h, n),
        },
        HandleKind::Endorsement => one_of(&[Handle::ENDORSEMENT]),
        HandleKind::Context => match h.kind() {
            HandleType::Transient => present_transient(ctx, h, n),
            HandleType::HmacSession | HandleType::PolicySession => {
                if crate::auth::session_loaded(ctx, h) {
                    Ok(())
                } else {
                    Err(reference_h(n))
                }
            }
            _ => Err(value),
        },
        HandleKind::ObjectOrNull if h == Handle::NULL => Ok(()),
        HandleKind::ObjectOrNull => check_handle(ctx, HandleKind::Object, h, n),
        HandleKind::EntityOrNull if h == Handle::NULL => Ok(()),
        HandleKind::Entity | HandleKind::EntityOrNull => match h.kind() {
            HandleType::Permanent => one_of(&[
                Handle::OWNER,
                Handle::ENDORSEMENT,
                Handle::PLATFORM,
                Handle::LOCKOUT,
            ]),
            HandleType::Transient | HandleType::Persistent => {
                check_handle(ctx, HandleKind::Object, h, n)
            }
            HandleType::NvIndex => check_handle(ctx, HandleKind::NvIndex, h, n),
            HandleType::Pcr => check_handle(ctx, HandleKind::Pcr, h, n),
            _ => Err(value),
        },
        HandleKind::NvIndex => match h.kind() {
            HandleType::NvIndex => nv_accessible(ctx, h, n),
            _ => Err(value),
        },
        HandleKind::NvAuth => match h.kind() {
            HandleType::NvIndex => nv_accessible(ctx, h, n),
            _ => one_of(&[Handle::OWNER, Handle::PLATFORM]),
        },
        HandleKind::HmacSession => match h.kind() {
            HandleType::HmacSession if ctx.tpm.vs.sessions.is_loaded(h) => Ok(()),
            HandleType::HmacSession => Err(reference_h(n)),
            _ => Err(value),
        },
        HandleKind::PolicySession => match h.kind() {
            HandleType::PolicySession if ctx.tpm.vs.sessions.is_loaded(h) => Ok(()),
            HandleType::PolicySession => Err(reference_h(n)),
            _ => Err(value),
        },
    }
}

/// A defined NV index whose hierarchy is enabled (reference NvIndexIsAccessible as used by
/// EntityGetLoadStatus): TPM_RC_HANDLE otherwise.
fn nv_accessible(ctx: &Ctx<'_>, h: Handle, n: u8) -> TpmResult<()> {
    let Some(ix) = ctx.ps().nv.get(h) else {
        return Err(TpmRc::HANDLE.handle(n));
    };
    let enabled = if ix.has(crate::state::nv::attr::PLATFORMCREATE) {
        ctx.tpm.vs.ph_enable_nv
    } else {
        ctx.tpm.vs.sh_enable
    };
    if enabled {
        Ok(())
    } else {
        Err(TpmRc::HANDLE.handle(n))
    }
}

/// TPM_RC_REFERENCE_H0 + (n - 1): the n-th handle names a transient object or session that
/// is not loaded (reference EntityGetLoadStatus).
pub fn reference_h(n: u8) -> TpmRc {
    TpmRc(TpmRc::REFERENCE_H0.0 + u32::from(n.saturating_sub(1)))
}

/// Is `h` inside the transient range this TPM implements (TRANSIENT_FIRST to
/// TRANSIENT_FIRST + MAX_LOADED_OBJECTS - 1)? Outside it the reference unmarshaller answers
/// TPM_RC_VALUE, inside it an empty slot is TPM_RC_REFERENCE_H0 + n.
pub fn transient_in_range(h: Handle) -> bool {
    h.0.wrapping_sub(Handle::TRANSIENT_FIRST.0) < crate::state::objects::MAX_LOADED_OBJECTS as u32
}

fn present_transient(ctx: &Ctx<'_>, h: Handle, n: u8) -> TpmResult<()> {
    if !transient_in_range(h) {
        return Err(TpmRc::VALUE.handle(n));
    }
    if ctx.tpm.vs.objects.contains(h) {
        Ok(())
    } else {
        Err(reference_h(n))
    }
}

/// A persistent object that exists and whose hierarchy is enabled (reference
/// EntityGetLoadStatus for TPM_HT_PERSISTENT).
fn persistent_object(ctx: &Ctx<'_>, h: Handle, n: u8) -> TpmResult<()> {
    let Some(hierarchy) = crate::entity::hierarchy(ctx, h) else {
        return Err(TpmRc::HANDLE.handle(n));
    };
    let enabled = match hierarchy {
        Handle::OWNER => ctx.tpm.vs.sh_enable,
        Handle::ENDORSEMENT => ctx.tpm.vs.eh_enable,
        Handle::PLATFORM => ctx.tpm.vs.ph_enable,
        _ => true,
    };
    if enabled {
        Ok(())
    } else {
        Err(TpmRc::HIERARCHY.handle(n))
    }
}
