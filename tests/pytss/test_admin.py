# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Owner and lockout administration: dictionary-attack lockout, clock, command audit, the
special NV commands (UndefineSpaceSpecial, GlobalWriteLock)."""

import hashlib

import pytest
from tpm2_pytss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_CC,
    TPM2_PT,
    TPM2_RC,
    TPM2_SE,
    TPM2_ST,
    TPM2B_NV_PUBLIC,
    TPMA_NV,
    TPML_CC,
    TPMS_ATTEST,
    TPMS_NV_PUBLIC,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
    TSS2_Exception,
)

from helpers import SIGN_ATTRS, child, primary


def prop(ectx, pt):
    _, data = ectx.get_capability(TPM2_CAP.TPM_PROPERTIES, pt, 1)
    return data.data.tpmProperties[0].value


def test_dictionary_attack_lockout_and_reset(ectx):
    ectx.dictionary_attack_parameters(3, 1000, 1000)
    assert prop(ectx, TPM2_PT.MAX_AUTH_FAIL) == 3
    parent, _ = primary(ectx)
    # A DA-protected key (no noDA attribute) with a password.
    key, _, _ = child(ectx, parent, "ecc256:ecdsa-sha256", auth=b"right")
    ectx.tr_set_auth(key, b"wrong")
    for _ in range(3):
        with pytest.raises(TSS2_Exception) as e:
            ectx.sign(key, b"\x01" * 32, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL), _null_ticket())
        assert e.value.error == TPM2_RC.AUTH_FAIL
    assert prop(ectx, TPM2_PT.LOCKOUT_COUNTER) == 3
    ectx.tr_set_auth(key, b"right")
    with pytest.raises(TSS2_Exception) as e:
        ectx.sign(key, b"\x01" * 32, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL), _null_ticket())
    assert e.value.error == TPM2_RC.LOCKOUT
    ectx.dictionary_attack_lock_reset()
    assert prop(ectx, TPM2_PT.LOCKOUT_COUNTER) == 0
    ectx.sign(key, b"\x01" * 32, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL), _null_ticket())


def _null_ticket():
    from tpm2_pytss import TPM2_RH, TPMT_TK_HASHCHECK

    return TPMT_TK_HASHCHECK(tag=0x8024, hierarchy=TPM2_RH.NULL)


def test_clock_set_forward_only(ectx):
    now = ectx.read_clock().clockInfo.clock
    ectx.clock_set(now + 3_600_000)
    assert ectx.read_clock().clockInfo.clock >= now + 3_600_000
    with pytest.raises(TSS2_Exception) as e:
        ectx.clock_set(now)
    assert e.value.error == TPM2_RC.VALUE
    from tpm2_pytss import TPM2_CLOCK

    ectx.clock_rate_adjust(TPM2_CLOCK.MEDIUM_SLOWER)


def test_command_audit_digest(ectx):
    srk, _ = primary(ectx, "ecc256:aes128cfb")
    signer, pub, _ = child(ectx, srk, "ecc256:ecdsa-sha256", SIGN_ATTRS)
    ectx.set_command_code_audit_status(TPM2_ALG.SHA256, TPML_CC(), TPML_CC())
    ectx.set_command_code_audit_status(TPM2_ALG.NULL, TPML_CC([TPM2_CC.GetRandom]), TPML_CC())
    _, data = ectx.get_capability(TPM2_CAP.AUDIT_COMMANDS, TPM2_CC.FIRST, 32)
    assert TPM2_CC.GetRandom in [c & 0xFFFF for c in data.data.auditCommands]
    ectx.get_random(8)
    ectx.get_random(8)
    attest, sig = ectx.get_command_audit_digest(signer, b"audit", TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL))
    info, _ = TPMS_ATTEST.unmarshal(bytes(attest))
    assert info.type == TPM2_ST.ATTEST_COMMAND_AUDIT
    assert info.attested.commandAudit.digestAlg == TPM2_ALG.SHA256
    assert len(bytes(info.attested.commandAudit.auditDigest)) == 32
    sig.verify_signature(pub, bytes(attest))


def test_nv_undefine_space_special_with_policy(ectx):
    """A platform index with POLICY_DELETE goes only with its policy (PolicyCommandCode)."""
    policy = hashlib.sha256(
        b"\0" * 32 + int(TPM2_CC.PolicyCommandCode).to_bytes(4, "big")
        + int(TPM2_CC.NV_UndefineSpaceSpecial).to_bytes(4, "big")
    ).digest()
    pub = TPM2B_NV_PUBLIC(nvPublic=TPMS_NV_PUBLIC(
        nvIndex=0x01400001, nameAlg=TPM2_ALG.SHA256,
        attributes=TPMA_NV.PPWRITE | TPMA_NV.PPREAD | TPMA_NV.PLATFORMCREATE
        | TPMA_NV.POLICY_DELETE,
        authPolicy=policy, dataSize=8))
    nv = ectx.nv_define_space(b"", pub, ESYS_TR.PLATFORM)
    # Plain NV_UndefineSpace is refused for a POLICY_DELETE index.
    with pytest.raises(TSS2_Exception) as e:
        ectx.nv_undefine_space(nv, ESYS_TR.PLATFORM)
    assert e.value.error == TPM2_RC.ATTRIBUTES
    s = ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
    ectx.policy_command_code(s, TPM2_CC.NV_UndefineSpaceSpecial)
    ectx.nv_undefine_space_special(nv, s)
    _, data = ectx.get_capability(TPM2_CAP.HANDLES, 0x01000000, 8)
    assert list(data.data.handles) == []


def test_nv_global_write_lock(ectx):
    pub = TPM2B_NV_PUBLIC(nvPublic=TPMS_NV_PUBLIC(
        nvIndex=0x01500400, nameAlg=TPM2_ALG.SHA256,
        attributes=TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.GLOBALLOCK,
        dataSize=4))
    nv = ectx.nv_define_space(b"", pub, ESYS_TR.OWNER)
    ectx.nv_write(nv, b"1234", 0, auth_handle=ESYS_TR.OWNER)
    ectx.nv_global_write_lock()
    with pytest.raises(TSS2_Exception) as e:
        ectx.nv_write(nv, b"5678", 0, auth_handle=ESYS_TR.OWNER)
    assert e.value.error == TPM2_RC.NV_LOCKED
    pub2, _ = ectx.nv_read_public(nv)
    assert pub2.nvPublic.attributes & TPMA_NV.WRITELOCKED
