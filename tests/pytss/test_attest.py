# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Attestation and key transport: Quote, Certify, CertifyCreation, GetTime, NV_Certify,
MakeCredential/ActivateCredential (TPM and tpm2_pytss.utils), Duplicate/Import (TPM and
utils.wrap/unwrap)."""

import hashlib
import os

import pytest
from tpm2_pytss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CC,
    TPM2_RC,
    TPM2_SE,
    TPM2_ST,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE,
    TPMS_ATTEST,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
    TPMT_SYM_DEF_OBJECT,
    TSS2_Exception,
)
from tpm2_pytss.utils import NVReadEK, create_ek_template, make_credential, unwrap, wrap

from helpers import DECRYPT_ATTRS, SIGN_ATTRS, SRK_ATTRS, child, primary, sensitive

NULL_SCHEME = TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
AK_ATTRS = SIGN_ATTRS | 0x00010000  # RESTRICTED


def attest_key(ectx, alg="ecc256:ecdsa-sha256"):
    srk, _ = primary(ectx, "ecc256:aes128cfb")
    key, pub, _ = child(ectx, srk, alg, AK_ATTRS)
    ectx.flush_context(srk)  # swtpm has three transient slots
    return key, pub


def parse(attest):
    info, _ = TPMS_ATTEST.unmarshal(bytes(attest))
    assert info.magic == 0xFF544347  # TPM_GENERATED_VALUE
    return info


@pytest.mark.parametrize("alg", ["ecc256:ecdsa-sha256", "rsa2048:rsassa-sha256", "rsa2048:rsapss-sha256"])
def test_quote(ectx, alg):
    ak, pub = attest_key(ectx, alg)
    ectx.pcr_event(ESYS_TR.PCR16, b"quoted")
    nonce = os.urandom(16)
    attest, sig = ectx.quote(ak, "sha256:0,16", nonce, NULL_SCHEME)
    sig.verify_signature(pub, bytes(attest))
    info = parse(attest)
    assert info.type == TPM2_ST.ATTEST_QUOTE
    assert bytes(info.extraData) == nonce
    _, _, pcrs = ectx.pcr_read("sha256:0,16")
    assert bytes(info.attested.quote.pcrDigest) == hashlib.sha256(
        b"".join(bytes(p) for p in pcrs)
    ).digest()
    assert info.qualifiedSigner.marshal() == ectx.read_public(ak)[2].marshal()


def test_certify_and_certify_creation(ectx):
    ak, akpub = attest_key(ectx)
    srk, _ = primary(ectx)
    priv, pub, _, creation_hash, ticket = ectx.create(
        srk, sensitive(b"objpw"), TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", SIGN_ATTRS)
    )
    obj = ectx.load(srk, priv, pub)
    ectx.flush_context(srk)
    ectx.tr_set_auth(obj, b"objpw")
    attest, sig = ectx.certify(obj, ak, b"certify-nonce", NULL_SCHEME)
    sig.verify_signature(akpub, bytes(attest))
    info = parse(attest)
    assert info.type == TPM2_ST.ATTEST_CERTIFY
    assert bytes(info.attested.certify.name) == bytes(pub.get_name())
    attest, sig = ectx.certify_creation(ak, obj, b"cc", creation_hash, NULL_SCHEME, ticket)
    sig.verify_signature(akpub, bytes(attest))
    assert parse(attest).type == TPM2_ST.ATTEST_CREATION


def test_get_time(ectx):
    ak, akpub = attest_key(ectx)
    attest, sig = ectx.get_time(ak, b"time", NULL_SCHEME)
    sig.verify_signature(akpub, bytes(attest))
    assert parse(attest).type == TPM2_ST.ATTEST_TIME


def test_nv_certify(ectx):
    from tpm2_pytss import TPM2B_NV_PUBLIC, TPMA_NV, TPMS_NV_PUBLIC

    ak, akpub = attest_key(ectx)
    pub = TPM2B_NV_PUBLIC(nvPublic=TPMS_NV_PUBLIC(
        nvIndex=0x01500100, nameAlg=TPM2_ALG.SHA256,
        attributes=TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.AUTHWRITE,
        dataSize=16))
    nv = ectx.nv_define_space(b"", pub, ESYS_TR.OWNER)
    ectx.nv_write(nv, b"certified bytes!", 0, auth_handle=ESYS_TR.OWNER)
    attest, sig = ectx.nv_certify(ak, nv, b"q", NULL_SCHEME, 16, 0, auth_handle=ESYS_TR.OWNER)
    sig.verify_signature(akpub, bytes(attest))
    info = parse(attest)
    assert info.type == TPM2_ST.ATTEST_NV
    assert bytes(info.attested.nv.nvContents) == b"certified bytes!"


def ek_and_ak(ectx, ek_template="EK-RSA2048"):
    # NVReadEK looks for a template in the TCG EK NV indices first (Credential Profile, 2.2.1.5).
    _, template = create_ek_template(ek_template, NVReadEK(ectx))
    ek, ekpub, _, _, _ = ectx.create_primary(sensitive(), template, ESYS_TR.ENDORSEMENT)
    ak, akpub = attest_key(ectx)
    return ek, ekpub, ak, akpub


def policy_secret_endorsement(ectx):
    s = ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
    ectx.policy_secret(ESYS_TR.ENDORSEMENT, s, b"", b"", b"", 0)
    return s


@pytest.mark.parametrize("ek_template", ["EK-RSA2048", "EK-ECC256"])
def test_make_activate_credential_in_software(ectx, ek_template):
    """The enrollment flow of an attestation server: utils.make_credential off the TPM."""
    ek, ekpub, ak, akpub = ek_and_ak(ectx, ek_template)
    secret = os.urandom(32)
    blob, seed = make_credential(ekpub, secret, akpub.get_name())
    s = policy_secret_endorsement(ectx)
    got = ectx.activate_credential(ak, ek, blob, seed, session2=s)
    assert bytes(got) == secret


def test_make_activate_credential_in_tpm(ectx):
    ek, ekpub, ak, akpub = ek_and_ak(ectx)
    ek_ext = ectx.load_external(ekpub, None, ESYS_TR.OWNER)
    secret = os.urandom(20)
    blob, seed = ectx.make_credential(ek_ext, secret, akpub.get_name())
    s = policy_secret_endorsement(ectx)
    assert bytes(ectx.activate_credential(ak, ek, blob, seed, session2=s)) == secret
    # A credential for another name does not activate.
    blob, seed = ectx.make_credential(ek_ext, secret, ekpub.get_name())
    s = policy_secret_endorsement(ectx)
    with pytest.raises(TSS2_Exception) as e:
        ectx.activate_credential(ak, ek, blob, seed, session2=s)
    assert e.value.error == TPM2_RC.INTEGRITY


DUP_POLICY = hashlib.sha256(
    b"\0" * 32 + int(TPM2_CC.PolicyCommandCode).to_bytes(4, "big")
    + int(TPM2_CC.Duplicate).to_bytes(4, "big")
).digest()


def test_duplicate_to_software_and_unwrap(ectx):
    """Duplicate with an inner wrapper to a parent whose private key we hold; unwrap in Python."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    srk, _ = primary(ectx)
    key, pub, _ = child(ectx, srk, "ecc256:ecdsa-sha256", SIGN_ATTRS & ~0x12, policy=DUP_POLICY)
    sw = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = sw.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())
    newparent = TPM2B_PUBLIC.from_pem(pem, objectAttributes=SRK_ATTRS & ~0x32 | 0x0,
                                      symmetric=TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES,
                                                                    keyBits={"aes": 128},
                                                                    mode={"aes": TPM2_ALG.CFB}))
    np_handle = ectx.load_external(newparent, None, ESYS_TR.OWNER)
    s = ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
    ectx.policy_command_code(s, TPM2_CC.Duplicate)
    symdef = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES, keyBits={"aes": 128},
                                 mode={"aes": TPM2_ALG.CFB})
    enckey, dup, seed = ectx.duplicate(key, np_handle, None, symdef, session1=s)
    sens = unwrap(newparent.publicArea, TPM2B_SENSITIVE.from_pem(pem).sensitiveArea, pub, dup,
                  seed, bytes(enckey), symdef)
    assert sens.sensitiveArea.sensitiveType == TPM2_ALG.ECC
    assert len(bytes(sens.sensitiveArea.sensitive.ecc)) == 32


def test_wrap_in_software_and_import(ectx):
    """utils.wrap: a software key wrapped for a TPM parent, then TPM2_Import and use."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    srk, srkpub = primary(ectx)
    sw = ec.generate_private_key(ec.SECP256R1())
    pem = sw.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())
    pub = TPM2B_PUBLIC.from_pem(pem, objectAttributes=0x00040000 | 0x40)
    sens = TPM2B_SENSITIVE.from_pem(pem)
    symdef = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES, keyBits={"aes": 128},
                                 mode={"aes": TPM2_ALG.CFB})
    enckey, dup, seed = wrap(srkpub.publicArea, pub, sens, None, symdef)
    priv = ectx.import_(srk, enckey, pub, dup, seed, symdef)
    key = ectx.load(srk, priv, pub)
    digest = hashlib.sha256(b"imported").digest()
    from tpm2_pytss import TPM2_RH, TPMT_TK_HASHCHECK

    s = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
    s.details.any.hashAlg = TPM2_ALG.SHA256
    sig = ectx.sign(key, digest, s, TPMT_TK_HASHCHECK(tag=0x8024, hierarchy=TPM2_RH.NULL))
    sig.verify_signature(pub, b"imported")
    # Without inner wrapper too (symmetric NULL, outer protection only).
    enckey, dup, seed = wrap(srkpub.publicArea, pub, sens, None, None)
    priv = ectx.import_(srk, b"", pub, dup, seed, TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL))
    ectx.load(srk, priv, pub)


def test_duplicate_between_tpm_parents_and_import(ectx):
    srk, _ = primary(ectx)
    dst, dstpub = primary(ectx, "ecc256:aes128cfb")
    key, pub, _ = child(ectx, srk, "rsa2048:rsassa-sha256", SIGN_ATTRS & ~0x12, policy=DUP_POLICY)
    s = ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
    ectx.policy_command_code(s, TPM2_CC.Duplicate)
    symdef = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES, keyBits={"aes": 128},
                                 mode={"aes": TPM2_ALG.CFB})
    enckey, dup, seed = ectx.duplicate(key, dst, None, symdef, session1=s)
    ectx.flush_context(key)
    priv = ectx.import_(dst, enckey, pub, dup, seed, symdef)
    moved = ectx.load(dst, priv, pub)
    assert ectx.tr_get_name(moved).marshal() == pub.get_name().marshal()


def test_rewrap_moves_a_duplicate_to_another_parent(ectx):
    """Duplicate to parent A, Rewrap from A to B, Import under B (Part 3, 13.2)."""
    srk, _ = primary(ectx, "ecc256:aes128cfb")
    key, pub, _ = child(ectx, srk, "ecc256:ecdsa-sha256", SIGN_ATTRS & ~0x12, policy=DUP_POLICY)
    a, _ = primary(ectx, "rsa2048:aes128cfb")
    s = ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
    ectx.policy_command_code(s, TPM2_CC.Duplicate)
    symdef = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.AES, keyBits={"aes": 128},
                                 mode={"aes": TPM2_ALG.CFB})
    enckey, dup, seed = ectx.duplicate(key, a, b"sixteen byte key", symdef, session1=s)
    ectx.flush_context(key)
    ectx.flush_context(srk)
    b, _ = primary(ectx, "rsa2048:aes256cfb")
    name = pub.get_name()
    dup2, seed2 = ectx.rewrap(a, b, dup, name, seed)
    assert bytes(dup2) != bytes(dup)
    # The old parent can no longer import it; the new one can.
    with pytest.raises(TSS2_Exception):
        ectx.import_(a, b"sixteen byte key", pub, dup2, seed2, symdef)
    priv = ectx.import_(b, b"sixteen byte key", pub, dup2, seed2, symdef)
    moved = ectx.load(b, priv, pub)
    assert ectx.tr_get_name(moved).marshal() == name.marshal()
    # A seed without an old parent (or the reverse) is refused.
    with pytest.raises(TSS2_Exception) as e:
        ectx.rewrap(ESYS_TR.NULL, b, dup, name, seed)
    assert e.value.error == TPM2_RC.HANDLE
    # To NULL: the outer wrap comes off, the inner one stays.
    inner, no_seed = ectx.rewrap(b, ESYS_TR.NULL, dup2, name, seed2)
    assert len(bytes(no_seed)) == 0 and len(bytes(inner)) < len(bytes(dup2))
