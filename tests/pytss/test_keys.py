# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Primary and child keys: sign/verify, RSA encrypt/decrypt, symmetric ciphers, key import."""

import hashlib
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from tpm2_pytss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_RC,
    TPM2_RH,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE,
    TPMT_RSA_DECRYPT,
    TPMT_SIG_SCHEME,
    TPMT_TK_HASHCHECK,
    TSS2_Exception,
)

from helpers import DECRYPT_ATTRS, SIGN_ATTRS, child, primary, sensitive

NULL_TICKET = TPMT_TK_HASHCHECK(tag=0x8024, hierarchy=TPM2_RH.NULL)


@pytest.mark.parametrize("alg", ["rsa2048:aes128cfb", "ecc256:aes128cfb", "rsa3072:aes256cfb", "ecc384:aes256cfb"])
def test_create_primary_is_deterministic(ectx, alg):
    h1, pub1 = primary(ectx, alg)
    h2, pub2 = primary(ectx, alg)
    assert pub1.get_name().marshal() == pub2.get_name().marshal()
    assert ectx.tr_get_name(h1).marshal() == pub1.get_name().marshal()
    ectx.flush_context(h1)
    ectx.flush_context(h2)
    # A different hierarchy has a different seed.
    h3, pub3 = primary(ectx, alg, hierarchy=ESYS_TR.ENDORSEMENT)
    assert pub3.get_name().marshal() != pub1.get_name().marshal()


def test_read_public_and_name(ectx):
    parent, _ = primary(ectx)
    key, pub, _ = child(ectx, parent, "ecc256:ecdsa-sha256")
    out, name, qname = ectx.read_public(key)
    assert out.marshal() == pub.marshal()
    assert name.marshal() == pub.get_name().marshal()
    assert len(bytes(qname)) == 34


@pytest.mark.parametrize(
    "alg,scheme,halg",
    [
        ("rsa2048:rsassa-sha256", TPM2_ALG.RSASSA, TPM2_ALG.SHA256),
        ("rsa2048:rsapss-sha256", TPM2_ALG.RSAPSS, TPM2_ALG.SHA256),
        ("rsa2048:null", TPM2_ALG.RSASSA, TPM2_ALG.SHA384),
        ("ecc256:ecdsa-sha256", TPM2_ALG.ECDSA, TPM2_ALG.SHA256),
        ("ecc384:ecdsa-sha384", TPM2_ALG.ECDSA, TPM2_ALG.SHA384),
    ],
)
def test_sign_and_verify(ectx, alg, scheme, halg):
    parent, _ = primary(ectx)
    key, pub, _ = child(ectx, parent, alg)
    message = b"message signed by the TPM"
    hname = {TPM2_ALG.SHA256: "sha256", TPM2_ALG.SHA384: "sha384"}[halg]
    digest = hashlib.new(hname, message).digest()
    s = TPMT_SIG_SCHEME(scheme=scheme)
    s.details.any.hashAlg = halg
    sig = ectx.sign(key, digest, s, NULL_TICKET)
    assert sig.sigAlg == scheme
    # Verified by the TPM ...
    ticket = ectx.verify_signature(key, digest, sig)
    assert ticket.tag == 0x8022  # TPM_ST_VERIFIED
    # ... and by a software verifier (pytss uses python-cryptography).
    sig.verify_signature(pub, message)
    # A wrong digest is rejected.
    with pytest.raises(TSS2_Exception) as e:
        ectx.verify_signature(key, bytes(len(digest)), sig)
    assert e.value.error == TPM2_RC.SIGNATURE


def test_sign_with_hash_ticket_for_restricted_key(ectx):
    parent, _ = primary(ectx)
    attrs = SIGN_ATTRS | 0x10000  # RESTRICTED
    key, pub, _ = child(ectx, parent, "ecc256:ecdsa-sha256", attrs)
    message = b"not starting with TPM_GENERATED_VALUE"
    digest, ticket = ectx.hash(message, TPM2_ALG.SHA256, ESYS_TR.OWNER)
    s = TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
    sig = ectx.sign(key, digest, s, ticket)
    sig.verify_signature(pub, message)
    # Without the ticket a restricted key refuses (Part 3, 20.2).
    with pytest.raises(TSS2_Exception) as e:
        ectx.sign(key, digest, s, NULL_TICKET)
    assert e.value.error == TPM2_RC.TICKET


def test_load_external_public_and_verify_software_signature(ectx):
    priv = ec.generate_private_key(ec.SECP256R1())
    pem = priv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pub = TPM2B_PUBLIC.from_pem(pem, objectAttributes=0x00040000 | 0x00000040)  # SIGN|USERWITHAUTH
    handle = ectx.load_external(pub, None, ESYS_TR.OWNER)
    message = b"signed outside the TPM"
    der = priv.sign(message, ec.ECDSA(hashes.SHA256()))
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from tpm2_pytss import TPMT_SIGNATURE

    r, s = decode_dss_signature(der)
    sig = TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA)
    sig.signature.ecdsa.hash = TPM2_ALG.SHA256
    sig.signature.ecdsa.signatureR = r.to_bytes(32, "big")
    sig.signature.ecdsa.signatureS = s.to_bytes(32, "big")
    ectx.verify_signature(handle, hashlib.sha256(message).digest(), sig)


def test_load_external_private_rsa_key_and_sign(ectx):
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = TPM2B_PUBLIC.from_pem(pem, objectAttributes=0x00040000 | 0x00000040)
    sens = TPM2B_SENSITIVE.from_pem(pem)
    # With a private part only the NULL hierarchy is allowed (Part 3, 12.3.1).
    with pytest.raises(TSS2_Exception) as e:
        ectx.load_external(public, sens, ESYS_TR.OWNER)
    assert e.value.error == TPM2_RC.HIERARCHY and e.value.parameter == 3
    handle = ectx.load_external(public, sens, ESYS_TR.NULL)
    digest = hashlib.sha256(b"abc").digest()
    s = TPMT_SIG_SCHEME(scheme=TPM2_ALG.RSASSA)
    s.details.any.hashAlg = TPM2_ALG.SHA256
    sig = ectx.sign(handle, digest, s, NULL_TICKET)
    key.public_key().verify(
        bytes(sig.signature.rsassa.sig), b"abc", padding.PKCS1v15(), hashes.SHA256()
    )


@pytest.mark.parametrize("scheme", [TPM2_ALG.OAEP, TPM2_ALG.RSAES])
def test_rsa_encrypt_decrypt(ectx, scheme):
    parent, _ = primary(ectx)
    key, pub, _ = child(ectx, parent, "rsa2048", DECRYPT_ATTRS)
    s = TPMT_RSA_DECRYPT(scheme=scheme)
    if scheme == TPM2_ALG.OAEP:
        s.details.oaep.hashAlg = TPM2_ALG.SHA256
    label = b"label\0" if scheme == TPM2_ALG.OAEP else None
    ct = ectx.rsa_encrypt(key, b"secret message", s, label)
    assert bytes(ectx.rsa_decrypt(key, ct, s, label)) == b"secret message"
    if scheme == TPM2_ALG.OAEP:
        # A ciphertext from a software encryptor decrypts too.
        n = int.from_bytes(bytes(pub.publicArea.unique.rsa), "big")
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

        swkey = RSAPublicNumbers(65537, n).public_key()
        ct2 = swkey.encrypt(
            b"from software",
            padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"label\0"),
        )
        assert bytes(ectx.rsa_decrypt(key, ct2, s, label)) == b"from software"


@pytest.mark.parametrize("mode", [TPM2_ALG.CFB, TPM2_ALG.CBC, TPM2_ALG.CTR, TPM2_ALG.OFB, TPM2_ALG.ECB])
def test_encrypt_decrypt_aes(ectx, mode):
    parent, _ = primary(ectx)
    secret = os.urandom(16)
    name = {TPM2_ALG.CFB: "cfb", TPM2_ALG.CBC: "cbc", TPM2_ALG.CTR: "ctr",
            TPM2_ALG.OFB: "ofb", TPM2_ALG.ECB: "ecb"}[mode]
    attrs = (0x00020000 | 0x00040000 | 0x00000040 | 0x2 | 0x10)  # DECRYPT|SIGN|USERWITHAUTH|FIXEDTPM|FIXEDPARENT
    key, _, _ = child(ectx, parent, "aes128" + name, attrs, data=secret)
    iv = os.urandom(16) if mode != TPM2_ALG.ECB else b""
    plain = os.urandom(64)
    ct, iv_out = ectx.encrypt_decrypt_2(key, False, mode, iv, plain)
    ct2, _ = ectx.encrypt_decrypt(key, False, mode, iv, plain)
    assert bytes(ct) == bytes(ct2)
    swmode = {
        "cfb": lambda: modes.CFB(iv),
        "cbc": lambda: modes.CBC(iv),
        "ctr": lambda: modes.CTR(iv),
        "ofb": lambda: modes.OFB(iv),
        "ecb": lambda: modes.ECB(),
    }[name]()
    enc = Cipher(algorithms.AES(secret), swmode).encryptor()
    assert bytes(ct) == enc.update(plain) + enc.finalize()
    back, _ = ectx.encrypt_decrypt_2(key, True, mode, iv, ct)
    assert bytes(back) == plain


def test_object_change_auth(ectx):
    parent, _ = primary(ectx)
    key, pub, _ = child(ectx, parent, "ecc256:ecdsa-sha256", auth=b"old")
    ectx.tr_set_auth(key, b"old")
    new_priv = ectx.object_change_auth(key, parent, b"new")
    ectx.flush_context(key)
    key = ectx.load(parent, new_priv, pub)
    ectx.tr_set_auth(key, b"new")
    s = TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
    ectx.sign(key, b"\x11" * 32, s, NULL_TICKET)
    ectx.tr_set_auth(key, b"old")
    with pytest.raises(TSS2_Exception) as e:
        ectx.sign(key, b"\x11" * 32, s, NULL_TICKET)
    assert e.value.error == TPM2_RC.AUTH_FAIL


def test_create_loaded_derived_and_ordinary(ectx):
    parent, _ = primary(ectx)
    from tpm2_pytss import TPM2B_TEMPLATE

    tmpl = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", SIGN_ATTRS).publicArea
    handle, priv, pub = ectx.create_loaded(parent, sensitive(), TPM2B_TEMPLATE(tmpl.marshal()))
    assert pub.publicArea.type == TPM2_ALG.ECC
    digest = hashlib.sha256(b"created and loaded").digest()
    sig = ectx.sign(handle, digest, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL), NULL_TICKET)
    sig.verify_signature(pub, b"created and loaded")
    # The private part loads again under the same parent.
    ectx.flush_context(handle)
    again = ectx.load(parent, priv, pub)
    assert ectx.tr_get_name(again).marshal() == pub.get_name().marshal()


def test_wrong_auth_is_refused(ectx):
    parent, _ = primary(ectx)
    key, _, _ = child(ectx, parent, "ecc256:ecdsa-sha256", auth=b"right")
    ectx.tr_set_auth(key, b"wrong")
    with pytest.raises(TSS2_Exception) as e:
        ectx.sign(key, b"\x33" * 32, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL), NULL_TICKET)
    assert e.value.error == TPM2_RC.AUTH_FAIL and e.value.session == 1


def _ecc_point(key):
    from tpm2_pytss import TPM2B_ECC_POINT, TPMS_ECC_POINT

    n = key.public_key().public_numbers()
    return TPM2B_ECC_POINT(TPMS_ECC_POINT(x=n.x.to_bytes(32, "big"), y=n.y.to_bytes(32, "big")))


def _sw_public(x, y):
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicNumbers

    return EllipticCurvePublicNumbers(
        int.from_bytes(bytes(x), "big"), int.from_bytes(bytes(y), "big"), ec.SECP256R1()
    ).public_key()


def test_ecdh_keygen_and_zgen(ectx):
    parent, _ = primary(ectx)
    key, pub, _ = child(ectx, parent, "ecc256:ecdh-sha256", DECRYPT_ATTRS)
    z, q = ectx.ecdh_key_gen(key)
    assert len(bytes(z.point.x)) == 32 and len(bytes(q.point.x)) == 32
    peer = ec.generate_private_key(ec.SECP256R1())
    z2 = ectx.ecdh_zgen(key, _ecc_point(peer))
    u = pub.publicArea.unique.ecc
    assert bytes(z2.point.x) == peer.exchange(ec.ECDH(), _sw_public(u.x, u.y))


def test_two_phase_key_exchange(ectx):
    """EC_Ephemeral + ZGen_2Phase with TPM_ALG_ECDH (C(2e, 2s)): both Z values equal the
    ones the peer computes in software; a commit counter is good for one exchange."""
    from tpm2_pytss import TPM2_ECC

    parent, _ = primary(ectx)
    key, pub, _ = child(ectx, parent, "ecc256:ecdh-sha256", DECRYPT_ATTRS)
    static_b = ec.generate_private_key(ec.SECP256R1())
    ephemeral_b = ec.generate_private_key(ec.SECP256R1())
    qe_a, counter = ectx.ec_ephemeral(TPM2_ECC.NIST_P256)
    z1, z2 = ectx.zgen_2_phase(key, _ecc_point(static_b), _ecc_point(ephemeral_b),
                               TPM2_ALG.ECDH, counter)
    u = pub.publicArea.unique.ecc
    assert bytes(z1.point.x) == static_b.exchange(ec.ECDH(), _sw_public(u.x, u.y))
    assert bytes(z2.point.x) == ephemeral_b.exchange(
        ec.ECDH(), _sw_public(qe_a.point.x, qe_a.point.y))
    with pytest.raises(TSS2_Exception) as e:
        ectx.zgen_2_phase(key, _ecc_point(static_b), _ecc_point(ephemeral_b),
                          TPM2_ALG.ECDH, counter)
    assert e.value.error == TPM2_RC.VALUE and e.value.parameter == 4


# P-256 group arithmetic, only to check ECDAA signatures (python-cryptography has no point API).
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
      0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def _add(p, q):
    if p is None or q is None:
        return q if p is None else p
    if p[0] == q[0] and (p[1] + q[1]) % _P == 0:
        return None
    if p == q:
        lam = (3 * p[0] * p[0] - 3) * pow(2 * p[1], -1, _P) % _P
    else:
        lam = (q[1] - p[1]) * pow(q[0] - p[0], -1, _P) % _P
    x = (lam * lam - p[0] - q[0]) % _P
    return (x, (lam * (p[0] - x) - p[1]) % _P)


def _mul(k, p):
    r = None
    while k:
        if k & 1:
            r = _add(r, p)
        p = _add(p, p)
        k >>= 1
    return r


def _xy(point):
    return (int.from_bytes(bytes(point.x), "big"), int.from_bytes(bytes(point.y), "big"))


def test_commit_and_ecdaa_sign(ectx):
    """TPM2_Commit then an ECDAA signature (Part 1, C.4): s·G = E + T·Q with
    T = H(nonceK || digest); a commit counter signs once."""
    from tpm2_pytss import TPM2B_ECC_PARAMETER, TPM2B_ECC_POINT, TPM2B_SENSITIVE_DATA

    public = TPM2B_PUBLIC.parse("ecc256:ecdaa", SIGN_ATTRS)
    key, pub, _, _, _ = ectx.create_primary(sensitive(), public, ESYS_TR.OWNER)
    k, l, e, counter = ectx.commit(key, TPM2B_ECC_POINT(), TPM2B_SENSITIVE_DATA(),
                                   TPM2B_ECC_PARAMETER())
    assert k.size == 4 and l.size == 4  # no P2: K and L are empty points
    digest = hashlib.sha256(b"anonymous").digest()
    scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDAA)
    scheme.details.ecdaa.hashAlg = TPM2_ALG.SHA256
    scheme.details.ecdaa.count = counter
    sig = ectx.sign(key, digest, scheme, NULL_TICKET)
    assert sig.sigAlg == TPM2_ALG.ECDAA
    nonce = bytes(sig.signature.ecdaa.signatureR)
    s = int.from_bytes(bytes(sig.signature.ecdaa.signatureS), "big")
    t = int.from_bytes(hashlib.sha256(nonce + digest).digest(), "big") % _N
    q = _xy(pub.publicArea.unique.ecc)
    assert _mul(s, _G) == _add(_xy(e.point), _mul(t, q))
    with pytest.raises(TSS2_Exception) as err:
        ectx.sign(key, digest, scheme, NULL_TICKET)
    assert err.value.error == TPM2_RC.VALUE
    # Only anonymous (ECDAA) keys commit; P2 must be on the curve; s2 needs y2.
    ecdsa, _, _ = child(ectx, primary(ectx)[0], "ecc256:ecdsa-sha256")
    with pytest.raises(TSS2_Exception) as err:
        ectx.commit(ecdsa, TPM2B_ECC_POINT(), TPM2B_SENSITIVE_DATA(), TPM2B_ECC_PARAMETER())
    assert err.value.error == TPM2_RC.SCHEME
    with pytest.raises(TSS2_Exception) as err:
        ectx.commit(key, TPM2B_ECC_POINT(), b"secret", b"\x01" * 32)
    assert err.value.error == TPM2_RC.ECC_POINT and err.value.parameter == 2
    with pytest.raises(TSS2_Exception) as err:
        ectx.commit(key, TPM2B_ECC_POINT(), b"secret", b"")
    assert err.value.error == TPM2_RC.SIZE and err.value.parameter == 3
