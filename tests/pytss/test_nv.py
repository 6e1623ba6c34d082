# SPDX-License-Identifier: Apache-2.0 OR MIT
"""NV indices: ordinary, counter, bits, extend; read/write locks; NV_ReadPublic names."""

import hashlib

import pytest
from tpm2_pytss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_NT,
    TPM2_RC,
    TPM2B_NV_PUBLIC,
    TPMA_NV,
    TPMS_NV_PUBLIC,
    TSS2_Exception,
)

BASE = TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHWRITE | TPMA_NV.AUTHREAD


def define(ectx, index, size, nt=TPM2_NT.ORDINARY, attrs=BASE, auth=b"", name_alg=TPM2_ALG.SHA256):
    pub = TPM2B_NV_PUBLIC(
        nvPublic=TPMS_NV_PUBLIC(
            nvIndex=index,
            nameAlg=name_alg,
            attributes=attrs | (nt << 4),  # TPM_NT occupies bits 7:4
            dataSize=size,
        )
    )
    return ectx.nv_define_space(auth, pub, ESYS_TR.OWNER)


def test_ordinary_write_read_and_partial(ectx):
    nv = define(ectx, 0x01500001, 64, auth=b"nvpw")
    ectx.tr_set_auth(nv, b"nvpw")
    ectx.nv_write(nv, b"A" * 64, 0, auth_handle=nv)
    ectx.nv_write(nv, b"hello", 10, auth_handle=nv)
    assert bytes(ectx.nv_read(nv, 64, 0, auth_handle=nv)) == b"A" * 10 + b"hello" + b"A" * 49
    assert bytes(ectx.nv_read(nv, 5, 10, auth_handle=ESYS_TR.OWNER)) == b"hello"
    with pytest.raises(TSS2_Exception) as e:
        ectx.nv_write(nv, b"x" * 10, 60, auth_handle=nv)
    assert e.value.error == TPM2_RC.NV_RANGE
    pub, name = ectx.nv_read_public(nv)
    assert pub.nvPublic.attributes & TPMA_NV.WRITTEN
    assert bytes(name) == bytes(pub.get_name())
    assert ectx.tr_get_name(nv).marshal() == name.marshal()


def test_large_index_needs_several_chunks(ectx):
    nv = define(ectx, 0x01500002, 2048)
    data = bytes(i % 251 for i in range(2048))
    # Esys_NV_Write has no chunking: pytss users split at TPM_PT_NV_BUFFER_MAX themselves.
    for off in range(0, 2048, 512):
        ectx.nv_write(nv, data[off : off + 512], off, auth_handle=ESYS_TR.OWNER)
    out = b"".join(
        bytes(ectx.nv_read(nv, 512, off, auth_handle=ESYS_TR.OWNER)) for off in range(0, 2048, 512)
    )
    assert out == data


def test_read_before_write_fails(ectx):
    nv = define(ectx, 0x01500003, 8)
    with pytest.raises(TSS2_Exception) as e:
        ectx.nv_read(nv, 8, 0, auth_handle=ESYS_TR.OWNER)
    assert e.value.error == TPM2_RC.NV_UNINITIALIZED


def test_counter(ectx):
    nv = define(ectx, 0x01500010, 8, TPM2_NT.COUNTER)
    ectx.nv_increment(nv, auth_handle=ESYS_TR.OWNER)
    first = int.from_bytes(bytes(ectx.nv_read(nv, 8, 0, auth_handle=ESYS_TR.OWNER)), "big")
    ectx.nv_increment(nv, auth_handle=ESYS_TR.OWNER)
    second = int.from_bytes(bytes(ectx.nv_read(nv, 8, 0, auth_handle=ESYS_TR.OWNER)), "big")
    assert second == first + 1
    with pytest.raises(TSS2_Exception) as e:
        ectx.nv_write(nv, b"\0" * 8, 0, auth_handle=ESYS_TR.OWNER)
    assert e.value.error == TPM2_RC.ATTRIBUTES


def test_bits_and_extend(ectx):
    bits = define(ectx, 0x01500020, 8, TPM2_NT.BITS)
    ectx.nv_set_bits(bits, 0x11, auth_handle=ESYS_TR.OWNER)
    ectx.nv_set_bits(bits, 0x0100, auth_handle=ESYS_TR.OWNER)
    assert bytes(ectx.nv_read(bits, 8, 0, auth_handle=ESYS_TR.OWNER)) == (0x0111).to_bytes(8, "big")
    ext = define(ectx, 0x01500021, 32, TPM2_NT.EXTEND)
    ectx.nv_extend(ext, b"first", auth_handle=ESYS_TR.OWNER)
    ectx.nv_extend(ext, b"second", auth_handle=ESYS_TR.OWNER)
    expect = hashlib.sha256(hashlib.sha256(b"\0" * 32 + b"first").digest() + b"second").digest()
    assert bytes(ectx.nv_read(ext, 32, 0, auth_handle=ESYS_TR.OWNER)) == expect


def test_write_lock_and_read_lock(ectx):
    nv = define(ectx, 0x01500030, 8, attrs=BASE | TPMA_NV.WRITEDEFINE | TPMA_NV.READ_STCLEAR)
    ectx.nv_write(nv, b"12345678", 0, auth_handle=ESYS_TR.OWNER)
    ectx.nv_write_lock(nv, auth_handle=ESYS_TR.OWNER)
    with pytest.raises(TSS2_Exception) as e:
        ectx.nv_write(nv, b"x", 0, auth_handle=ESYS_TR.OWNER)
    assert e.value.error == TPM2_RC.NV_LOCKED
    ectx.nv_read_lock(nv, auth_handle=ESYS_TR.OWNER)
    with pytest.raises(TSS2_Exception) as e:
        ectx.nv_read(nv, 8, 0, auth_handle=ESYS_TR.OWNER)
    assert e.value.error == TPM2_RC.NV_LOCKED


def test_undefine_and_reuse(ectx):
    nv = define(ectx, 0x01500040, 16)
    with pytest.raises(TSS2_Exception) as e:
        define(ectx, 0x01500040, 16)
    assert e.value.error == TPM2_RC.NV_DEFINED
    ectx.nv_undefine_space(nv, ESYS_TR.OWNER)
    nv = define(ectx, 0x01500040, 32)
    pub, _ = ectx.nv_read_public(nv)
    assert pub.nvPublic.dataSize == 32
    from tpm2_pytss import TPM2_CAP, TPM2_HC

    _, data = ectx.get_capability(TPM2_CAP.HANDLES, TPM2_HC.NV_INDEX_FIRST, 32)
    assert list(data.data.handles) == [0x01500040]


def test_change_auth_with_policy_command_code(ectx):
    """NV_ChangeAuth is policy-only (ADMIN role): PolicyCommandCode(NV_ChangeAuth)."""
    from tpm2_pytss import TPM2_CC, TPM2_SE, TPMT_SYM_DEF

    policy = hashlib.sha256(
        b"\0" * 32 + int(TPM2_CC.PolicyCommandCode).to_bytes(4, "big")
        + int(TPM2_CC.NV_ChangeAuth).to_bytes(4, "big")
    ).digest()
    pub = TPM2B_NV_PUBLIC(
        nvPublic=TPMS_NV_PUBLIC(
            nvIndex=0x01500050, nameAlg=TPM2_ALG.SHA256,
            attributes=TPMA_NV.AUTHWRITE | TPMA_NV.AUTHREAD, authPolicy=policy, dataSize=4,
        )
    )
    nv = ectx.nv_define_space(b"old", pub, ESYS_TR.OWNER)
    s = ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
    ectx.policy_command_code(s, TPM2_CC.NV_ChangeAuth)
    ectx.nv_change_auth(nv, b"new", session1=s)
    ectx.tr_set_auth(nv, b"new")
    ectx.nv_write(nv, b"abcd", 0, auth_handle=nv)
    assert bytes(ectx.nv_read(nv, 4, 0, auth_handle=nv)) == b"abcd"
