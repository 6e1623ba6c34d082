# SPDX-License-Identifier: Apache-2.0 OR MIT
"""EvictControl, ContextSave/ContextLoad of objects and sessions, FlushContext, tr_serialize."""

import pytest
from tpm2_pytss import (
    ESAPI,
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_HC,
    TPM2_RC,
    TPM2_SE,
    TPMT_SYM_DEF,
    TSS2_Exception,
)

from helpers import child, primary


def handles(ectx, first):
    _, data = ectx.get_capability(TPM2_CAP.HANDLES, first, 64)
    return list(data.data.handles)


def test_evict_control_persists_across_connections(ectx, server):
    srk, pub = primary(ectx)
    persistent = ectx.evict_control(ESYS_TR.OWNER, srk, 0x81000001)
    assert handles(ectx, TPM2_HC.PERSISTENT_FIRST) == [0x81000001]
    ectx.flush_context(srk)
    # Another client finds it by TPM handle (Esys_TR_FromTPMPublic) and uses it.
    with ESAPI(server.tcti) as other:
        h = other.tr_from_tpmpublic(0x81000001)
        assert other.tr_get_name(h).marshal() == pub.get_name().marshal()
        key, _, _ = child(other, h, "ecc256:ecdsa-sha256")
        other.flush_context(key)
    # The handle is taken.
    srk2, _ = primary(ectx)
    with pytest.raises(TSS2_Exception) as e:
        ectx.evict_control(ESYS_TR.OWNER, srk2, 0x81000001)
    assert e.value.error == TPM2_RC.NV_DEFINED
    # EvictControl on the persistent handle itself removes it.
    ectx.evict_control(ESYS_TR.OWNER, persistent, 0x81000001)
    assert handles(ectx, TPM2_HC.PERSISTENT_FIRST) == []


def test_evict_to_wrong_range_fails(ectx):
    srk, _ = primary(ectx)
    with pytest.raises(TSS2_Exception) as e:
        ectx.evict_control(ESYS_TR.OWNER, srk, 0x81800001)  # platform range
    assert e.value.error == TPM2_RC.RANGE


def test_context_save_load_object(ectx):
    srk, _ = primary(ectx)
    key, pub, _ = child(ectx, srk, "ecc256:ecdsa-sha256")
    blob = ectx.context_save(key)
    ectx.flush_context(key)
    assert len(handles(ectx, TPM2_HC.TRANSIENT_FIRST)) == 1
    key2 = ectx.context_load(blob)
    assert ectx.tr_get_name(key2).marshal() == pub.get_name().marshal()
    # The same context loads more than once for objects.
    key3 = ectx.context_load(blob)
    assert len(handles(ectx, TPM2_HC.TRANSIENT_FIRST)) == 3
    ectx.flush_context(key2)
    ectx.flush_context(key3)


def test_context_save_load_session(ectx):
    s = ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
    ectx.policy_password(s)
    digest = bytes(ectx.policy_get_digest(s))
    blob = ectx.context_save(s)
    # TPM_HT_SAVED_SESSION lists it as saved (Part 2, 7.2).
    assert len(handles(ectx, 0x03000000)) == 1
    s2 = ectx.context_load(blob)
    assert bytes(ectx.policy_get_digest(s2)) == digest
    # A session context is single-use.
    ectx.context_save(s2)
    with pytest.raises(TSS2_Exception):
        ectx.context_load(blob)


def test_serialize_esys_tr(ectx):
    srk, _ = primary(ectx)
    data = ectx.tr_serialize(srk)
    again = ectx.tr_deserialize(data)
    assert ectx.tr_get_name(again).marshal() == ectx.tr_get_name(srk).marshal()


def test_flush_unknown_handle(ectx):
    srk, _ = primary(ectx)
    ectx.flush_context(srk)
    with pytest.raises(TSS2_Exception):
        ectx.flush_context(srk)


def test_transient_slots_exhaust_then_recover(ectx):
    srk, _ = primary(ectx)
    loaded = []
    with pytest.raises(TSS2_Exception) as e:
        for _ in range(64):
            loaded.append(child(ectx, srk, "ecc256:ecdsa-sha256")[0])
    assert e.value.error == TPM2_RC.OBJECT_MEMORY
    for h in loaded:
        ectx.flush_context(h)
    child(ectx, srk, "ecc256:ecdsa-sha256")
