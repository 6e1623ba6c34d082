# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Templates and small helpers shared by the tests."""

from tpm2_pytss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMS_SENSITIVE_CREATE,
    TPMA_OBJECT,
)

SRK_ATTRS = (
    TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
)

SIGN_ATTRS = (
    TPMA_OBJECT.SIGN_ENCRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
)

DECRYPT_ATTRS = (
    TPMA_OBJECT.DECRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
)


def sensitive(auth=b"", data=b""):
    return TPM2B_SENSITIVE_CREATE(TPMS_SENSITIVE_CREATE(userAuth=auth, data=data))


def primary(ectx, alg="rsa2048:aes128cfb", hierarchy=ESYS_TR.OWNER, auth=b""):
    """A storage primary key (the SRK shape of the TCG provisioning guidance)."""
    handle, public, _, _, _ = ectx.create_primary(
        sensitive(auth), TPM2B_PUBLIC.parse(alg, SRK_ATTRS), hierarchy
    )
    return handle, public


def child(ectx, parent, alg, attrs=SIGN_ATTRS, auth=b"", data=b"", policy=None):
    """Create + Load a child of `parent`; returns (handle, public, private)."""
    public = TPM2B_PUBLIC.parse(alg, attrs, authPolicy=policy)
    area = public.publicArea
    if area.type in (TPM2_ALG.RSA, TPM2_ALG.ECC) and not attrs & TPMA_OBJECT.DECRYPT:
        # TPM2B_PUBLIC.parse gives restricted signing keys an AES symmetric: not for a signer.
        detail = area.parameters.rsaDetail if area.type == TPM2_ALG.RSA else area.parameters.eccDetail
        detail.symmetric.algorithm = TPM2_ALG.NULL
    priv, pub, _, _, _ = ectx.create(parent, sensitive(auth, data), public)
    handle = ectx.load(parent, priv, pub)
    return handle, pub, priv
