# SPDX-License-Identifier: Apache-2.0 OR MIT
"""HMAC sessions as ESAPI builds them: unsalted/unbound, salted (RSA and ECC tpmKey), bound,
parameter encryption of commands (DECRYPT) and responses (ENCRYPT), audit."""

import pytest
from tpm2_pytss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_RC,
    TPM2_SE,
    TPMA_SESSION,
    TPMT_SYM_DEF,
    TSS2_Exception,
)

from helpers import SRK_ATTRS, child, primary

AES128CFB = TPMT_SYM_DEF(algorithm=TPM2_ALG.AES)
AES128CFB.keyBits.aes = 128
AES128CFB.mode.aes = TPM2_ALG.CFB
NO_SYM = TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL)
SEAL_ATTRS = 0x2 | 0x10 | 0x40


def hmac_session(ectx, tpm_key=ESYS_TR.NONE, bind=ESYS_TR.NONE, sym=AES128CFB, hash_alg=TPM2_ALG.SHA256):
    s = ectx.start_auth_session(tpm_key, bind, TPM2_SE.HMAC, sym, hash_alg)
    ectx.trsess_set_attributes(s, TPMA_SESSION.CONTINUESESSION)
    return s


@pytest.mark.parametrize("hash_alg", [TPM2_ALG.SHA1, TPM2_ALG.SHA256, TPM2_ALG.SHA384])
def test_unsalted_hmac_session_authorizes(ectx, hash_alg):
    parent, _ = primary(ectx)
    blob, _, _ = child(ectx, parent, "keyedhash", SEAL_ATTRS, auth=b"pw", data=b"via hmac")
    ectx.tr_set_auth(blob, b"pw")
    s = hmac_session(ectx, hash_alg=hash_alg)
    for _ in range(3):  # the nonces roll on every use
        assert bytes(ectx.unseal(blob, session1=s)) == b"via hmac"
    ectx.tr_set_auth(blob, b"bad")
    with pytest.raises(TSS2_Exception) as e:
        ectx.unseal(blob, session1=s)
    assert e.value.error == TPM2_RC.AUTH_FAIL


@pytest.mark.parametrize("salt_alg", ["rsa2048:aes128cfb", "ecc256:aes128cfb"])
def test_salted_session_with_parameter_encryption(ectx, salt_alg):
    srk, _ = primary(ectx, salt_alg)
    blob, _, _ = child(ectx, srk, "keyedhash", SEAL_ATTRS, auth=b"pw", data=b"encrypted on the wire")
    ectx.tr_set_auth(blob, b"pw")
    s = hmac_session(ectx, tpm_key=srk)
    # Response parameter encryption: the unsealed data is AES-CFB encrypted by the TPM.
    ectx.trsess_set_attributes(s, TPMA_SESSION.ENCRYPT | TPMA_SESSION.CONTINUESESSION)
    assert bytes(ectx.unseal(blob, session1=s)) == b"encrypted on the wire"
    # Command parameter encryption: the sensitive data of Create goes encrypted.
    ectx.trsess_set_attributes(
        s, TPMA_SESSION.DECRYPT | TPMA_SESSION.ENCRYPT | TPMA_SESSION.CONTINUESESSION
    )
    from helpers import sensitive
    from tpm2_pytss import TPM2B_PUBLIC

    priv, pub, _, _, _ = ectx.create(
        srk, sensitive(b"pw2", b"sent encrypted"), TPM2B_PUBLIC.parse("keyedhash", SEAL_ATTRS),
        session1=s,
    )
    blob2 = ectx.load(srk, priv, pub, session1=s)
    ectx.tr_set_auth(blob2, b"pw2")
    assert bytes(ectx.unseal(blob2, session1=s)) == b"sent encrypted"


def test_encrypt_only_session_alongside_password(ectx):
    """tpm2-tools' pattern: password auth in session 1, an audit/encrypt session in session 2."""
    srk, _ = primary(ectx)
    blob, _, _ = child(ectx, srk, "keyedhash", SEAL_ATTRS, auth=b"pw", data=b"second session")
    ectx.tr_set_auth(blob, b"pw")
    enc = ectx.start_auth_session(srk, ESYS_TR.NONE, TPM2_SE.HMAC, AES128CFB, TPM2_ALG.SHA256)
    ectx.trsess_set_attributes(enc, TPMA_SESSION.ENCRYPT | TPMA_SESSION.CONTINUESESSION)
    assert bytes(ectx.unseal(blob, session1=ESYS_TR.PASSWORD, session2=enc)) == b"second session"
    r = ectx.get_random(16, session1=enc)
    assert len(bytes(r)) == 16


def test_bound_session(ectx):
    """A session bound to the owner hierarchy authorizes the owner (bind entity: its authValue is
    already in the session key) and other entities (Part 1, 19.6.11)."""
    ectx.hierarchy_change_auth(ESYS_TR.OWNER, b"ownerpw")
    ectx.tr_set_auth(ESYS_TR.OWNER, b"ownerpw")
    s = hmac_session(ectx, bind=ESYS_TR.OWNER)
    ectx.trsess_set_attributes(s, TPMA_SESSION.DECRYPT | TPMA_SESSION.CONTINUESESSION)
    from helpers import sensitive
    from tpm2_pytss import TPM2B_PUBLIC

    handle, _, _, _, _ = ectx.create_primary(
        sensitive(b"srkpw"), TPM2B_PUBLIC.parse("ecc256:aes128cfb", SRK_ATTRS), ESYS_TR.OWNER,
        session1=s,
    )
    ectx.tr_set_auth(handle, b"srkpw")
    priv, pub, _, _, _ = ectx.create(
        handle, sensitive(b"", b"bound"), TPM2B_PUBLIC.parse("keyedhash", SEAL_ATTRS), session1=s
    )
    ectx.tr_set_auth(ESYS_TR.OWNER, b"wrong")
    with pytest.raises(TSS2_Exception) as e:
        ectx.create_primary(sensitive(), TPM2B_PUBLIC.parse("ecc256:aes128cfb", SRK_ATTRS),
                            ESYS_TR.OWNER, session1=s)
    # Hierarchies are not DA-protected: BAD_AUTH, not AUTH_FAIL.
    assert e.value.error == TPM2_RC.BAD_AUTH


def test_salted_and_bound_with_xor(ectx):
    srk, _ = primary(ectx)
    key, _, _ = child(ectx, srk, "ecc256:ecdsa-sha256", auth=b"keypw")
    ectx.tr_set_auth(key, b"keypw")
    xor = TPMT_SYM_DEF(algorithm=TPM2_ALG.XOR)
    xor.keyBits.exclusiveOr = TPM2_ALG.SHA256
    s = hmac_session(ectx, tpm_key=srk, bind=key, sym=xor)
    ectx.trsess_set_attributes(s, TPMA_SESSION.ENCRYPT | TPMA_SESSION.CONTINUESESSION)
    from tpm2_pytss import TPM2_RH, TPMT_SIG_SCHEME, TPMT_TK_HASHCHECK

    sig = ectx.sign(key, b"\x44" * 32, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                    TPMT_TK_HASHCHECK(tag=0x8024, hierarchy=TPM2_RH.NULL), session1=s)
    assert sig.sigAlg == TPM2_ALG.ECDSA
    ectx.verify_signature(key, b"\x44" * 32, sig)


def test_audit_session_digest(ectx):
    s = ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.HMAC, NO_SYM, TPM2_ALG.SHA256)
    ectx.trsess_set_attributes(s, TPMA_SESSION.AUDIT | TPMA_SESSION.CONTINUESESSION)
    ectx.get_random(8, session1=s)
    ectx.get_random(8, session1=s)
    srk, _ = primary(ectx, "ecc256:aes128cfb")
    signer, pub, _ = child(ectx, srk, "ecc256:ecdsa-sha256")
    from tpm2_pytss import TPMT_SIG_SCHEME, TPMS_ATTEST, TPM2_ST

    attest, sig = ectx.get_session_audit_digest(
        signer, s, b"qualify", TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
    )
    info, _ = TPMS_ATTEST.unmarshal(bytes(attest))
    assert info.type == TPM2_ST.ATTEST_SESSION_AUDIT
    assert len(bytes(info.attested.sessionAudit.sessionDigest)) == 32
    sig.verify_signature(pub, bytes(attest))


def test_session_limits_and_flush(ectx):
    sessions = [
        ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.HMAC, NO_SYM, TPM2_ALG.SHA256)
        for _ in range(3)
    ]
    for s in sessions:
        ectx.flush_context(s)
    with pytest.raises(TSS2_Exception):
        ectx.flush_context(sessions[0])
