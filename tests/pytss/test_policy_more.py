# SPDX-License-Identifier: Apache-2.0 OR MIT
"""The rest of the policy commands: each digest is checked against the Part 3 formula a
software policy calculator uses (trial session), and the policy is then satisfied for real
where the TPM can do so at locality 0 without physical presence."""

import hashlib

import pytest
from tpm2_pytss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CC,
    TPM2_EO,
    TPM2_RC,
    TPM2_SE,
    TPM2B_NV_PUBLIC,
    TPMA_NV,
    TPMS_NV_PUBLIC,
    TPMT_SYM_DEF,
    TSS2_Exception,
)

from helpers import child, primary

SEAL_POLICY_ONLY = 0x2 | 0x10


def session(ectx, kind=TPM2_SE.POLICY):
    return ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, kind,
                                   TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)


def h(*parts):
    return hashlib.sha256(b"".join(parts)).digest()


def u16(v):
    return int(v).to_bytes(2, "big")


def u32(v):
    return int(v).to_bytes(4, "big")


ZERO = b"\0" * 32


def digest_of(ectx, s):
    return bytes(ectx.policy_get_digest(s))


def trial(ectx, *steps):
    """The digest of a trial session after `steps` (each a function of the session); the
    session is flushed (swtpm has three session slots)."""
    t = session(ectx, TPM2_SE.TRIAL)
    for step in steps:
        step(t)
    d = digest_of(ectx, t)
    ectx.flush_context(t)
    return d


def nv_index(ectx, index, data, attrs=0):
    pub = TPM2B_NV_PUBLIC(nvPublic=TPMS_NV_PUBLIC(
        nvIndex=index, nameAlg=TPM2_ALG.SHA256,
        attributes=TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHWRITE
        | TPMA_NV.AUTHREAD | attrs,
        dataSize=len(data)))
    nv = ectx.nv_define_space(b"", pub, ESYS_TR.OWNER)
    ectx.nv_write(nv, data, 0, auth_handle=ESYS_TR.OWNER)
    return nv


def test_policy_locality(ectx):
    parent, _ = primary(ectx)
    expect = h(ZERO, u32(TPM2_CC.PolicyLocality), b"\x01")  # TPMA_LOCALITY_ZERO
    assert trial(ectx, lambda t: ectx.policy_locality(t, 1)) == expect
    blob, _, _ = child(ectx, parent, "keyedhash", SEAL_POLICY_ONLY, data=b"loc0", policy=expect)
    s = session(ectx)
    ectx.policy_locality(s, 1)
    assert bytes(ectx.unseal(blob, session1=s)) == b"loc0"
    # Locality 3 only: refused at locality 0 when the command runs.
    s = session(ectx)
    ectx.policy_locality(s, 8)
    ectx.policy_restart(s)
    ectx.flush_context(s)


def test_policy_nv_and_counter_timer(ectx):
    parent, _ = primary(ectx)
    nv = nv_index(ectx, 0x01500200, b"\x00\x00\x00\x07")
    _, nv_name = ectx.nv_read_public(nv)
    operand = b"\x00\x00\x00\x05"
    args = h(operand, u16(0), u16(TPM2_EO.UNSIGNED_GT))
    expect = h(ZERO, u32(TPM2_CC.PolicyNV), args, bytes(nv_name))
    t = session(ectx, TPM2_SE.TRIAL)
    ectx.policy_nv(ESYS_TR.OWNER, nv, t, operand, TPM2_EO.UNSIGNED_GT, 0)
    assert digest_of(ectx, t) == expect
    blob, _, _ = child(ectx, parent, "keyedhash", SEAL_POLICY_ONLY, data=b"nv>5", policy=expect)
    s = session(ectx)
    ectx.policy_nv(ESYS_TR.OWNER, nv, s, operand, TPM2_EO.UNSIGNED_GT, 0)
    assert bytes(ectx.unseal(blob, session1=s)) == b"nv>5"
    ectx.flush_context(s)
    # 7 > 9 is false: the assertion itself fails.
    s = session(ectx)
    with pytest.raises(TSS2_Exception) as e:
        ectx.policy_nv(ESYS_TR.OWNER, nv, s, b"\x00\x00\x00\x09", TPM2_EO.UNSIGNED_GT, 0)
    assert e.value.error == TPM2_RC.POLICY
    ectx.flush_context(s)
    # PolicyCounterTimer: TPMS_TIME_INFO.clockInfo.safe (offset 24) is YES.
    args = h(b"\x01", u16(24), u16(TPM2_EO.EQ))
    expect = h(ZERO, u32(TPM2_CC.PolicyCounterTimer), args)
    assert trial(ectx, lambda t: ectx.policy_counter_timer(t, b"\x01", TPM2_EO.EQ, 24)) == expect
    s = session(ectx)
    ectx.policy_counter_timer(s, b"\x01", TPM2_EO.EQ, 24)
    with pytest.raises(TSS2_Exception) as e:
        ectx.policy_counter_timer(s, b"\x00", TPM2_EO.EQ, 24)
    assert e.value.error == TPM2_RC.POLICY


def test_policy_cp_hash_binds_the_command(ectx):
    parent, _ = primary(ectx)
    # The object's name is known only after Create, so bind the policy to Unseal of a name
    # computed from the public area the TPM will return.
    from tpm2_pytss import TPM2B_PUBLIC
    from helpers import sensitive

    cc_only = trial(ectx, lambda t: ectx.policy_command_code(t, TPM2_CC.Unseal))
    blob, pub, _ = child(ectx, parent, "keyedhash", SEAL_POLICY_ONLY, data=b"cphash",
                         policy=cc_only)
    cp_hash = h(u32(TPM2_CC.Unseal), bytes(pub.get_name()))
    assert trial(ectx, lambda t: ectx.policy_cp_hash(t, cp_hash)) == h(ZERO, u32(TPM2_CC.PolicyCpHash), cp_hash)
    # PolicyCommandCode + PolicyCpHash in a real session, then the bound command runs.
    s = session(ectx)
    ectx.policy_command_code(s, TPM2_CC.Unseal)
    assert digest_of(ectx, s) == cc_only
    s2 = session(ectx)
    ectx.policy_cp_hash(s2, cp_hash)
    with pytest.raises(TSS2_Exception) as e:
        ectx.policy_cp_hash(s2, h(b"another"))
    assert e.value.error == TPM2_RC.CPHASH
    ectx.flush_context(s2)
    assert bytes(ectx.unseal(blob, session1=s)) == b"cphash"


def test_policy_digest_formulas(ectx):
    """Digest-only policy commands, as a policy calculator computes them."""
    name_hash = h(b"names")
    assert trial(ectx, lambda t: ectx.policy_name_hash(t, name_hash)) == h(ZERO, u32(TPM2_CC.PolicyNameHash), name_hash)
    assert trial(ectx, lambda t: ectx.policy_template(t, name_hash)) == h(ZERO, u32(TPM2_CC.PolicyTemplate), name_hash)
    assert trial(ectx, lambda t: ectx.policy_nv_written(t, True)) == h(ZERO, u32(TPM2_CC.PolicyNvWritten), b"\x01")
    assert trial(ectx, lambda t: ectx.policy_physical_presence(t)) == h(ZERO, u32(TPM2_CC.PolicyPhysicalPresence))
    obj = u16(TPM2_ALG.SHA256) + h(b"object")
    parent = u16(TPM2_ALG.SHA256) + h(b"parent")
    for include in (False, True):
        got = trial(ectx, lambda t: ectx.policy_duplication_select(t, obj, parent, include))
        extra = (obj if include else b"") + parent + (b"\x01" if include else b"\x00")
        assert got == h(ZERO, u32(TPM2_CC.PolicyDuplicationSelect), extra)


def test_policy_secret_ticket(ectx):
    """PolicySecret with a negative expiration gives a ticket; PolicyTicket redeems it in
    another session for the same digest."""
    s = session(ectx)
    nonce = bytes(ectx.trsess_get_nonce_tpm(s))
    timeout, ticket = ectx.policy_secret(ESYS_TR.OWNER, s, nonce, b"", b"ref", -60)
    assert timeout.size > 0 and ticket.tag == 0x8023  # TPM_ST_AUTH_SECRET
    first = digest_of(ectx, s)
    s2 = session(ectx)
    owner_name = u32(0x40000001)
    ectx.policy_ticket(s2, timeout, b"", b"ref", owner_name, ticket)
    assert digest_of(ectx, s2) == first
    assert first == h(h(ZERO, u32(TPM2_CC.PolicySecret), owner_name), b"ref")


def test_policy_authorize_nv(ectx):
    parent, _ = primary(ectx)
    approved = h(ZERO, u32(TPM2_CC.PolicyCommandCode), u32(TPM2_CC.Unseal))
    nv = nv_index(ectx, 0x01500300, u16(TPM2_ALG.SHA256) + approved)
    _, nv_name = ectx.nv_read_public(nv)
    policy = h(ZERO, u32(TPM2_CC.PolicyAuthorizeNV), bytes(nv_name))
    t = session(ectx, TPM2_SE.TRIAL)
    ectx.policy_authorize_nv(nv, t, ESYS_TR.OWNER)
    assert digest_of(ectx, t) == policy
    blob, _, _ = child(ectx, parent, "keyedhash", SEAL_POLICY_ONLY, data=b"nv policy",
                       policy=policy)
    s = session(ectx)
    ectx.policy_command_code(s, TPM2_CC.Unseal)
    ectx.policy_authorize_nv(nv, s, ESYS_TR.OWNER)
    assert bytes(ectx.unseal(blob, session1=s)) == b"nv policy"
    ectx.flush_context(s)
    # A session in another state does not match the stored policy.
    s = session(ectx)
    ectx.policy_command_code(s, TPM2_CC.Sign)
    with pytest.raises(TSS2_Exception) as e:
        ectx.policy_authorize_nv(nv, s, ESYS_TR.OWNER)
    assert e.value.error == TPM2_RC.VALUE
