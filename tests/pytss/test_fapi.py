# SPDX-License-Identifier: Apache-2.0 OR MIT
"""FAPI (the feature API of tpm2-tss) through tpm2-pytss: provisioning, keys, sealing, NV,
PCRs and quotes, with both standard profiles. FAPI provisioning alone needs CreatePrimary,
EvictControl, NV_DefineSpace, NV_Write, NV_ReadPublic, policy sessions and a GetCapability that
answers every property correctly."""

import hashlib
import json

import pytest
from tpm2_pytss import FAPI, FAPIConfig


def provisioned(server, profile):
    with FAPIConfig(temp_dirs=True, tcti=server.tcti, ek_cert_less="yes", profile_name=profile):
        with FAPI() as f:
            f.provision(is_provisioned_ok=False)
            yield f


@pytest.fixture(params=["P_ECCP256SHA256", "P_RSA2048SHA256"])
def fapi(request, server):
    yield from provisioned(server, request.param)


@pytest.fixture
def fapi_rsa(server):
    # Fapi_Encrypt is RSA only in tpm2-tss 3.2 (a client limit, not the TPM's).
    yield from provisioned(server, "P_RSA2048SHA256")


def test_provision_and_list(fapi):
    paths = fapi.list("/")
    assert any(p.endswith("/HS/SRK") for p in paths)
    assert any(p.endswith("/HE/EK") for p in paths)
    assert len(fapi.get_random(32)) == 32


def test_sign_and_verify(fapi):
    fapi.create_key("/HS/SRK/sig", "sign, noDa")
    digest = hashlib.sha256(b"fapi message").digest()
    signature, public_pem, _ = fapi.sign("/HS/SRK/sig", digest)
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    fapi.verify_signature("/HS/SRK/sig", digest, signature)
    with pytest.raises(Exception):
        fapi.verify_signature("/HS/SRK/sig", bytes(32), signature)


def test_seal_unseal_with_password(fapi):
    fapi.create_seal("/HS/SRK/seal", b"fapi secret", auth_value="pw")
    fapi.set_auth_callback(lambda path, descr, user_data: b"pw")
    assert fapi.unseal("/HS/SRK/seal") == b"fapi secret"


def test_encrypt_decrypt(fapi_rsa):
    fapi_rsa.create_key("/HS/SRK/dec", "decrypt, noDa")
    ct = fapi_rsa.encrypt("/HS/SRK/dec", b"plain text")
    assert fapi_rsa.decrypt("/HS/SRK/dec", ct) == b"plain text"


def test_nv_and_counter(fapi):
    fapi.create_nv("/nv/Owner/data", 32)
    fapi.nv_write("/nv/Owner/data", b"stored by fapi")
    data, _ = fapi.nv_read("/nv/Owner/data")
    assert data[:14] == b"stored by fapi"
    fapi.create_nv("/nv/Owner/ctr", 8, "counter, noDa")
    fapi.nv_increment("/nv/Owner/ctr")
    first = int.from_bytes(fapi.nv_read("/nv/Owner/ctr")[0], "big")
    fapi.nv_increment("/nv/Owner/ctr")
    assert int.from_bytes(fapi.nv_read("/nv/Owner/ctr")[0], "big") == first + 1


def test_pcr_extend_and_quote(fapi):
    fapi.pcr_extend(16, b"fapi event", '{"test": "event"}')
    value, log = fapi.pcr_read(16)
    assert len(value) == 32 and json.loads(log)
    fapi.create_key("/HS/SRK/ak", "sign, restricted, noDa")
    info, signature, pcr_log, _ = fapi.quote("/HS/SRK/ak", [16], qualifying_data=b"nonce")
    # Raises on a bad signature, PCR digest or nonce.
    fapi.verify_quote("/HS/SRK/ak", signature, info, qualifying_data=b"nonce",
                             pcr_log=pcr_log)
