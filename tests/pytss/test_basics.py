# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Startup, capabilities, randomness, clock and self tests."""

import pytest
from tpm2_pytss import (
    ESAPI,
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_CC,
    TPM2_HC,
    TPM2_PT,
    TPM2_PT_NV,
    TPM2_PT_PCR,
    TPM2_RC,
    TPM2_SU,
    TPMT_PUBLIC_PARMS,
    TSS2_Exception,
)


def test_startup_twice_is_tolerated(ectx):
    # The TPM answers TPM_RC_INITIALIZE, which Esys_Startup reports as success.
    ectx.startup(TPM2_SU.CLEAR)
    assert len(bytes(ectx.get_random(8))) == 8


def test_fixed_properties(ectx):
    more, data = ectx.get_capability(TPM2_CAP.TPM_PROPERTIES, TPM2_PT.FIXED, 64)
    props = {p.property: p.value for p in data.data.tpmProperties}
    assert props[TPM2_PT.FAMILY_INDICATOR] == 0x322E3000  # "2.0\0"
    assert props[TPM2_PT.INPUT_BUFFER] >= 1024
    assert props[TPM2_PT.MAX_DIGEST] >= 32
    assert props[TPM2_PT_NV.BUFFER_MAX] >= 512
    assert props[TPM2_PT_PCR.COUNT] >= 24
    # The answer is sorted and starts at the requested property.
    keys = list(props)
    assert keys == sorted(keys) and keys[0] == TPM2_PT.FAMILY_INDICATOR


def test_capability_paging(ectx):
    """tpm2-tss (and FAPI) page through lists with `moreData`; every page continues the last."""
    seen = []
    start = TPM2_CC.FIRST
    for _ in range(200):
        more, data = ectx.get_capability(TPM2_CAP.COMMANDS, start, 8)
        page = [c & 0xFFFF for c in data.data.command]
        assert len(page) <= 8
        seen += page
        if not more:
            break
        start = page[-1] + 1
    assert seen == sorted(set(seen))
    for cc in (TPM2_CC.Startup, TPM2_CC.GetCapability, TPM2_CC.CreatePrimary, TPM2_CC.Quote):
        assert cc in seen


def test_algorithms_and_curves(ectx):
    _, data = ectx.get_capability(TPM2_CAP.ALGS, TPM2_ALG.FIRST, 128)
    algs = {a.alg for a in data.data.algorithms}
    for alg in (TPM2_ALG.RSA, TPM2_ALG.ECC, TPM2_ALG.SHA256, TPM2_ALG.AES, TPM2_ALG.CFB,
                TPM2_ALG.HMAC, TPM2_ALG.KEYEDHASH, TPM2_ALG.RSASSA, TPM2_ALG.RSAPSS,
                TPM2_ALG.OAEP, TPM2_ALG.ECDSA, TPM2_ALG.KDF1_SP800_108):
        assert alg in algs, hex(alg)
    _, data = ectx.get_capability(TPM2_CAP.ECC_CURVES, 0, 16)
    assert 0x0003 in list(data.data.eccCurves)  # NIST P-256


def test_pcr_and_handle_capabilities(ectx):
    _, data = ectx.get_capability(TPM2_CAP.PCRS, 0, 8)
    banks = {s.hash: bytes(s.pcrSelect)[: s.sizeofSelect] for s in data.data.assignedPCR}
    assert banks[TPM2_ALG.SHA256] == b"\xff\xff\xff"
    _, data = ectx.get_capability(TPM2_CAP.HANDLES, TPM2_HC.PERMANENT_FIRST, 32)
    handles = list(data.data.handles)
    assert 0x40000001 in handles and 0x4000000C in handles  # OWNER, PLATFORM


def test_get_random_and_stir(ectx):
    a = bytes(ectx.get_random(32))
    ectx.stir_random(b"some extra entropy")
    b = bytes(ectx.get_random(32))
    assert len(a) == len(b) == 32 and a != b
    # Requests beyond the largest digest are capped, not refused (Part 3, 16.1).
    assert 0 < len(bytes(ectx.get_random(1000))) <= 64


def test_self_test_and_result(ectx):
    ectx.self_test(True)
    ectx.incremental_self_test("sha256,aes,rsa,ecc")
    _, rc = ectx.get_test_result()
    assert rc == TPM2_RC.SUCCESS


def test_read_clock_advances(ectx):
    a = ectx.read_clock()
    b = ectx.read_clock()
    assert b.clockInfo.clock >= a.clockInfo.clock
    assert a.clockInfo.safe == 1


def test_test_parms(ectx):
    parms = TPMT_PUBLIC_PARMS(type=TPM2_ALG.RSA)
    parms.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG.NULL
    parms.parameters.rsaDetail.scheme.scheme = TPM2_ALG.NULL
    parms.parameters.rsaDetail.keyBits = 2048
    ectx.test_parms(parms)
    # TPMI_RSA_KEY_BITS: an unsupported size is an unmarshalling error (Part 2, 11.2.4).
    parms.parameters.rsaDetail.keyBits = 1234
    with pytest.raises(TSS2_Exception) as e:
        ectx.test_parms(parms)
    assert e.value.error == TPM2_RC.VALUE and e.value.parameter == 1


def test_second_connection_after_close(server):
    """A client that closes its TCTI and reconnects finds the same (started) TPM."""
    with ESAPI(server.tcti) as ctx:
        ctx.startup(TPM2_SU.CLEAR)
        ctx.pcr_event(ESYS_TR.PCR16, b"first connection")
        _, _, before = ctx.pcr_read("sha256:16")
    with ESAPI(server.tcti) as ctx:
        _, _, after = ctx.pcr_read("sha256:16")
    assert bytes(before[0]) == bytes(after[0])
