# SPDX-License-Identifier: Apache-2.0 OR MIT
"""PCR_Read, PCR_Extend, PCR_Event, PCR_Reset."""

import hashlib

import pytest
from tpm2_pytss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_RC,
    TPML_DIGEST_VALUES,
    TPMT_HA,
    TPMU_HA,
    TSS2_Exception,
)


def pcr(ectx, sel):
    _, _, digests = ectx.pcr_read(sel)
    return [bytes(d) for d in digests]


def test_read_initial_values(ectx):
    assert pcr(ectx, "sha256:0,1,2") == [b"\0" * 32] * 3
    assert pcr(ectx, "sha1:17") == [b"\xff" * 20]  # locality-reset PCRs start at -1
    upd, sel, digests = ectx.pcr_read("sha1:0+sha256:0,23")
    assert len(digests) == 3


def test_extend_matches_software_chain(ectx):
    d1 = hashlib.sha256(b"measurement 1").digest()
    d2 = hashlib.sha256(b"measurement 2").digest()
    for d in (d1, d2):
        ectx.pcr_extend(
            ESYS_TR.PCR10,
            TPML_DIGEST_VALUES([TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=d))]),
        )
    expect = b"\0" * 32
    for d in (d1, d2):
        expect = hashlib.sha256(expect + d).digest()
    assert pcr(ectx, "sha256:10") == [expect]
    # The extend only touched the bank it named.
    assert pcr(ectx, "sha1:10") == [b"\0" * 20]


def test_extend_several_banks_and_update_counter(ectx):
    before, _, _ = ectx.pcr_read("sha256:11")
    ectx.pcr_extend(
        ESYS_TR.PCR11,
        TPML_DIGEST_VALUES(
            [
                TPMT_HA(hashAlg=TPM2_ALG.SHA1, digest=TPMU_HA(sha1=b"\x01" * 20)),
                TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=b"\x02" * 32)),
            ]
        ),
    )
    after, _, _ = ectx.pcr_read("sha256:11")
    assert after > before
    assert pcr(ectx, "sha1:11") == [hashlib.sha1(b"\0" * 20 + b"\x01" * 20).digest()]


def test_event_returns_all_bank_digests(ectx):
    data = b"event data"
    digests = ectx.pcr_event(ESYS_TR.PCR12, data)
    by_alg = {d.hashAlg: bytes(d.digest.sha512)[: hashlib.new(
        {TPM2_ALG.SHA1: "sha1", TPM2_ALG.SHA256: "sha256",
         TPM2_ALG.SHA384: "sha384", TPM2_ALG.SHA512: "sha512"}[d.hashAlg]).digest_size]
        for d in digests}
    assert by_alg[TPM2_ALG.SHA256] == hashlib.sha256(data).digest()
    assert by_alg[TPM2_ALG.SHA1] == hashlib.sha1(data).digest()
    assert pcr(ectx, "sha256:12") == [
        hashlib.sha256(b"\0" * 32 + hashlib.sha256(data).digest()).digest()
    ]


def test_reset_debug_pcr_but_not_static(ectx):
    ectx.pcr_event(ESYS_TR.PCR16, b"x")
    assert pcr(ectx, "sha256:16") != [b"\0" * 32]
    ectx.pcr_reset(ESYS_TR.PCR16)
    assert pcr(ectx, "sha256:16") == [b"\0" * 32]
    with pytest.raises(TSS2_Exception) as e:
        ectx.pcr_reset(ESYS_TR.PCR0)
    assert e.value.error == TPM2_RC.LOCALITY


def test_extend_with_wrong_digest_size_fails(ectx):
    with pytest.raises(TSS2_Exception):
        ectx.pcr_extend(ESYS_TR.PCR10, TPML_DIGEST_VALUES([TPMT_HA(hashAlg=0x0099)]))


def test_pcr_group_auth_value(ectx):
    """PCRs 20-22 share an authValue (PC Client profile's authorization group)."""
    from tpm2_pytss import TPM2_CAP

    _, data = ectx.get_capability(TPM2_CAP.PCR_PROPERTIES, 0x13, 2)
    groups = {p.tag: bytes(p.pcrSelect)[: p.sizeofSelect] for p in data.data.pcrProperties}
    assert groups == {0x13: b"\0\0\x70", 0x14: b"\0\0\x70"}  # TPM_PT_PCR_POLICY, _AUTH
    ectx.pcr_set_auth_value(ESYS_TR.PCR20, b"pcrpw")
    # Esys keeps the new value for PCR20; another client must know it.
    ectx.tr_set_auth(ESYS_TR.PCR21, b"wrong")
    with pytest.raises(TSS2_Exception) as e:
        ectx.pcr_set_auth_value(ESYS_TR.PCR21, b"")
    assert e.value.error == TPM2_RC.BAD_AUTH
    ectx.tr_set_auth(ESYS_TR.PCR21, b"pcrpw")
    ectx.pcr_set_auth_value(ESYS_TR.PCR21, b"")
    # A PCR outside the group has no authValue to set.
    with pytest.raises(TSS2_Exception) as e:
        ectx.pcr_set_auth_value(ESYS_TR.PCR16, b"x")
    assert e.value.error == TPM2_RC.VALUE


def test_pcr_group_auth_policy(ectx):
    policy = hashlib.sha256(b"some policy").digest()
    ectx.pcr_set_auth_policy(policy, TPM2_ALG.SHA256, ESYS_TR.PCR20)
    with pytest.raises(TSS2_Exception) as e:
        ectx.pcr_set_auth_policy(policy[:16], TPM2_ALG.SHA256, ESYS_TR.PCR20)
    assert e.value.error == TPM2_RC.SIZE and e.value.parameter == 1
    with pytest.raises(TSS2_Exception) as e:
        ectx.pcr_set_auth_policy(policy, TPM2_ALG.SHA256, ESYS_TR.PCR16)
    assert e.value.error == TPM2_RC.VALUE and e.value.parameter == 3
    # A policy session satisfying the group's policy authorizes the PCR: here a trial of
    # PolicyAuthValue, then PCR_SetAuthValue with the real session.
    from tpm2_pytss import TPM2_CC, TPM2_SE, TPMT_SYM_DEF

    auth_value_policy = hashlib.sha256(
        b"\0" * 32 + int(TPM2_CC.PolicyAuthValue).to_bytes(4, "big")
    ).digest()
    ectx.pcr_set_auth_policy(auth_value_policy, TPM2_ALG.SHA256, ESYS_TR.PCR22)
    s = ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
    ectx.policy_auth_value(s)
    ectx.pcr_set_auth_value(ESYS_TR.PCR22, b"via policy", session1=s)
    # Clearing the policy (TPM_ALG_NULL, empty digest) is allowed.
    ectx.pcr_set_auth_policy(b"", TPM2_ALG.NULL, ESYS_TR.PCR20)


def test_pcr_allocate_takes_effect_at_the_next_reset(ectx, server):
    from tpm2_pytss import ESAPI, TPM2_CAP, TPM2_SU, TPML_PCR_SELECTION

    def banks(ctx):
        _, data = ctx.get_capability(TPM2_CAP.PCRS, 0, 8)
        return {s.hash: bytes(s.pcrSelect)[: s.sizeofSelect] for s in data.data.assignedPCR}

    assert banks(ectx)[TPM2_ALG.SHA1] == b"\xff\xff\xff"
    ok, max_pcr, needed, available = ectx.pcr_allocate(
        TPML_PCR_SELECTION.parse("sha1:3+sha256:all"))
    assert ok and max_pcr == 24 and 0 < needed < available
    # Neither the H-CRTM PCR 0 nor the D-CRTM PCR 17 left in any bank: TPM_RC_PCR.
    everything = "+".join(f"{b}:3" for b in banks_names(ectx))
    with pytest.raises(TSS2_Exception) as e:
        ectx.pcr_allocate(TPML_PCR_SELECTION.parse(everything))
    assert e.value.error == TPM2_RC.PCR
    # Nothing changes before a TPM Reset.
    assert banks(ectx)[TPM2_ALG.SHA1] == b"\xff\xff\xff"
    ectx.shutdown(TPM2_SU.CLEAR)
    server.restart()
    with ESAPI(server.tcti) as ctx:
        ctx.startup(TPM2_SU.CLEAR)
        assert banks(ctx)[TPM2_ALG.SHA1] == b"\x08\x00\x00"
        assert banks(ctx)[TPM2_ALG.SHA256] == b"\xff\xff\xff"
        # Unallocated PCRs are filtered out of PCR_Read and skipped by PCR_Extend.
        _, sel, values = ctx.pcr_read("sha1:0,3+sha256:0")
        assert [bytes(s.pcrSelect)[: s.sizeofSelect] for s in sel.pcrSelections] == [
            b"\x08\x00\x00", b"\x01\x00\x00"]
        assert len(values) == 2
        ctx.pcr_event(ESYS_TR.PCR3, b"still measured")
        ctx.pcr_allocate(TPML_PCR_SELECTION.parse("sha1:all"))


def banks_names(ectx):
    from tpm2_pytss import TPM2_CAP

    names = {TPM2_ALG.SHA1: "sha1", TPM2_ALG.SHA256: "sha256", TPM2_ALG.SHA384: "sha384",
             TPM2_ALG.SHA512: "sha512"}
    _, data = ectx.get_capability(TPM2_CAP.PCRS, 0, 8)
    return [names[s.hash] for s in data.data.assignedPCR]
