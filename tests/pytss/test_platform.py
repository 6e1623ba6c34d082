# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Platform-hierarchy management a firmware or provisioning tool sends: ChangeEPS, ChangePPS,
PP_Commands (physical presence), SetAlgorithmSet, HierarchyControl, Clear."""

import pytest
from tpm2_pytss import (
    ESYS_TR,
    TPM2_CAP,
    TPM2_CC,
    TPM2_HC,
    TPM2_RC,
    TPML_CC,
    TSS2_Exception,
)

from helpers import primary


def handles(ectx, first):
    _, data = ectx.get_capability(TPM2_CAP.HANDLES, first, 32)
    return list(data.data.handles)


def test_change_eps_makes_a_new_endorsement_hierarchy(ectx):
    ek, ekpub = primary(ectx, hierarchy=ESYS_TR.ENDORSEMENT)
    ectx.evict_control(ESYS_TR.OWNER, ek, 0x81010001)
    srk, srkpub = primary(ectx)
    ectx.hierarchy_change_auth(ESYS_TR.ENDORSEMENT, b"endorsement")
    ectx.change_eps()
    # Endorsement objects are gone, the owner's stay; the endorsement auth is empty again.
    assert handles(ectx, TPM2_HC.PERSISTENT_FIRST) == []
    assert handles(ectx, TPM2_HC.TRANSIENT_FIRST) == [ectx.tr_get_tpm_handle(srk)]
    ectx.tr_set_auth(ESYS_TR.ENDORSEMENT, b"")
    _, ekpub2 = primary(ectx, hierarchy=ESYS_TR.ENDORSEMENT)
    assert bytes(ekpub2.get_name()) != bytes(ekpub.get_name())
    _, srkpub2 = primary(ectx)
    assert bytes(srkpub2.get_name()) == bytes(srkpub.get_name())


def test_change_pps_makes_a_new_platform_hierarchy(ectx):
    pk, pkpub = primary(ectx, hierarchy=ESYS_TR.PLATFORM)
    saved = ectx.context_save(pk)
    ectx.change_pps()
    assert handles(ectx, TPM2_HC.TRANSIENT_FIRST) == []
    _, pkpub2 = primary(ectx, hierarchy=ESYS_TR.PLATFORM)
    assert bytes(pkpub2.get_name()) != bytes(pkpub.get_name())
    # The new platform proof refuses contexts saved before (Part 3, 24.4).
    with pytest.raises(TSS2_Exception):
        ectx.context_load(saved)


def test_pp_commands_needs_physical_presence(ectx):
    with pytest.raises(TSS2_Exception) as e:
        ectx.pp_commands(TPML_CC(), TPML_CC(), session1=ESYS_TR.PASSWORD)
    assert e.value.error == TPM2_RC.PP and e.value.session == 1
    # Physical presence is checked before the authorization.
    ectx.tr_set_auth(ESYS_TR.PLATFORM, b"wrong")
    with pytest.raises(TSS2_Exception) as e:
        ectx.pp_commands(TPML_CC(), TPML_CC(), session1=ESYS_TR.PASSWORD)
    assert e.value.error == TPM2_RC.PP
    _, data = ectx.get_capability(TPM2_CAP.PP_COMMANDS, 0, 32)
    assert list(data.data.ppCommands) == [TPM2_CC.PP_Commands]


def test_set_algorithm_set(ectx):
    def algorithm_set():
        _, data = ectx.get_capability(TPM2_CAP.TPM_PROPERTIES, 0x20C, 1)
        return data.data.tpmProperties[0].value

    assert algorithm_set() == 0
    ectx.set_algorithm_set(7)
    assert algorithm_set() == 7


def test_hierarchy_control_and_clear(ectx):
    srk, _ = primary(ectx)
    ectx.hierarchy_control(ESYS_TR.PLATFORM, ESYS_TR.OWNER, False)
    with pytest.raises(TSS2_Exception) as e:
        primary(ectx)
    assert e.value.error == TPM2_RC.HIERARCHY
    ectx.clear(ESYS_TR.PLATFORM)
    # Clear enables the storage hierarchy again, with a new seed.
    primary(ectx)
