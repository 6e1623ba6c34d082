# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Sealed data and policies: PolicyPCR, PolicyPassword, PolicyAuthValue, PolicyOR,
PolicyCommandCode, PolicySecret, PolicySigned, PolicyAuthorize, PolicyGetDigest."""

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from tpm2_pytss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CC,
    TPM2_RC,
    TPM2_SE,
    TPM2B_PUBLIC,
    TPML_DIGEST,
    TPMT_SIGNATURE,
    TPMT_SYM_DEF,
    TSS2_Exception,
)

from helpers import child, primary

SEAL_ATTRS = 0x2 | 0x10 | 0x40  # FIXEDTPM|FIXEDPARENT|USERWITHAUTH
SEAL_POLICY_ONLY = 0x2 | 0x10  # no USERWITHAUTH: the policy is the only way in
NO_SYM = TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL)


def session(ectx, kind=TPM2_SE.POLICY):
    return ectx.start_auth_session(
        ESYS_TR.NONE, ESYS_TR.NONE, kind, NO_SYM, TPM2_ALG.SHA256
    )


def cc_policy(prev, cc, extra=b""):
    return hashlib.sha256(prev + cc.to_bytes(4, "big") + extra).digest()


def test_seal_unseal_with_password(ectx):
    parent, _ = primary(ectx)
    blob, _, _ = child(ectx, parent, "keyedhash", SEAL_ATTRS, auth=b"pw", data=b"sealed secret")
    ectx.tr_set_auth(blob, b"pw")
    assert bytes(ectx.unseal(blob)) == b"sealed secret"


def test_policy_pcr(ectx):
    parent, _ = primary(ectx)
    trial = session(ectx, TPM2_SE.TRIAL)
    ectx.policy_pcr(trial, b"", "sha256:0,16")
    policy = bytes(ectx.policy_get_digest(trial))
    ectx.flush_context(trial)
    # The digest a software client computes (Part 3, 23.7).
    _, _, pcrs = ectx.pcr_read("sha256:0,16")
    pcr_digest = hashlib.sha256(b"".join(bytes(p) for p in pcrs)).digest()
    selection = bytes.fromhex("00000001" "000b" "03" "010001")
    assert policy == cc_policy(b"\0" * 32, TPM2_CC.PolicyPCR, selection + pcr_digest)

    blob, _, _ = child(ectx, parent, "keyedhash", SEAL_POLICY_ONLY, data=b"pcr-bound", policy=policy)
    s = session(ectx)
    ectx.policy_pcr(s, b"", "sha256:0,16")
    assert bytes(ectx.unseal(blob, session1=s)) == b"pcr-bound"
    ectx.flush_context(s)

    # After an extend of PCR 16 the same policy no longer unseals.
    ectx.pcr_event(ESYS_TR.PCR16, b"changed")
    s = session(ectx)
    ectx.policy_pcr(s, b"", "sha256:0,16")
    with pytest.raises(TSS2_Exception) as e:
        ectx.unseal(blob, session1=s)
    assert e.value.error == TPM2_RC.POLICY_FAIL
    # An explicit, stale pcrDigest is refused right away.
    s2 = session(ectx)
    with pytest.raises(TSS2_Exception) as e:
        ectx.policy_pcr(s2, pcr_digest, "sha256:0,16")
    assert e.value.error == TPM2_RC.VALUE


@pytest.mark.parametrize("which", ["password", "authvalue"])
def test_policy_password_and_authvalue(ectx, which):
    parent, _ = primary(ectx)
    trial = session(ectx, TPM2_SE.TRIAL)
    getattr(ectx, "policy_" + ("password" if which == "password" else "auth_value"))(trial)
    policy = bytes(ectx.policy_get_digest(trial))
    assert policy == cc_policy(b"\0" * 32, TPM2_CC.PolicyAuthValue)
    blob, _, _ = child(ectx, parent, "keyedhash", SEAL_POLICY_ONLY, auth=b"objpw",
                       data=b"two factor", policy=policy)
    ectx.tr_set_auth(blob, b"objpw")
    s = session(ectx)
    getattr(ectx, "policy_" + ("password" if which == "password" else "auth_value"))(s)
    assert bytes(ectx.unseal(blob, session1=s)) == b"two factor"
    # A password-only client without the policy is refused (no USERWITHAUTH).
    with pytest.raises(TSS2_Exception) as e:
        ectx.unseal(blob)
    assert e.value.error == TPM2_RC.AUTH_UNAVAILABLE


def test_policy_or_and_command_code(ectx):
    parent, _ = primary(ectx)
    a = cc_policy(b"\0" * 32, TPM2_CC.PolicyCommandCode, int(TPM2_CC.Unseal).to_bytes(4, "big"))
    b = cc_policy(b"\0" * 32, TPM2_CC.PolicyCommandCode, int(TPM2_CC.Sign).to_bytes(4, "big"))
    either = cc_policy(b"\0" * 32, TPM2_CC.PolicyOR, a + b)
    blob, _, _ = child(ectx, parent, "keyedhash", SEAL_POLICY_ONLY, data=b"or", policy=either)
    s = session(ectx)
    ectx.policy_command_code(s, TPM2_CC.Unseal)
    assert bytes(ectx.policy_get_digest(s)) == a
    ectx.policy_or(s, TPML_DIGEST([a, b]))
    assert bytes(ectx.policy_get_digest(s)) == either
    assert bytes(ectx.unseal(blob, session1=s)) == b"or"
    # A branch not in the list is refused by PolicyOR itself.
    s = session(ectx)
    ectx.policy_command_code(s, TPM2_CC.Duplicate)
    with pytest.raises(TSS2_Exception) as e:
        ectx.policy_or(s, TPML_DIGEST([a, b]))
    assert e.value.error == TPM2_RC.VALUE
    # PolicyRestart starts the digest over.
    ectx.policy_restart(s)
    assert bytes(ectx.policy_get_digest(s)) == b"\0" * 32


def test_policy_secret_with_owner(ectx):
    parent, _ = primary(ectx)
    s = session(ectx)
    ectx.policy_secret(ESYS_TR.OWNER, s, b"", b"", b"", 0)
    owner_name = (0x40000001).to_bytes(4, "big")
    expect = hashlib.sha256(
        cc_policy(b"\0" * 32, TPM2_CC.PolicySecret, owner_name)
    ).digest()  # policyRef (empty) is hashed in a second step
    assert bytes(ectx.policy_get_digest(s)) == expect
    blob, _, _ = child(ectx, parent, "keyedhash", SEAL_POLICY_ONLY, data=b"owner-bound", policy=expect)
    assert bytes(ectx.unseal(blob, session1=s)) == b"owner-bound"


def ecc_signer(ectx):
    """A software ECDSA key the TPM knows only by its public part."""
    from cryptography.hazmat.primitives import serialization

    priv = ec.generate_private_key(ec.SECP256R1())
    pem = priv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pub = TPM2B_PUBLIC.from_pem(pem, objectAttributes=0x00040000 | 0x40, nameAlg=TPM2_ALG.SHA256)
    handle = ectx.load_external(pub, None, ESYS_TR.OWNER)
    return priv, pub, handle


def ecdsa(priv, data):
    r, s = decode_dss_signature(priv.sign(data, ec.ECDSA(hashes.SHA256())))
    sig = TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA)
    sig.signature.ecdsa.hash = TPM2_ALG.SHA256
    sig.signature.ecdsa.signatureR = r.to_bytes(32, "big")
    sig.signature.ecdsa.signatureS = s.to_bytes(32, "big")
    return sig


def test_policy_signed(ectx):
    parent, _ = primary(ectx)
    priv, pub, key = ecc_signer(ectx)
    name = bytes(pub.get_name())
    policy = hashlib.sha256(cc_policy(b"\0" * 32, TPM2_CC.PolicySigned, name)).digest()
    blob, _, _ = child(ectx, parent, "keyedhash", SEAL_POLICY_ONLY, data=b"signed", policy=policy)
    s = session(ectx)
    nonce = bytes(ectx.trsess_get_nonce_tpm(s))
    # aHash = H(nonceTPM || expiration || cpHashA || policyRef) (Part 3, 23.3)
    auth = ecdsa(priv, nonce + (0).to_bytes(4, "big"))
    ectx.policy_signed(key, s, nonce, b"", b"", 0, auth)
    assert bytes(ectx.unseal(blob, session1=s)) == b"signed"
    # A signature over another nonce fails.
    s = session(ectx)
    with pytest.raises(TSS2_Exception) as e:
        ectx.policy_signed(key, s, b"\x01" * 16, b"", b"", 0, auth)
    assert e.value.error in (TPM2_RC.SIGNATURE, TPM2_RC.VALUE, TPM2_RC.NONCE)


def test_policy_authorize(ectx):
    parent, _ = primary(ectx)
    priv, pub, key = ecc_signer(ectx)
    name = bytes(pub.get_name())
    # The object's policy delegates to whatever policy the key holder signs.
    auth_policy = hashlib.sha256(cc_policy(b"\0" * 32, TPM2_CC.PolicyAuthorize, name)).digest()
    blob, _, _ = child(ectx, parent, "keyedhash", SEAL_POLICY_ONLY, data=b"authorized",
                       policy=auth_policy)
    approved = cc_policy(b"\0" * 32, TPM2_CC.PolicyCommandCode, int(TPM2_CC.Unseal).to_bytes(4, "big"))
    a_hash = hashlib.sha256(approved).digest()  # policyRef empty
    ticket = ectx.verify_signature(key, a_hash, ecdsa(priv, approved))
    s = session(ectx)
    ectx.policy_command_code(s, TPM2_CC.Unseal)
    ectx.policy_authorize(s, approved, b"", name, ticket)
    assert bytes(ectx.policy_get_digest(s)) == auth_policy
    assert bytes(ectx.unseal(blob, session1=s)) == b"authorized"
