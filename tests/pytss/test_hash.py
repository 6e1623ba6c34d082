# SPDX-License-Identifier: Apache-2.0 OR MIT
"""TPM2_Hash, hash and HMAC sequences, TPM2_HMAC with keyedHash keys."""

import hashlib
import hmac as pyhmac

import pytest
from tpm2_pytss import ESYS_TR, TPM2_ALG, TPM2_RC, TSS2_Exception

from helpers import child, primary

ALGS = [(TPM2_ALG.SHA1, "sha1"), (TPM2_ALG.SHA256, "sha256"), (TPM2_ALG.SHA384, "sha384")]


@pytest.mark.parametrize("alg,name", ALGS)
def test_hash(ectx, alg, name):
    digest, ticket = ectx.hash(b"abc", alg, ESYS_TR.OWNER)
    assert bytes(digest) == hashlib.new(name, b"abc").digest()
    assert ticket.tag == 0x8024  # TPM_ST_HASHCHECK
    # Data that starts with TPM_GENERATED_VALUE gets no ticket (Part 3, 15.4).
    _, ticket = ectx.hash(b"\xffTCGrest", alg, ESYS_TR.OWNER)
    assert len(bytes(ticket.digest)) == 0


def test_hash_sequence_long_input(ectx):
    data = bytes(range(256)) * 40  # 10 KiB: more than one TPM2B_MAX_BUFFER
    seq = ectx.hash_sequence_start(b"", TPM2_ALG.SHA256)
    for i in range(0, (len(data) // 1024 - 1) * 1024, 1024):
        ectx.sequence_update(seq, data[i : i + 1024])
    tail = data[(len(data) // 1024 - 1) * 1024 :]
    digest, ticket = ectx.sequence_complete(seq, tail, ESYS_TR.OWNER)
    assert bytes(digest) == hashlib.sha256(data).digest()
    assert ticket.tag == 0x8024
    # The sequence is gone after SequenceComplete.
    with pytest.raises(TSS2_Exception):
        ectx.sequence_update(seq, b"x")


def test_hash_sequence_with_auth(ectx):
    seq = ectx.hash_sequence_start(b"seqauth", TPM2_ALG.SHA384)
    ectx.tr_set_auth(seq, b"seqauth")
    ectx.sequence_update(seq, b"hello ")
    digest, _ = ectx.sequence_complete(seq, b"world", ESYS_TR.NULL)
    assert bytes(digest) == hashlib.sha384(b"hello world").digest()


def test_event_sequence(ectx):
    seq = ectx.hash_sequence_start(b"", TPM2_ALG.NULL)
    ectx.sequence_update(seq, b"event ")
    digests = ectx.event_sequence_complete(ESYS_TR.PCR16, seq, b"data")
    by_alg = {d.hashAlg: d for d in digests}
    assert TPM2_ALG.SHA256 in by_alg
    _, _, pcr = ectx.pcr_read("sha256:16")
    expect = hashlib.sha256(b"\0" * 32 + hashlib.sha256(b"event data").digest()).digest()
    assert bytes(pcr[0]) == expect


def test_hmac_key_and_sequence(ectx):
    parent, _ = primary(ectx)
    secret = b"k" * 32
    attrs = 0x00040000 | 0x00000040 | 0x2 | 0x10  # SIGN|USERWITHAUTH|FIXEDTPM|FIXEDPARENT
    key, pub, _ = child(ectx, parent, "hmac:sha256", attrs, data=secret)
    expect = pyhmac.new(secret, b"message", "sha256").digest()
    assert bytes(ectx.hmac(key, b"message", TPM2_ALG.SHA256)) == expect
    # TPM_ALG_NULL means "the key's own hash".
    assert bytes(ectx.hmac(key, b"message", TPM2_ALG.NULL)) == expect
    seq = ectx.hmac_start(key, b"", TPM2_ALG.SHA256)
    ectx.sequence_update(seq, b"mess")
    digest, _ = ectx.sequence_complete(seq, b"age", ESYS_TR.NULL)
    assert bytes(digest) == expect
    # A signing-capable HMAC key also signs (TPM_ALG_HMAC signature).
    from tpm2_pytss import TPMT_SIG_SCHEME, TPMT_TK_HASHCHECK, TPM2_RH

    digest = hashlib.sha256(b"message").digest()
    sig = ectx.sign(key, digest, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                    TPMT_TK_HASHCHECK(tag=0x8024, hierarchy=TPM2_RH.NULL))
    assert bytes(sig.signature.hmac.digest.sha256) == pyhmac.new(secret, digest, "sha256").digest()
    ectx.verify_signature(key, digest, sig)


def test_hmac_with_wrong_hash_fails(ectx):
    parent, _ = primary(ectx)
    attrs = 0x00040000 | 0x00000040 | 0x2 | 0x10
    key, _, _ = child(ectx, parent, "hmac:sha256", attrs, data=b"k" * 32)
    with pytest.raises(TSS2_Exception) as e:
        ectx.hmac(key, b"message", TPM2_ALG.SHA384)
    assert e.value.error in (TPM2_RC.SCHEME, TPM2_RC.VALUE)
