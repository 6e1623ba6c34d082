//! Sessions and policies with tpm2-tools (issue 5): sealed objects behind PCR, password,
//! authValue, secret, OR, command-code, NV, counter/timer, locality and authorized policies;
//! salted and bound HMAC sessions; parameter encryption. Every body runs against swtpm (the
//! reference) and `ukvtpm serve` (both TCTIs).

use anyhow::{Result, ensure};
use ukvtpm_tests::{Server, Target, Tpm2, for_each_target};

/// TPM_RC_POLICY_FAIL for session 1, TPM_RC_PCR_CHANGED, TPM_RC_LOCALITY.
const RC_POLICY_FAIL_S1: u32 = 0x99D;
const RC_LOCALITY: u32 = 0x907;

for_each_target!(
    seal_unseal_policy_pcr,
    policy_password,
    policy_auth_value,
    policy_secret,
    policy_or,
    policy_command_code,
    policy_nv,
    policy_counter_timer,
    policy_locality,
    policy_authorize_with_verified_ticket,
    policy_restart_and_get_digest,
    policy_signed_and_ticket,
    audit_session_digest,
    command_audit_digest,
    policy_digests_match_reference,
    salted_session_rsa,
    salted_session_ecc,
    bound_session,
    parameter_encryption,
    session_survives_in_a_file_across_tools,
);

fn start(target: Target) -> Result<(Server, Tpm2)> {
    let server = target.start()?;
    let tpm = server.tpm2();
    Ok((server, tpm))
}

const SECRET: &[u8] = b"sealed secret 42";

/// A primary storage key in prim.ctx (transient slots flushed first).
fn primary(tpm: &Tpm2) -> Result<()> {
    tpm.run("flushcontext", &["-t"])?;
    run_flush(tpm, "createprimary", &["-C", "o", "-c", "prim.ctx"])
}

/// Seals SECRET under prim.ctx with `policy` (and optional auth), loads it as sealed.ctx.
fn seal(tpm: &Tpm2, server: &Server, policy: &str, auth: Option<&str>, attrs: &str) -> Result<()> {
    primary(tpm)?;
    let secret = server.write_file("secret", SECRET)?;
    let mut args = vec![
        "-C",
        "prim.ctx",
        "-i",
        &secret,
        "-u",
        "seal.pub",
        "-r",
        "seal.priv",
        "-L",
        policy,
        "-a",
        attrs,
    ];
    if let Some(a) = auth {
        args.extend_from_slice(&["-p", a]);
    }
    run_flush(tpm, "create", &args)?;
    run_flush(
        tpm,
        "load",
        &[
            "-C",
            "prim.ctx",
            "-u",
            "seal.pub",
            "-r",
            "seal.priv",
            "-c",
            "sealed.ctx",
        ],
    )
}

/// A trial session run through `steps`, saving the policy to `out`.
fn trial(tpm: &Tpm2, out: &str, steps: &[(&str, Vec<&str>)]) -> Result<()> {
    tpm.run("startauthsession", &["-S", "trial.ctx"])?;
    for (i, (tool, args)) in steps.iter().enumerate() {
        let mut a: Vec<&str> = vec!["-S", "trial.ctx"];
        if i + 1 == steps.len() && !args.contains(&"-L") {
            a.extend_from_slice(&["-L", out]);
        }
        a.extend_from_slice(args);
        tpm.run(tool, &a)?;
    }
    tpm.run("flushcontext", &["trial.ctx"])?;
    Ok(())
}

/// Runs a tool, then flushes transient objects: without a resource manager every tool leaves
/// the objects it loaded behind, and swtpm has only 3 slots.
fn run_flush(tpm: &Tpm2, tool: &str, args: &[&str]) -> Result<()> {
    tpm.run(tool, args)?;
    tpm.run("flushcontext", &["-t"])?;
    Ok(())
}

/// A policy session through `steps`, left in s.ctx.
fn policy_session(tpm: &Tpm2, steps: &[(&str, Vec<&str>)]) -> Result<()> {
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    for (tool, args) in steps {
        let mut a: Vec<&str> = vec!["-S", "s.ctx"];
        a.extend_from_slice(args);
        tpm.run(tool, &a)?;
    }
    Ok(())
}

fn unseal(tpm: &Tpm2, auth: &str) -> Result<Vec<u8>> {
    let out = tpm.run("unseal", &["-c", "sealed.ctx", "-p", auth])?;
    tpm.run("flushcontext", &["-t"])?;
    Ok(out.stdout.into_bytes())
}

const SEAL_ATTRS: &str = "fixedtpm|fixedparent";

fn seal_unseal_policy_pcr(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run("pcrread", &["-o", "pcr.bin", "sha256:0,1"])?;
    tpm.run(
        "createpolicy",
        &[
            "--policy-pcr",
            "-l",
            "sha256:0,1",
            "-f",
            "pcr.bin",
            "-L",
            "pcr.policy",
        ],
    )?;
    seal(&tpm, &server, "pcr.policy", None, SEAL_ATTRS)?;
    policy_session(&tpm, &[("policypcr", vec!["-l", "sha256:0,1"])])?;
    ensure!(
        unseal(&tpm, "session:s.ctx")? == SECRET,
        "unsealed wrong data"
    );
    tpm.run("flushcontext", &["s.ctx"])?;
    // After an extend the same policy no longer matches.
    tpm.run(
        "pcrextend",
        &["0:sha256=0000000000000000000000000000000000000000000000000000000000000001"],
    )?;
    policy_session(&tpm, &[("policypcr", vec!["-l", "sha256:0,1"])])?;
    tpm.fails("unseal", &["-c", "sealed.ctx", "-p", "session:s.ctx"])?
        .expect_rc(RC_POLICY_FAIL_S1)?;
    tpm.run("flushcontext", &["-t"])?;
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

fn policy_password(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    trial(
        &tpm,
        "pw.policy",
        &[("policypassword", vec!["-L", "pw.policy"])],
    )?;
    seal(
        &tpm,
        &server,
        "pw.policy",
        Some("objpass"),
        "fixedtpm|fixedparent",
    )?;
    policy_session(&tpm, &[("policypassword", vec![])])?;
    ensure!(unseal(&tpm, "session:s.ctx+objpass")? == SECRET, "unseal");
    tpm.run("flushcontext", &["s.ctx"])?;
    policy_session(&tpm, &[("policypassword", vec![])])?;
    tpm.fails("unseal", &["-c", "sealed.ctx", "-p", "session:s.ctx+wrong"])?;
    Ok(())
}

fn policy_auth_value(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    trial(
        &tpm,
        "av.policy",
        &[("policyauthvalue", vec!["-L", "av.policy"])],
    )?;
    seal(
        &tpm,
        &server,
        "av.policy",
        Some("objpass"),
        "fixedtpm|fixedparent",
    )?;
    policy_session(&tpm, &[("policyauthvalue", vec![])])?;
    ensure!(unseal(&tpm, "session:s.ctx+objpass")? == SECRET, "unseal");
    tpm.run("flushcontext", &["s.ctx"])?;
    policy_session(&tpm, &[("policyauthvalue", vec![])])?;
    tpm.fails("unseal", &["-c", "sealed.ctx", "-p", "session:s.ctx+wrong"])?;
    Ok(())
}

fn policy_secret(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run("changeauth", &["-c", "o", "ownerpass"])?;
    trial(
        &tpm,
        "secret.policy",
        &[(
            "policysecret",
            vec!["-c", "o", "-L", "secret.policy", "ownerpass"],
        )],
    )?;
    tpm.run("flushcontext", &["-t"])?;
    run_flush(
        &tpm,
        "createprimary",
        &["-C", "o", "-P", "ownerpass", "-c", "prim.ctx"],
    )?;
    let secret = server.write_file("secret", SECRET)?;
    run_flush(
        &tpm,
        "create",
        &[
            "-C",
            "prim.ctx",
            "-i",
            &secret,
            "-u",
            "seal.pub",
            "-r",
            "seal.priv",
            "-L",
            "secret.policy",
        ],
    )?;
    run_flush(
        &tpm,
        "load",
        &[
            "-C",
            "prim.ctx",
            "-u",
            "seal.pub",
            "-r",
            "seal.priv",
            "-c",
            "sealed.ctx",
        ],
    )?;
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    tpm.run("policysecret", &["-S", "s.ctx", "-c", "o", "ownerpass"])?;
    ensure!(unseal(&tpm, "session:s.ctx")? == SECRET, "unseal");
    tpm.run("flushcontext", &["s.ctx"])?;
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    tpm.fails("policysecret", &["-S", "s.ctx", "-c", "o", "wrongpass"])?;
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

fn policy_or(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    trial(&tpm, "a.policy", &[("policypassword", vec![])])?;
    trial(
        &tpm,
        "b.policy",
        &[("policycommandcode", vec!["TPM2_CC_Unseal"])],
    )?;
    trial(
        &tpm,
        "or.policy",
        &[(
            "policyor",
            vec!["-L", "or.policy", "sha256:a.policy,b.policy"],
        )],
    )?;
    seal(&tpm, &server, "or.policy", None, SEAL_ATTRS)?;
    policy_session(
        &tpm,
        &[
            ("policycommandcode", vec!["TPM2_CC_Unseal"]),
            ("policyor", vec!["sha256:a.policy,b.policy"]),
        ],
    )?;
    ensure!(
        unseal(&tpm, "session:s.ctx")? == SECRET,
        "unseal via branch b"
    );
    tpm.run("flushcontext", &["s.ctx"])?;
    // A branch that is not in the list is refused by PolicyOR itself.
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    tpm.run("policycommandcode", &["-S", "s.ctx", "TPM2_CC_Sign"])?;
    tpm.fails("policyor", &["-S", "s.ctx", "sha256:a.policy,b.policy"])?;
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

fn policy_command_code(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    trial(
        &tpm,
        "cc.policy",
        &[(
            "policycommandcode",
            vec!["-L", "cc.policy", "TPM2_CC_Unseal"],
        )],
    )?;
    seal(&tpm, &server, "cc.policy", None, SEAL_ATTRS)?;
    policy_session(&tpm, &[("policycommandcode", vec!["TPM2_CC_Unseal"])])?;
    ensure!(unseal(&tpm, "session:s.ctx")? == SECRET, "unseal");
    tpm.run("flushcontext", &["s.ctx"])?;
    // Bound to another command: TPM_RC_POLICY_CC.
    policy_session(&tpm, &[("policycommandcode", vec!["TPM2_CC_Sign"])])?;
    let out = tpm.fails("unseal", &["-c", "sealed.ctx", "-p", "session:s.ctx"])?;
    ensure!(out.tpm_rc().is_some(), "expected a TPM error\n{out}");
    Ok(())
}

fn policy_nv(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500100",
            "-C",
            "o",
            "-s",
            "4",
            "-a",
            "ownerread|ownerwrite",
        ],
    )?;
    let value = server.write_file("value", &[0, 0, 0, 7])?;
    tpm.run("nvwrite", &["0x1500100", "-C", "o", "-i", &value])?;
    let operand = server.write_file("operand", &[0, 0, 0, 7])?;
    trial(
        &tpm,
        "nv.policy",
        &[(
            "policynv",
            vec![
                "-i",
                &operand,
                "-C",
                "o",
                "0x1500100",
                "eq",
                "-L",
                "nv.policy",
            ],
        )],
    )?;
    seal(&tpm, &server, "nv.policy", None, SEAL_ATTRS)?;
    policy_session(
        &tpm,
        &[(
            "policynv",
            vec!["-i", &operand, "-C", "o", "0x1500100", "eq"],
        )],
    )?;
    ensure!(unseal(&tpm, "session:s.ctx")? == SECRET, "unseal");
    tpm.run("flushcontext", &["s.ctx"])?;
    // The comparison fails once the index changes.
    let other = server.write_file("other", &[0, 0, 0, 8])?;
    tpm.run("nvwrite", &["0x1500100", "-C", "o", "-i", &other])?;
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    tpm.fails(
        "policynv",
        &["-S", "s.ctx", "-i", &operand, "-C", "o", "0x1500100", "eq"],
    )?;
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

fn policy_counter_timer(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    // TPMS_TIME_INFO.time (ms since startup) below one hour.
    trial(
        &tpm,
        "ct.policy",
        &[(
            "policycountertimer",
            vec!["-L", "ct.policy", "--ult", "3600000"],
        )],
    )?;
    seal(&tpm, &server, "ct.policy", None, SEAL_ATTRS)?;
    policy_session(&tpm, &[("policycountertimer", vec!["--ult", "3600000"])])?;
    ensure!(unseal(&tpm, "session:s.ctx")? == SECRET, "unseal");
    tpm.run("flushcontext", &["s.ctx"])?;
    // time > one hour is false now.
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    tpm.fails("policycountertimer", &["-S", "s.ctx", "--ugt", "3600000"])?;
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

fn policy_locality(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    trial(
        &tpm,
        "loc.policy",
        &[("policylocality", vec!["-L", "loc.policy", "zero"])],
    )?;
    seal(&tpm, &server, "loc.policy", None, SEAL_ATTRS)?;
    policy_session(&tpm, &[("policylocality", vec!["zero"])])?;
    ensure!(
        unseal(&tpm, "session:s.ctx")? == SECRET,
        "unseal at locality 0"
    );
    tpm.run("flushcontext", &["s.ctx"])?;
    // A policy for locality 3 cannot be used from locality 0.
    trial(
        &tpm,
        "loc3.policy",
        &[("policylocality", vec!["-L", "loc3.policy", "three"])],
    )?;
    seal(&tpm, &server, "loc3.policy", None, SEAL_ATTRS)?;
    policy_session(&tpm, &[("policylocality", vec!["three"])])?;
    tpm.fails("unseal", &["-c", "sealed.ctx", "-p", "session:s.ctx"])?
        .expect_rc(RC_LOCALITY)?;
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

fn policy_authorize_with_verified_ticket(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run("flushcontext", &["-t"])?;
    // A TPM signing key whose public part is the policy authority.
    run_flush(&tpm, "createprimary", &["-C", "o", "-c", "prim.ctx"])?;
    run_flush(
        &tpm,
        "create",
        &[
            "-C",
            "prim.ctx",
            "-G",
            "rsa2048:rsassa-sha256:null",
            "-u",
            "sign.pub",
            "-r",
            "sign.priv",
        ],
    )?;
    run_flush(
        &tpm,
        "load",
        &[
            "-C",
            "prim.ctx",
            "-u",
            "sign.pub",
            "-r",
            "sign.priv",
            "-c",
            "sign.ctx",
            "-n",
            "sign.name",
        ],
    )?;
    // The approved policy: PolicyPCR over sha256:0.
    tpm.run("pcrread", &["-o", "pcr.bin", "sha256:0"])?;
    tpm.run(
        "createpolicy",
        &[
            "--policy-pcr",
            "-l",
            "sha256:0",
            "-f",
            "pcr.bin",
            "-L",
            "pcr.policy",
        ],
    )?;
    run_flush(
        &tpm,
        "sign",
        &[
            "-c",
            "sign.ctx",
            "-g",
            "sha256",
            "-o",
            "pcr.sig",
            "pcr.policy",
        ],
    )?;
    run_flush(
        &tpm,
        "verifysignature",
        &[
            "-c",
            "sign.ctx",
            "-g",
            "sha256",
            "-m",
            "pcr.policy",
            "-s",
            "pcr.sig",
            "-t",
            "verified.tkt",
        ],
    )?;
    trial(
        &tpm,
        "authorized.policy",
        &[(
            "policyauthorize",
            vec!["-i", "pcr.policy", "-n", "sign.name"],
        )],
    )?;
    seal(&tpm, &server, "authorized.policy", None, SEAL_ATTRS)?;
    policy_session(
        &tpm,
        &[
            ("policypcr", vec!["-l", "sha256:0"]),
            (
                "policyauthorize",
                vec!["-i", "pcr.policy", "-n", "sign.name", "-t", "verified.tkt"],
            ),
        ],
    )?;
    ensure!(unseal(&tpm, "session:s.ctx")? == SECRET, "unseal");
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

fn policy_restart_and_get_digest(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    tpm.run("policyauthvalue", &["-S", "s.ctx", "-L", "one.policy"])?;
    tpm.run("policypassword", &["-S", "s.ctx", "-L", "two.policy"])?;
    tpm.run("policyrestart", &["-S", "s.ctx"])?;
    tpm.run("policyauthvalue", &["-S", "s.ctx", "-L", "again.policy"])?;
    let one = std::fs::read(server.path("one.policy"))?;
    let two = std::fs::read(server.path("two.policy"))?;
    let again = std::fs::read(server.path("again.policy"))?;
    ensure!(
        one == again && one != two && one.len() == 32,
        "digests after PolicyRestart"
    );
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

/// `openssl args...` in the server directory.
fn openssl(server: &Server, args: &[&str]) -> Result<()> {
    let program = ukvtpm_tests::require::tool("openssl")?;
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(server.path(""))
        .output()?;
    ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn policy_signed_and_ticket(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    openssl(&server, &["genrsa", "-out", "private.pem", "2048"])?;
    openssl(
        &server,
        &["rsa", "-in", "private.pem", "-pubout", "-out", "public.pem"],
    )?;
    let load_key = || {
        run_flush(
            &tpm,
            "loadexternal",
            &[
                "-C",
                "o",
                "-G",
                "rsa",
                "-u",
                "public.pem",
                "-c",
                "key.ctx",
                "-n",
                "key.name",
            ],
        )
    };
    load_key()?;
    // The policy digest does not depend on the nonce: take it from a real session.
    let signed = |extra: &[&str]| -> Result<()> {
        let mut raw = vec![
            "-S",
            "s.ctx",
            "-g",
            "sha256",
            "-c",
            "key.ctx",
            "--raw-data",
            "to_sign.bin",
        ];
        raw.extend_from_slice(extra);
        run_flush(&tpm, "policysigned", &raw)?;
        openssl(
            &server,
            &[
                "dgst",
                "-sha256",
                "-sign",
                "private.pem",
                "-out",
                "sig.dat",
                "to_sign.bin",
            ],
        )?;
        let mut args = vec![
            "-S", "s.ctx", "-g", "sha256", "-s", "sig.dat", "-f", "rsassa", "-c", "key.ctx",
        ];
        args.extend_from_slice(extra);
        run_flush(&tpm, "policysigned", &args)
    };
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    signed(&["-L", "signed.policy"])?;
    tpm.run("flushcontext", &["s.ctx"])?;
    seal(&tpm, &server, "signed.policy", None, SEAL_ATTRS)?;
    // Sign over the session nonce, with a ticket valid for an hour.
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    signed(&[
        "-x",
        "-t",
        "-3600",
        "--ticket",
        "signed.tkt",
        "--timeout",
        "signed.timeout",
    ])?;
    ensure!(
        unseal(&tpm, "session:s.ctx")? == SECRET,
        "unseal with PolicySigned"
    );
    tpm.run("flushcontext", &["s.ctx"])?;
    // The ticket stands in for the signature.
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    tpm.run(
        "policyticket",
        &[
            "-S",
            "s.ctx",
            "-n",
            "key.name",
            "--ticket",
            "signed.tkt",
            "--timeout",
            "signed.timeout",
        ],
    )?;
    ensure!(
        unseal(&tpm, "session:s.ctx")? == SECRET,
        "unseal with PolicyTicket"
    );
    tpm.run("flushcontext", &["s.ctx"])?;
    // A bad signature is refused.
    load_key()?;
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    std::fs::write(server.path("sig.dat"), [0u8; 256])?;
    tpm.fails(
        "policysigned",
        &[
            "-S", "s.ctx", "-g", "sha256", "-s", "sig.dat", "-f", "rsassa", "-c", "key.ctx",
        ],
    )?;
    Ok(())
}

/// An NV index with a password, written through an HMAC session `s.ctx`.
fn nv_write_through(tpm: &Tpm2, server: &Server) -> Result<()> {
    tpm.run(
        "nvdefine",
        &[
            "0x1500200",
            "-C",
            "o",
            "-s",
            "16",
            "-a",
            "authread|authwrite",
            "-p",
            "nvpass",
        ],
    )?;
    let data = server.write_file("data", b"0123456789abcdef")?;
    tpm.run(
        "nvwrite",
        &["0x1500200", "-P", "session:s.ctx+nvpass", "-i", &data],
    )?;
    let out = server.path("nv.out").to_string_lossy().into_owned();
    tpm.run(
        "nvread",
        &[
            "0x1500200",
            "-P",
            "session:s.ctx+nvpass",
            "-s",
            "16",
            "-o",
            &out,
        ],
    )?;
    ensure!(std::fs::read(&out)? == b"0123456789abcdef", "read back");
    Ok(())
}

fn salted_session_rsa(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run("flushcontext", &["-t"])?;
    run_flush(
        &tpm,
        "createprimary",
        &["-C", "o", "-G", "rsa2048", "-c", "prim.ctx"],
    )?;
    run_flush(
        &tpm,
        "startauthsession",
        &[
            "--hmac-session",
            "--tpmkey-context",
            "prim.ctx",
            "-S",
            "s.ctx",
        ],
    )?;
    tpm.run(
        "sessionconfig",
        &["s.ctx", "--enable-encrypt", "--enable-decrypt"],
    )?;
    nv_write_through(&tpm, &server)?;
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

fn salted_session_ecc(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run("flushcontext", &["-t"])?;
    run_flush(
        &tpm,
        "createprimary",
        &["-C", "o", "-G", "ecc256", "-c", "prim.ctx"],
    )?;
    run_flush(
        &tpm,
        "startauthsession",
        &[
            "--hmac-session",
            "--tpmkey-context",
            "prim.ctx",
            "-S",
            "s.ctx",
        ],
    )?;
    nv_write_through(&tpm, &server)?;
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

fn bound_session(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run("flushcontext", &["-t"])?;
    run_flush(
        &tpm,
        "createprimary",
        &["-C", "o", "-c", "prim.ctx", "-p", "primpass"],
    )?;
    run_flush(
        &tpm,
        "startauthsession",
        &[
            "--hmac-session",
            "--bind-context",
            "prim.ctx",
            "--bind-auth",
            "primpass",
            "-S",
            "s.ctx",
        ],
    )?;
    let secret = server.write_file("secret", SECRET)?;
    // The bound entity authorizes without its authValue in the HMAC.
    tpm.run(
        "create",
        &[
            "-C",
            "prim.ctx",
            "-P",
            "session:s.ctx+primpass",
            "-i",
            &secret,
            "-u",
            "seal.pub",
            "-r",
            "seal.priv",
        ],
    )?;
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

fn parameter_encryption(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    // tpm2-tools sessions use AES-128-CFB; XOR is covered by the engine tests.
    tpm.run("startauthsession", &["--hmac-session", "-S", "s.ctx"])?;
    tpm.run("sessionconfig", &["s.ctx", "--enable-encrypt"])?;
    let out = tpm.run("getrandom", &["16", "--hex", "-S", "s.ctx"])?;
    ensure!(out.stdout.trim().len() == 32, "getrandom: {out}");
    tpm.run("flushcontext", &["s.ctx"])?;
    // Encrypted command and response parameters on an NV index.
    tpm.run("startauthsession", &["--hmac-session", "-S", "s.ctx"])?;
    tpm.run(
        "sessionconfig",
        &["s.ctx", "--enable-encrypt", "--enable-decrypt"],
    )?;
    nv_write_through(&tpm, &server)?;
    tpm.run("flushcontext", &["s.ctx"])?;
    Ok(())
}

fn session_survives_in_a_file_across_tools(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    tpm.run("policycommandcode", &["-S", "s.ctx", "TPM2_CC_Unseal"])?;
    tpm.run("policyauthvalue", &["-S", "s.ctx", "-L", "p.policy"])?;
    let handles = tpm.run("getcap", &["handles-saved-session"])?;
    ensure!(
        handles.stdout.contains("0x"),
        "saved session not listed:\n{handles}"
    );
    tpm.run("flushcontext", &["s.ctx"])?;
    ensure!(
        std::fs::read(server.path("p.policy"))?.len() == 32,
        "digest"
    );
    let handles = tpm.run("getcap", &["handles-saved-session"])?;
    ensure!(
        !handles.stdout.contains("0x"),
        "flushed session still listed:\n{handles}"
    );
    Ok(())
}

/// A restricted-free RSA signing key in sign.ctx.
fn signing_key(tpm: &Tpm2) -> Result<()> {
    tpm.run("flushcontext", &["-t"])?;
    run_flush(tpm, "createprimary", &["-C", "e", "-c", "prim.ctx"])?;
    run_flush(
        tpm,
        "create",
        &[
            "-C",
            "prim.ctx",
            "-G",
            "rsa2048:rsassa-sha256:null",
            "-u",
            "sign.pub",
            "-r",
            "sign.priv",
        ],
    )?;
    run_flush(
        tpm,
        "load",
        &[
            "-C",
            "prim.ctx",
            "-u",
            "sign.pub",
            "-r",
            "sign.priv",
            "-c",
            "sign.ctx",
        ],
    )
}

fn audit_session_digest(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    signing_key(&tpm)?;
    tpm.run("startauthsession", &["-S", "audit.ctx", "--audit-session"])?;
    tpm.run("getrandom", &["8", "-S", "audit.ctx", "--hex"])?;
    tpm.run("getrandom", &["8", "-S", "audit.ctx", "--hex"])?;
    run_flush(
        &tpm,
        "getsessionauditdigest",
        &[
            "-c",
            "sign.ctx",
            "-g",
            "sha256",
            "-m",
            "att.bin",
            "-s",
            "att.sig",
            "-S",
            "audit.ctx",
        ],
    )?;
    let att = std::fs::read(server.path("att.bin"))?;
    ensure!(
        att.get(4..6) == Some(&[0x80, 0x16][..]),
        "not a session audit attestation"
    );
    // The signature verifies over the attestation.
    run_flush(
        &tpm,
        "verifysignature",
        &[
            "-c", "sign.ctx", "-g", "sha256", "-m", "att.bin", "-s", "att.sig",
        ],
    )?;
    tpm.run("flushcontext", &["audit.ctx"])?;
    Ok(())
}

fn command_audit_digest(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    signing_key(&tpm)?;
    tpm.run("setcommandauditstatus", &["TPM2_CC_GetRandom"])?;
    tpm.run("getrandom", &["8", "--hex"])?;
    tpm.run("getrandom", &["8", "--hex"])?;
    run_flush(
        &tpm,
        "getcommandauditdigest",
        &[
            "-c", "sign.ctx", "-g", "sha256", "-m", "cmd.att", "-s", "cmd.sig",
        ],
    )?;
    let att = std::fs::read(server.path("cmd.att"))?;
    ensure!(
        att.get(4..6) == Some(&[0x80, 0x15][..]),
        "not a command audit attestation"
    );
    run_flush(
        &tpm,
        "verifysignature",
        &[
            "-c", "sign.ctx", "-g", "sha256", "-m", "cmd.att", "-s", "cmd.sig",
        ],
    )?;
    // Changing the hash alone is allowed; then the list can change.
    tpm.run("setcommandauditstatus", &["-g", "sha1"])?;
    tpm.run("setcommandauditstatus", &["-c", "TPM2_CC_GetRandom"])?;
    Ok(())
}

/// Trial-session digests of every policy command tpm2-tools has, against the values swtpm
/// (libtpms) computes: the digests depend on nothing random, so the constants hold for any TPM
/// that implements Part 3, 23 correctly.
fn policy_digests_match_reference(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    let d32 = [0x11u8; 32];
    server.write_file("d32.bin", &d32)?;
    let mut cp = vec![0x00, 0x20];
    cp.extend_from_slice(&d32);
    server.write_file("cp.bin", &cp)?;
    let mut name = vec![0x00, 0x0B];
    name.extend_from_slice(&d32);
    server.write_file("name.bin", &name)?;
    let mut parent = vec![0x00, 0x0B];
    parent.extend_from_slice(&[0x22; 32]);
    server.write_file("parent.bin", &parent)?;
    server.write_file("op.bin", &[0, 0, 0, 7])?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500600",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerread|ownerwrite",
        ],
    )?;
    let cases: &[(&str, &str, &[&str], &str)] = &[
        (
            "pcr",
            "policypcr",
            &["-l", "sha256:0,1,2"],
            "e7f31f4b025ea047a62c000be9fbc43b21a06a798f9b81a9d90a8769ba595015",
        ),
        (
            "locality",
            "policylocality",
            &["three"],
            "7764491d5afe719035c0c09faa90c3490a7475d6df422b804e8f68aa65f8934f",
        ),
        (
            "cc",
            "policycommandcode",
            &["TPM2_CC_Unseal"],
            "e613137076524bde487533865884e9732ebee3aacb095d94a6de492ec06c46fa",
        ),
        (
            "authvalue",
            "policyauthvalue",
            &[],
            "8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e",
        ),
        (
            "password",
            "policypassword",
            &[],
            "8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e",
        ),
        (
            "nvwritten",
            "policynvwritten",
            &["s"],
            "f7887d158ae8d38be0ac5319f37a9e07618bf54885453c7a54ddb0c6a6193beb",
        ),
        (
            "cphash",
            "policycphash",
            &["--cphash-input", "cp.bin"],
            "e859ef1747b5f82fb1971132845d543905445696db00462f49bc7181bac31070",
        ),
        (
            "namehash",
            "policynamehash",
            &["-n", "d32.bin"],
            "0947d85c4762c6cf8df3c287ba63252811fa744164489acb11b79b55345d59a7",
        ),
        (
            "template",
            "policytemplate",
            &["--template-hash", "d32.bin"],
            "398552bfa009a6bb1a896d4462c171f553a710e3858ef637ec5e0a993dd69aa7",
        ),
        (
            "dupsel",
            "policyduplicationselect",
            &["-n", "name.bin", "-N", "parent.bin", "--include-object"],
            "cb20b19c2f10e6a1658196c10f2c778cc19923891bb615d331cc2990bf3f56bf",
        ),
        (
            "ct",
            "policycountertimer",
            &["--ult", "1000"],
            "3d0ab0a10dc95cd0309ce8376edc6f86b7ed9a2d405c2017b2a56cf5ee05b859",
        ),
        (
            "secret",
            "policysecret",
            &["-c", "o"],
            "0d84f55daf6e43ac97966e62c9bb989d3397777d25c5f749868055d65394f952",
        ),
        (
            "nv",
            "policynv",
            &["-i", "op.bin", "-C", "o", "0x1500600", "eq"],
            "faff7f00adfc02b97f4f293671be57018a7dd24d1acce52526d6229e4ae0e83c",
        ),
        (
            "authnv",
            "policyauthorizenv",
            &["-C", "o", "0x1500600"],
            "ad33711c5b8aba6633cd7f1d2b61e022ae97b0baa61622971fe5a29619e003a5",
        ),
        (
            "authorize",
            "policyauthorize",
            &["-i", "d32.bin", "-n", "name.bin"],
            "4a1abcfbbd695141639ae9da442c5b6121baadc246ba3aaa129076f5f508af1b",
        ),
        (
            "or",
            "policyor",
            &["sha256:authvalue.pol,cc.pol"],
            "a0a333af4a6491143962f580ceccd7bb9d0a470874e934180e78a9b1c2d12d61",
        ),
    ];
    for (label, tool, args, want) in cases {
        let out = format!("{label}.pol");
        tpm.run("startauthsession", &["-S", "t.ctx"])?;
        let mut a = vec!["-S", "t.ctx", "-L", out.as_str()];
        a.extend_from_slice(args);
        tpm.run(tool, &a)?;
        tpm.run("flushcontext", &["t.ctx"])?;
        let got: String = std::fs::read(server.path(&out))?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ensure!(got == *want, "{tool}: digest {got}, expected {want}");
    }
    Ok(())
}
