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
