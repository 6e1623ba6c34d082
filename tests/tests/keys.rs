//! Keys, objects and cryptography through tpm2-tools (issue 4, item 4): every test body runs
//! against swtpm (the reference: a failure there is a wrong test), `ukvtpm serve` through the
//! `swtpm:` TCTI and `ukvtpm serve --protocol mssim` through the `mssim:` TCTI, each on a
//! fresh server. Whatever the TPM computes that can be checked outside it (signatures,
//! ciphertexts, HMACs, quotes) is checked with `openssl` or `tpm2_checkquote`.
//!
//! tpm2-tools leave the objects they load in the TPM (there is no resource manager), so every
//! tool that loads something is followed by `tpm2_flushcontext -t` ([`Keys::run`]).
//!
//! Run one server's tests with `cargo test -p ukvtpm-tests --test keys ukvtpm::`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use ukvtpm_tests::{Output, Server, Target, Tpm2, for_each_target, require};

/// TPM_RC_INTEGRITY + TPM_RC_P + TPM_RC_1: a private blob or saved context whose HMAC fails.
const RC_INTEGRITY_P1: u32 = 0x1DF;

for_each_target!(
    createprimary_algorithms,
    primary_is_derived_from_the_seed,
    create_load_evict_restart,
    sign_rsa_pkcs1,
    sign_rsa_pss,
    sign_ecdsa_p256,
    sign_ecdsa_p384,
    rsa_encrypt_decrypt,
    encryptdecrypt_aes128,
    encryptdecrypt_aes256,
    hmac_equals_openssl,
    hmac_sequence_equals_openssl,
    quote_checkquote,
    certify,
    certifycreation,
    gettime,
    createek_createak_rsa,
    createek_createak_ecc,
    ek_templates_match_reference,
    ek_high_range_h1_h2,
    credential_round_trip,
    import_external_rsa,
    duplicate_import,
    seal_unseal,
    ecdh_agreement,
    saved_contexts_reused,
    tampered_private_refused,
    tampered_context_refused,
);

// ---------------------------------------------------------------------------------------------
// helpers

/// A server, its tools and its scratch directory (the tools' working directory).
struct Keys {
    server: Server,
    tpm: Tpm2,
}

impl Keys {
    fn start(target: Target) -> Result<Keys> {
        require::tool("openssl")?;
        let server = target.start()?;
        let tpm = server.tpm2();
        Ok(Keys { server, tpm })
    }

    /// Runs a tool that must succeed, then flushes the transient objects it left loaded.
    fn run(&self, tool: &str, args: &[&str]) -> Result<Output> {
        let out = self.tpm.run(tool, args)?;
        self.flush()?;
        Ok(out)
    }

    /// Runs a tool that must fail, then flushes.
    fn fails(&self, tool: &str, args: &[&str]) -> Result<Output> {
        let out = self.tpm.fails(tool, args)?;
        self.flush()?;
        Ok(out)
    }

    fn flush(&self) -> Result<()> {
        self.tpm.run("flushcontext", &["-t"])?;
        Ok(())
    }

    fn dir(&self) -> std::path::PathBuf {
        self.server.path("")
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        std::fs::write(self.server.path(name), data).with_context(|| format!("writing {name}"))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        std::fs::read(self.server.path(name)).with_context(|| format!("reading {name}"))
    }

    /// Runs `openssl args...` in the scratch directory; it must succeed.
    fn openssl(&self, args: &[&str]) -> Result<Vec<u8>> {
        run_in(&self.dir(), "openssl", args)
    }

    /// The storage primary every test hangs its keys from (`prim.ctx`).
    fn primary(&self) -> Result<()> {
        self.run("createprimary", &["-C", "o", "-c", "prim.ctx"])?;
        Ok(())
    }

    /// Flips the lowest bit of the last octet of `name`.
    fn tamper(&self, name: &str) -> Result<()> {
        let len = self.read(name)?.len();
        self.tamper_at(name, len.saturating_sub(1))
    }

    /// Flips the lowest bit of octet `offset` of `name`.
    fn tamper_at(&self, name: &str, offset: usize) -> Result<()> {
        let mut data = self.read(name)?;
        let octet = data.get_mut(offset).context("file too short")?;
        *octet ^= 1;
        self.write(name, &data)
    }
}

/// Runs `program args...` in `dir`; it must succeed; returns stdout.
fn run_in(dir: &Path, program: &str, args: &[&str]) -> Result<Vec<u8>> {
    let path = require::tool(program)?;
    let out = Command::new(path)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({})\n  stdout: {}\n  stderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic test data.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// object hierarchy

fn createprimary_algorithms(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    for alg in [
        "rsa2048", "rsa3072", "ecc256", "ecc384", "aes128", "aes256", "xor",
    ] {
        let ctx = format!("p_{alg}.ctx");
        k.run("createprimary", &["-C", "o", "-G", alg, "-c", &ctx])
            .with_context(|| format!("createprimary -G {alg}"))?;
        let out = k.run("readpublic", &["-c", &ctx])?;
        ensure!(out.stdout.contains("name:"), "no name for {alg}\n{out}");
    }
    // An HMAC (KEYEDHASH) primary: unrestricted, signing. (Sealed data needs the data from the
    // caller: see `seal_unseal`.)
    k.run(
        "createprimary",
        &[
            "-C",
            "o",
            "-G",
            "hmac",
            "-a",
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
            "-c",
            "p_hmac.ctx",
        ],
    )
    .context("createprimary -G hmac")?;
    // Every hierarchy.
    for h in ["o", "e", "p", "n"] {
        k.run("createprimary", &["-C", h, "-G", "ecc256", "-c", "h.ctx"])?;
    }
    Ok(())
}

/// The same template gives the same key after a restart (Part 1, 27.x: primaries are derived
/// from the hierarchy seed with KDFa).
fn primary_is_derived_from_the_seed(target: Target) -> Result<()> {
    let mut k = Keys::start(target)?;
    for alg in ["rsa2048", "ecc256"] {
        let first = format!("{alg}_1.pub");
        let second = format!("{alg}_2.pub");
        k.run("createprimary", &["-C", "o", "-G", alg, "-c", "a.ctx"])?;
        k.run("readpublic", &["-c", "a.ctx", "-o", &first])?;
        k.run("createprimary", &["-C", "o", "-G", alg, "-c", "b.ctx"])?;
        k.run("readpublic", &["-c", "b.ctx", "-o", &second])?;
        ensure!(k.read(&first)? == k.read(&second)?, "{alg}: two keys");
    }
    k.server.restart()?;
    k.tpm = k.server.tpm2();
    for alg in ["rsa2048", "ecc256"] {
        k.run("createprimary", &["-C", "o", "-G", alg, "-c", "c.ctx"])?;
        k.run("readpublic", &["-c", "c.ctx", "-o", "after.pub"])?;
        ensure!(
            k.read(&format!("{alg}_1.pub"))? == k.read("after.pub")?,
            "{alg}: a different key after the restart"
        );
    }
    // Another hierarchy gives another key.
    k.run("createprimary", &["-C", "e", "-G", "ecc256", "-c", "e.ctx"])?;
    k.run("readpublic", &["-c", "e.ctx", "-o", "e.pub"])?;
    ensure!(
        k.read("e.pub")? != k.read("ecc256_1.pub")?,
        "same key in two hierarchies"
    );
    Ok(())
}

fn create_load_evict_restart(target: Target) -> Result<()> {
    let mut k = Keys::start(target)?;
    k.primary()?;
    let mut names = Vec::new();
    for (alg, handle) in [("rsa2048", "0x81000010"), ("ecc256", "0x81000011")] {
        let (public, private) = (format!("{alg}.pub"), format!("{alg}.priv"));
        k.run(
            "create",
            &["-C", "prim.ctx", "-G", alg, "-u", &public, "-r", &private],
        )?;
        k.run(
            "load",
            &[
                "-C", "prim.ctx", "-u", &public, "-r", &private, "-c", "k.ctx",
            ],
        )?;
        let before = k.run("readpublic", &["-c", "k.ctx", "-n", "k.name"])?;
        let name = k.read("k.name")?;
        k.run("evictcontrol", &["-C", "o", "-c", "k.ctx", handle])?;
        names.push((handle, name, before.stdout));
    }
    let persistent = k.tpm.run("getcap", &["handles-persistent"])?;
    for (handle, ..) in &names {
        ensure!(
            persistent.stdout.contains(handle),
            "{handle} not listed\n{persistent}"
        );
    }
    k.server.restart()?;
    k.tpm = k.server.tpm2();
    k.write("msg", b"persistent keys sign after a restart")?;
    for (handle, name, _) in &names {
        k.run("readpublic", &["-c", handle, "-n", "after.name"])?;
        ensure!(
            k.read("after.name")? == *name,
            "{handle}: another name after restart"
        );
        k.run("sign", &["-c", handle, "-g", "sha256", "-o", "sig", "msg"])?;
        k.run(
            "verifysignature",
            &["-c", handle, "-g", "sha256", "-m", "msg", "-s", "sig"],
        )?;
    }
    for (handle, ..) in &names {
        k.run("evictcontrol", &["-C", "o", "-c", handle])?;
    }
    let persistent = k.tpm.run("getcap", &["handles-persistent"])?;
    ensure!(
        !persistent.stdout.contains("0x81000010"),
        "evicted handle still listed\n{persistent}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// signatures

/// Creates a signing key with `alg` (tpm2-tools syntax, e.g. `rsa2048:rsassa-sha256`), signs a
/// message, checks the signature with `tpm2_verifysignature` and with `openssl` (`sigopts`),
/// and checks that a wrong message does not verify.
fn sign_and_verify(target: Target, alg: &str, scheme: &str, sigopts: &[&str]) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    k.run(
        "create",
        &[
            "-C", "prim.ctx", "-G", alg, "-u", "k.pub", "-r", "k.priv", "-c", "k.ctx",
        ],
    )?;
    k.run("readpublic", &["-c", "k.ctx", "-f", "pem", "-o", "k.pem"])?;
    k.write("msg", &pattern(300, 7))?;
    k.run(
        "sign",
        &[
            "-c", "k.ctx", "-g", "sha256", "-s", scheme, "-o", "sig.tss", "msg",
        ],
    )?;
    k.run(
        "sign",
        &[
            "-c",
            "k.ctx",
            "-g",
            "sha256",
            "-s",
            scheme,
            "-f",
            "plain",
            "-o",
            "sig.plain",
            "msg",
        ],
    )?;
    k.run(
        "verifysignature",
        &[
            "-c", "k.ctx", "-g", "sha256", "-m", "msg", "-s", "sig.tss", "-t", "ticket",
        ],
    )?;
    let mut args = vec!["dgst", "-sha256"];
    args.extend_from_slice(sigopts);
    args.extend_from_slice(&["-verify", "k.pem", "-signature", "sig.plain", "msg"]);
    let out = k.openssl(&args)?;
    ensure!(
        String::from_utf8_lossy(&out).contains("Verified OK"),
        "openssl did not verify the TPM signature"
    );
    // The TPM refuses a signature over another message.
    k.write("other", b"another message")?;
    k.fails(
        "verifysignature",
        &[
            "-c", "k.ctx", "-g", "sha256", "-m", "other", "-s", "sig.tss",
        ],
    )?;
    Ok(())
}

fn sign_rsa_pkcs1(target: Target) -> Result<()> {
    sign_and_verify(target, "rsa2048:rsassa-sha256", "rsassa", &[])
}

fn sign_rsa_pss(target: Target) -> Result<()> {
    sign_and_verify(
        target,
        "rsa2048:rsapss-sha256:null",
        "rsapss",
        &[
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:auto",
        ],
    )
}

fn sign_ecdsa_p256(target: Target) -> Result<()> {
    sign_and_verify(target, "ecc256:ecdsa-sha256", "ecdsa", &[])
}

fn sign_ecdsa_p384(target: Target) -> Result<()> {
    sign_and_verify(target, "ecc384:ecdsa-sha256", "ecdsa", &[])
}

// ---------------------------------------------------------------------------------------------
// encryption

fn rsa_encrypt_decrypt(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    k.run(
        "create",
        &[
            "-C", "prim.ctx", "-G", "rsa2048", "-u", "r.pub", "-r", "r.priv", "-c", "r.ctx",
        ],
    )?;
    k.run("readpublic", &["-c", "r.ctx", "-f", "pem", "-o", "r.pem"])?;
    let msg = pattern(100, 3);
    k.write("msg", &msg)?;
    // TPM round trips.
    for scheme in ["oaep", "rsaes"] {
        k.run(
            "rsaencrypt",
            &["-c", "r.ctx", "-s", scheme, "-o", "ct", "msg"],
        )?;
        k.run(
            "rsadecrypt",
            &["-c", "r.ctx", "-s", scheme, "-o", "pt", "ct"],
        )?;
        ensure!(k.read("pt")? == msg, "{scheme}: round trip differs");
    }
    // openssl encrypts, the TPM decrypts.
    k.openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        "r.pem",
        "-in",
        "msg",
        "-out",
        "o.ct",
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
    ])?;
    k.run(
        "rsadecrypt",
        &["-c", "r.ctx", "-s", "oaep", "-o", "o.pt", "o.ct"],
    )?;
    ensure!(k.read("o.pt")? == msg, "openssl OAEP → TPM differs");
    k.openssl(&[
        "pkeyutl", "-encrypt", "-pubin", "-inkey", "r.pem", "-in", "msg", "-out", "p.ct",
    ])?;
    k.run(
        "rsadecrypt",
        &["-c", "r.ctx", "-s", "rsaes", "-o", "p.pt", "p.ct"],
    )?;
    ensure!(k.read("p.pt")? == msg, "openssl PKCS#1 v1.5 → TPM differs");
    Ok(())
}

/// Imports a known AES key, then for CFB and CBC: TPM encryption equals `openssl enc`, and TPM
/// decryption gives the plaintext back.
fn encryptdecrypt_aes(target: Target, bits: usize) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    let key = pattern(bits / 8, 0x42);
    let iv = pattern(16, 0x17);
    let plain = pattern(1024, 9);
    k.write("aes.key", &key)?;
    k.write("iv", &iv)?;
    k.write("pt", &plain)?;
    k.run(
        "import",
        &[
            "-C", "prim.ctx", "-G", "aes", "-i", "aes.key", "-u", "aes.pub", "-r", "aes.priv",
        ],
    )?;
    k.run(
        "load",
        &[
            "-C", "prim.ctx", "-u", "aes.pub", "-r", "aes.priv", "-c", "aes.ctx",
        ],
    )?;
    for mode in ["cfb", "cbc"] {
        k.run(
            "encryptdecrypt",
            &["-c", "aes.ctx", "-G", mode, "-t", "iv", "-o", "ct", "pt"],
        )?;
        let cipher = format!("-aes-{bits}-{mode}");
        k.openssl(&[
            "enc",
            &cipher,
            "-K",
            &hex(&key),
            "-iv",
            &hex(&iv),
            "-nopad",
            "-in",
            "pt",
            "-out",
            "ct.ossl",
        ])?;
        ensure!(
            k.read("ct")? == k.read("ct.ossl")?,
            "AES-{bits}-{mode}: TPM and openssl differ"
        );
        k.run(
            "encryptdecrypt",
            &[
                "-d", "-c", "aes.ctx", "-G", mode, "-t", "iv", "-o", "pt2", "ct",
            ],
        )?;
        ensure!(
            k.read("pt2")? == plain,
            "AES-{bits}-{mode}: round trip differs"
        );
    }
    Ok(())
}

fn encryptdecrypt_aes128(target: Target) -> Result<()> {
    encryptdecrypt_aes(target, 128)
}

fn encryptdecrypt_aes256(target: Target) -> Result<()> {
    encryptdecrypt_aes(target, 256)
}

// ---------------------------------------------------------------------------------------------
// HMAC

/// Imports a known HMAC key; `tpm2_hmac` over `len` octets equals `openssl dgst -mac HMAC`
/// (tpm2_hmac uses TPM2_HMAC up to 1024 octets, an HMAC_Start sequence beyond).
fn hmac_check(target: Target, len: usize) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    let key = pattern(32, 0x5a);
    k.write("hk", &key)?;
    k.write("msg", &pattern(len, 1))?;
    k.run(
        "import",
        &[
            "-C", "prim.ctx", "-G", "hmac", "-i", "hk", "-u", "h.pub", "-r", "h.priv",
        ],
    )?;
    k.run(
        "load",
        &[
            "-C", "prim.ctx", "-u", "h.pub", "-r", "h.priv", "-c", "h.ctx",
        ],
    )?;
    // The key's scheme fixes the hash (tpm2_import makes HMAC-SHA256 keys): another is
    // TPM_RC_VALUE on the hash parameter.
    let other = k.fails("hmac", &["-c", "h.ctx", "-g", "sha1", "-o", "mac", "msg"])?;
    other.expect_rc(0x2C4)?;
    k.run("hmac", &["-c", "h.ctx", "-g", "sha256", "-o", "mac", "msg"])?;
    let macopt = format!("hexkey:{}", hex(&key));
    k.openssl(&[
        "dgst", "-sha256", "-mac", "HMAC", "-macopt", &macopt, "-binary", "-out", "mac.ossl", "msg",
    ])?;
    ensure!(
        k.read("mac")? == k.read("mac.ossl")?,
        "HMAC-SHA256 of {len} octets: TPM and openssl differ"
    );
    Ok(())
}

fn hmac_equals_openssl(target: Target) -> Result<()> {
    hmac_check(target, 200)
}

fn hmac_sequence_equals_openssl(target: Target) -> Result<()> {
    hmac_check(target, 5000)
}

// ---------------------------------------------------------------------------------------------
// attestation

fn quote_checkquote(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    for (alg, attest_key) in [
        ("rsa2048:rsassa-sha256:null", "rsa"),
        ("ecc256:ecdsa-sha256:null", "ecc"),
    ] {
        let ctx = format!("{attest_key}.ctx");
        let pem = format!("{attest_key}.pem");
        k.run(
            "createprimary",
            &[
                "-C",
                "o",
                "-G",
                alg,
                "-a",
                "restricted|sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth",
                "-c",
                &ctx,
            ],
        )?;
        k.run("readpublic", &["-c", &ctx, "-f", "pem", "-o", &pem])?;
        k.run(
            "quote",
            &[
                "-c",
                &ctx,
                "-l",
                "sha256:0,1,2,16",
                "-q",
                "1234abcd",
                "-m",
                "q.msg",
                "-s",
                "q.sig",
                "-o",
                "q.pcrs",
                "-g",
                "sha256",
            ],
        )?;
        let checked = k.tpm.run(
            "checkquote",
            &[
                "-u", &pem, "-m", "q.msg", "-s", "q.sig", "-f", "q.pcrs", "-g", "sha256", "-q",
                "1234abcd",
            ],
        )?;
        ensure!(checked.status.success(), "checkquote failed\n{checked}");
        // Another nonce does not check.
        let wrong = k.tpm.output(
            "checkquote",
            &[
                "-u", &pem, "-m", "q.msg", "-s", "q.sig", "-f", "q.pcrs", "-g", "sha256", "-q",
                "abcd1234",
            ],
            None,
        )?;
        ensure!(!wrong.status.success(), "checkquote accepted a wrong nonce");
    }
    Ok(())
}

/// The TPMS_ATTEST header: magic TPM_GENERATED_VALUE and the attestation type.
fn check_attest(data: &[u8], st: u16) -> Result<()> {
    ensure!(data.len() > 6, "attestation too short");
    ensure!(
        data[..4] == [0xff, 0x54, 0x43, 0x47],
        "no TPM_GENERATED magic"
    );
    ensure!(
        u16::from_be_bytes([data[4], data[5]]) == st,
        "attestation type {:02x}{:02x}, expected {st:#x}",
        data[4],
        data[5]
    );
    Ok(())
}

/// A P-256 ECDSA signing key `s.ctx` and its PEM `s.pem`.
fn signer(k: &Keys) -> Result<()> {
    k.run(
        "create",
        &[
            "-C",
            "prim.ctx",
            "-G",
            "ecc256:ecdsa-sha256",
            "-u",
            "s.pub",
            "-r",
            "s.priv",
            "-c",
            "s.ctx",
        ],
    )?;
    k.run("readpublic", &["-c", "s.ctx", "-f", "pem", "-o", "s.pem"])?;
    Ok(())
}

fn openssl_verifies(k: &Keys, pem: &str, sig: &str, data: &str) -> Result<()> {
    let out = k.openssl(&["dgst", "-sha256", "-verify", pem, "-signature", sig, data])?;
    ensure!(
        String::from_utf8_lossy(&out).contains("Verified OK"),
        "openssl did not verify {sig} over {data}"
    );
    Ok(())
}

fn certify(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    signer(&k)?;
    k.run(
        "certify",
        &[
            "-c", "prim.ctx", "-C", "s.ctx", "-g", "sha256", "-o", "c.attest", "-s", "c.sig", "-f",
            "plain",
        ],
    )?;
    let attest = k.read("c.attest")?;
    check_attest(&attest, 0x8017)?;
    k.run("readpublic", &["-c", "prim.ctx", "-n", "prim.name"])?;
    let name = k.read("prim.name")?;
    ensure!(
        attest.windows(name.len()).any(|w| w == name.as_slice()),
        "the certified Name is not in the attestation"
    );
    openssl_verifies(&k, "s.pem", "c.sig", "c.attest")
}

fn certifycreation(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    signer(&k)?;
    k.run(
        "createprimary",
        &[
            "-C",
            "o",
            "-G",
            "ecc256",
            "-c",
            "cp.ctx",
            "--creation-data",
            "cp.data",
            "--creation-ticket",
            "cp.tk",
            "--creation-hash",
            "cp.hash",
        ],
    )?;
    k.run(
        "certifycreation",
        &[
            "-C",
            "s.ctx",
            "-c",
            "cp.ctx",
            "-d",
            "cp.hash",
            "-t",
            "cp.tk",
            "-g",
            "sha256",
            "--attestation",
            "cc.attest",
            "-o",
            "cc.sig",
            "-f",
            "plain",
        ],
    )?;
    check_attest(&k.read("cc.attest")?, 0x801A)?;
    openssl_verifies(&k, "s.pem", "cc.sig", "cc.attest")?;
    // A ticket for another object is refused.
    k.tamper("cp.tk")?;
    k.fails(
        "certifycreation",
        &[
            "-C", "s.ctx", "-c", "cp.ctx", "-d", "cp.hash", "-t", "cp.tk", "-g", "sha256", "-o",
            "bad.sig",
        ],
    )?;
    Ok(())
}

fn gettime(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    signer(&k)?;
    k.run(
        "gettime",
        &[
            "-c",
            "s.ctx",
            "--attestation",
            "t.attest",
            "-o",
            "t.sig",
            "-f",
            "plain",
        ],
    )?;
    check_attest(&k.read("t.attest")?, 0x8019)?;
    openssl_verifies(&k, "s.pem", "t.sig", "t.attest")
}

/// `tpm2_createek` + `tpm2_createak` (policy sessions on the EK), then a quote by the AK
/// checked with `tpm2_checkquote`.
fn ek_ak(target: Target, alg: &str, scheme: &str) -> Result<()> {
    let k = Keys::start(target)?;
    k.run("createek", &["-c", "ek.ctx", "-G", alg, "-u", "ek.pub"])?;
    k.tpm.run("flushcontext", &["-s"])?;
    k.run(
        "createak",
        &[
            "-C", "ek.ctx", "-c", "ak.ctx", "-G", alg, "-g", "sha256", "-s", scheme, "-u",
            "ak.pub", "-n", "ak.name", "-f", "pem",
        ],
    )?;
    k.tpm.run("flushcontext", &["-s"])?;
    k.run(
        "quote",
        &[
            "-c",
            "ak.ctx",
            "-l",
            "sha256:0,1,2",
            "-q",
            "c0ffee",
            "-m",
            "q.msg",
            "-s",
            "q.sig",
            "-o",
            "q.pcrs",
            "-g",
            "sha256",
        ],
    )?;
    k.tpm.run(
        "checkquote",
        &[
            "-u", "ak.pub", "-m", "q.msg", "-s", "q.sig", "-f", "q.pcrs", "-g", "sha256", "-q",
            "c0ffee",
        ],
    )?;
    Ok(())
}

fn createek_createak_rsa(target: Target) -> Result<()> {
    ek_ak(target, "rsa", "rsassa")
}

fn createek_createak_ecc(target: Target) -> Result<()> {
    ek_ak(target, "ecc", "ecdsa")
}

/// `tpm2_readpublic` output without what depends on the seed (unique field and Names).
fn template_of(readpublic: &str) -> String {
    readpublic
        .lines()
        .filter(|l| {
            let key = l.trim_start().split(':').next().unwrap_or("");
            !matches!(key, "rsa" | "x" | "y" | "name" | "qualified name")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The EK templates tpm2_createek uses (TCG EK Credential Profile: L-1 RSA 2048, L-2 ECC
/// P-256, H-3 RSA 3072, H-4 ECC P-384) give the same public area, up to the key itself, as
/// on swtpm; each EK protects an AK made by tpm2_createak.
fn ek_templates_match_reference(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    let reference = Keys::start(Target::Swtpm)?;
    for (alg, ak_alg, scheme) in [
        ("rsa2048", "rsa", "rsassa"),
        ("ecc256", "ecc", "ecdsa"),
        ("rsa3072", "rsa", "rsassa"),
        ("ecc384", "ecc", "ecdsa"),
    ] {
        let mut templates = Vec::new();
        for keys in [&k, &reference] {
            keys.tpm
                .run("createek", &["-c", "ek.ctx", "-G", alg, "-u", "ek.pub"])?;
            let out = keys.tpm.run("readpublic", &["-c", "ek.ctx"])?;
            templates.push(template_of(&out.stdout));
            keys.flush()?;
        }
        ensure!(
            templates[0] == templates[1],
            "EK {alg}: template differs from swtpm\n--- ukvtpm ---\n{}\n--- swtpm ---\n{}",
            templates[0],
            templates[1]
        );
        k.run(
            "createak",
            &[
                "-C", "ek.ctx", "-c", "ak.ctx", "-G", ak_alg, "-g", "sha256", "-s", scheme, "-u",
                "ak.pub", "-n", "ak.name",
            ],
        )
        .with_context(|| format!("createak under the {alg} EK"))?;
        k.tpm.run("flushcontext", &["-s"])?;
    }
    Ok(())
}

/// High-range EK templates H-1 (RSA 2048) and H-2 (ECC P-256) from the TCG EK Credential
/// Profile 2.5 through tpm2_createprimary: SHA-256, AES-128-CFB, userWithAuth and
/// adminWithPolicy with PolicyB-SHA256, empty unique. They are the same as on swtpm, and an
/// AK under them receives a credential.
fn ek_high_range_h1_h2(target: Target) -> Result<()> {
    /// PolicyOR(PolicySecret(TPM_RH_ENDORSEMENT), PolicyAuthorizeNV) with SHA-256.
    const POLICY_B_SHA256: &str =
        "ca3d0a99a2b93906f7a3342414efcfb3a385d44cd1fd459089d19b5071c0b7a0";
    let k = Keys::start(target)?;
    let reference = Keys::start(Target::Swtpm)?;
    for keys in [&k, &reference] {
        keys.write("policyb", &ukvtpm_tests::util::unhex(POLICY_B_SHA256)?)?;
    }
    for alg in ["rsa2048:aes128cfb", "ecc256:aes128cfb"] {
        let args = [
            "-C",
            "e",
            "-g",
            "sha256",
            "-G",
            alg,
            "-a",
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|adminwithpolicy|restricted|decrypt",
            "-L",
            "policyb",
            "-c",
            "ek.ctx",
        ];
        let mut templates = Vec::new();
        for keys in [&k, &reference] {
            let out = keys.run("createprimary", &args)?;
            templates.push(template_of(&out.stdout));
        }
        ensure!(
            templates[0] == templates[1],
            "EK {alg}: template differs from swtpm\n--- ukvtpm ---\n{}\n--- swtpm ---\n{}",
            templates[0],
            templates[1]
        );
        ensure!(
            templates[0].contains(POLICY_B_SHA256),
            "no PolicyB\n{}",
            templates[0]
        );
        k.run("readpublic", &["-c", "ek.ctx", "-o", "ek.pub"])?;
        k.run(
            "create",
            &[
                "-C",
                "ek.ctx",
                "-G",
                "ecc256:ecdsa-sha256:null",
                "-a",
                "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign",
                "-u",
                "ak.pub",
                "-r",
                "ak.priv",
                "-c",
                "ak.ctx",
            ],
        )?;
        k.run("readpublic", &["-c", "ak.ctx", "-n", "ak.name"])?;
        let name = hex(&k.read("ak.name")?);
        k.write("secret", b"high range EK")?;
        k.tpm.run(
            "makecredential",
            &[
                "-T", "none", "-u", "ek.pub", "-s", "secret", "-n", &name, "-o", "cred",
            ],
        )?;
        k.run(
            "activatecredential",
            &["-c", "ak.ctx", "-C", "ek.ctx", "-i", "cred", "-o", "out"],
        )?;
        ensure!(k.read("out")? == b"high range EK", "{alg}: another secret");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// credentials, duplication, sealing, ECDH

fn credential_round_trip(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    for alg in ["rsa2048", "ecc256"] {
        // A restricted decryption key in the endorsement hierarchy (the EK's role) and an
        // object the credential is bound to (the AK's role).
        k.run("createprimary", &["-C", "e", "-G", alg, "-c", "ek.ctx"])?;
        k.run("readpublic", &["-c", "ek.ctx", "-o", "ek.pub"])?;
        k.run(
            "create",
            &[
                "-C",
                "ek.ctx",
                "-G",
                "ecc256:ecdsa-sha256",
                "-u",
                "ak.pub",
                "-r",
                "ak.priv",
                "-c",
                "ak.ctx",
            ],
        )?;
        k.run("readpublic", &["-c", "ak.ctx", "-n", "ak.name"])?;
        let name = hex(&k.read("ak.name")?);
        let secret = pattern(16, 0x33);
        k.write("secret", &secret)?;
        // Made by the TPM (LoadExternal + MakeCredential) and by tpm2-tools alone.
        k.run(
            "makecredential",
            &[
                "-u", "ek.pub", "-s", "secret", "-n", &name, "-o", "cred.tpm",
            ],
        )?;
        k.tpm.run(
            "makecredential",
            &[
                "-T", "none", "-u", "ek.pub", "-s", "secret", "-n", &name, "-o", "cred.sw",
            ],
        )?;
        for cred in ["cred.tpm", "cred.sw"] {
            k.run(
                "activatecredential",
                &["-c", "ak.ctx", "-C", "ek.ctx", "-i", cred, "-o", "out"],
            )
            .with_context(|| format!("{alg}: activating {cred}"))?;
            ensure!(k.read("out")? == secret, "{alg} {cred}: another secret");
        }
        // Bound to another object: refused.
        k.fails(
            "activatecredential",
            &[
                "-c", "ek.ctx", "-C", "ek.ctx", "-i", "cred.tpm", "-o", "out2",
            ],
        )?;
    }
    Ok(())
}

fn import_external_rsa(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    k.openssl(&["genrsa", "-out", "ext.pem", "2048"])?;
    k.openssl(&["rsa", "-in", "ext.pem", "-pubout", "-out", "ext.pub.pem"])?;
    k.run(
        "import",
        &[
            "-C", "prim.ctx", "-G", "rsa", "-i", "ext.pem", "-u", "ext.pub", "-r", "ext.priv",
        ],
    )?;
    k.run(
        "load",
        &[
            "-C", "prim.ctx", "-u", "ext.pub", "-r", "ext.priv", "-c", "ext.ctx",
        ],
    )?;
    k.write("msg", b"signed by an imported key")?;
    k.run(
        "sign",
        &[
            "-c", "ext.ctx", "-g", "sha256", "-s", "rsassa", "-f", "plain", "-o", "sig", "msg",
        ],
    )?;
    openssl_verifies(&k, "ext.pub.pem", "sig", "msg")
}

/// A duplicable key (policy: PolicyCommandCode(Duplicate)) moved to a new parent without and
/// with an inner wrapper, imported there and used.
fn duplicate_import(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    k.tpm.run("startauthsession", &["-S", "trial.ctx"])?;
    k.tpm.run(
        "policycommandcode",
        &["-S", "trial.ctx", "-L", "dup.policy", "TPM2_CC_Duplicate"],
    )?;
    k.tpm.run("flushcontext", &["trial.ctx"])?;
    k.run(
        "create",
        &[
            "-C",
            "prim.ctx",
            "-G",
            "ecc256:ecdsa-sha256",
            "-u",
            "dk.pub",
            "-r",
            "dk.priv",
            "-L",
            "dup.policy",
            "-a",
            "sensitivedataorigin|userwithauth|sign",
        ],
    )?;
    k.run(
        "create",
        &[
            "-C",
            "prim.ctx",
            "-u",
            "np.pub",
            "-r",
            "np.priv",
            "-a",
            "decrypt|fixedparent|fixedtpm|restricted|sensitivedataorigin|userwithauth",
        ],
    )?;
    k.write("msg", b"signed by a duplicated key")?;
    for (wrap, inner) in [("null", false), ("aes", true)] {
        k.run(
            "load",
            &[
                "-C", "prim.ctx", "-u", "dk.pub", "-r", "dk.priv", "-c", "dk.ctx",
            ],
        )?;
        k.run(
            "load",
            &[
                "-C", "prim.ctx", "-u", "np.pub", "-r", "np.priv", "-c", "np.ctx",
            ],
        )?;
        k.tpm
            .run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
        k.tpm
            .run("policycommandcode", &["-S", "s.ctx", "TPM2_CC_Duplicate"])?;
        let mut args = vec![
            "-C",
            "np.ctx",
            "-c",
            "dk.ctx",
            "-G",
            wrap,
            "-p",
            "session:s.ctx",
            "-r",
            "dup.priv",
            "-s",
            "dup.seed",
        ];
        if inner {
            args.extend_from_slice(&["-o", "dup.key"]);
        }
        k.tpm.run("duplicate", &args)?;
        k.tpm.run("flushcontext", &["s.ctx"])?;
        k.flush()?;
        let mut args = vec![
            "-C",
            "np.ctx",
            "-u",
            "dk.pub",
            "-i",
            "dup.priv",
            "-r",
            "moved.priv",
            "-s",
            "dup.seed",
        ];
        if inner {
            args.extend_from_slice(&["-k", "dup.key"]);
        }
        k.run("import", &args)
            .with_context(|| format!("import with -G {wrap}"))?;
        k.run(
            "load",
            &[
                "-C",
                "np.ctx",
                "-u",
                "dk.pub",
                "-r",
                "moved.priv",
                "-c",
                "moved.ctx",
            ],
        )?;
        k.run(
            "sign",
            &["-c", "moved.ctx", "-g", "sha256", "-o", "sig", "msg"],
        )?;
        k.run(
            "verifysignature",
            &["-c", "moved.ctx", "-g", "sha256", "-m", "msg", "-s", "sig"],
        )?;
    }
    Ok(())
}

fn seal_unseal(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    let secret = pattern(64, 0x77);
    k.write("secret", &secret)?;
    k.run(
        "create",
        &[
            "-C",
            "prim.ctx",
            "-i",
            "secret",
            "-u",
            "seal.pub",
            "-r",
            "seal.priv",
            "-c",
            "seal.ctx",
            "-p",
            "sealpw",
        ],
    )?;
    k.run("unseal", &["-c", "seal.ctx", "-p", "sealpw", "-o", "out"])?;
    ensure!(k.read("out")? == secret, "unsealed data differs");
    k.fails("unseal", &["-c", "seal.ctx", "-p", "wrong", "-o", "out2"])?;
    // Reloaded from its blobs.
    k.run(
        "load",
        &[
            "-C",
            "prim.ctx",
            "-u",
            "seal.pub",
            "-r",
            "seal.priv",
            "-c",
            "seal2.ctx",
        ],
    )?;
    k.run("unseal", &["-c", "seal2.ctx", "-p", "sealpw", "-o", "out3"])?;
    ensure!(
        k.read("out3")? == secret,
        "unsealed data differs after load"
    );
    Ok(())
}

fn ecdh_agreement(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    for curve in ["ecc256", "ecc384"] {
        let alg = format!("{curve}:ecdh-sha256");
        k.run(
            "create",
            &[
                "-C",
                "prim.ctx",
                "-G",
                &alg,
                "-a",
                "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|decrypt",
                "-u",
                "d.pub",
                "-r",
                "d.priv",
                "-c",
                "d.ctx",
            ],
        )?;
        k.run("ecdhkeygen", &["-c", "d.ctx", "-u", "eph.pub", "-o", "z1"])?;
        k.run("ecdhzgen", &["-c", "d.ctx", "-u", "eph.pub", "-o", "z2"])?;
        let (z1, z2) = (k.read("z1")?, k.read("z2")?);
        ensure!(z1 == z2, "{curve}: KeyGen and ZGen disagree");
        ensure!(z1.len() > 32, "{curve}: suspiciously short Z point");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// saved contexts and tampering

fn saved_contexts_reused(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    k.run(
        "create",
        &[
            "-C",
            "prim.ctx",
            "-G",
            "ecc256:ecdsa-sha256",
            "-u",
            "k.pub",
            "-r",
            "k.priv",
            "-c",
            "k.ctx",
        ],
    )?;
    // The same saved context, loaded again by one command after another.
    for i in 0..3u8 {
        k.write("msg", &pattern(50, i))?;
        k.run("sign", &["-c", "k.ctx", "-g", "sha256", "-o", "sig", "msg"])?;
        k.run(
            "verifysignature",
            &["-c", "k.ctx", "-g", "sha256", "-m", "msg", "-s", "sig"],
        )?;
    }
    // An explicit ContextSave of a loaded object, reloaded after a flush.
    k.tpm.run(
        "load",
        &[
            "-C", "prim.ctx", "-u", "k.pub", "-r", "k.priv", "-c", "k2.ctx",
        ],
    )?;
    k.flush()?;
    k.run("readpublic", &["-c", "k2.ctx"])?;
    Ok(())
}

fn tampered_private_refused(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    k.run(
        "create",
        &[
            "-C", "prim.ctx", "-G", "ecc256", "-u", "k.pub", "-r", "k.priv",
        ],
    )?;
    k.run(
        "load",
        &[
            "-C", "prim.ctx", "-u", "k.pub", "-r", "k.priv", "-c", "k.ctx",
        ],
    )?;
    k.tamper("k.priv")?;
    let out = k.fails(
        "load",
        &[
            "-C", "prim.ctx", "-u", "k.pub", "-r", "k.priv", "-c", "bad.ctx",
        ],
    )?;
    out.expect_rc(RC_INTEGRITY_P1)
}

fn tampered_context_refused(target: Target) -> Result<()> {
    let k = Keys::start(target)?;
    k.primary()?;
    k.run(
        "create",
        &[
            "-C", "prim.ctx", "-G", "ecc256", "-u", "k.pub", "-r", "k.priv", "-c", "k.ctx",
        ],
    )?;
    k.run("readpublic", &["-c", "k.ctx"])?;
    // tpm2-tools' context file: magic, version, hierarchy, savedHandle (4 octets each),
    // sequence (8), then TPM2B_CONTEXT_DATA (its size, then the integrity HMAC as a TPM2B and
    // the encrypted context), then tpm2-tss metadata the TPM never sees. Octet 40 is inside
    // the integrity HMAC; octet 80 inside the encrypted part.
    for offset in [40, 80] {
        k.run("create", &["-C", "prim.ctx", "-G", "ecc256", "-c", "t.ctx"])?;
        k.tamper_at("t.ctx", offset)?;
        let out = k.fails("readpublic", &["-c", "t.ctx"])?;
        out.expect_rc(RC_INTEGRITY_P1)
            .with_context(|| format!("octet {offset} flipped"))?;
    }
    k.tamper_at("k.ctx", 40)?;
    let out = k.fails("readpublic", &["-c", "k.ctx"])?;
    out.expect_rc(RC_INTEGRITY_P1)
}
