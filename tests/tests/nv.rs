//! NV storage with tpm2-tools (issue 5): every index type and the lock, auth and undefine
//! attributes, dictionary-attack lockout, and state that survives a server restart. Every body
//! runs against swtpm (the reference) and `ukvtpm serve` (both TCTIs).

use anyhow::{Context, Result, ensure};
use ukvtpm_tests::{Server, Target, Tpm2, for_each_target};

/// TPM response codes as tpm2-tools report them (Part 2, 6.6).
const RC_NV_LOCKED: u32 = 0x148;
const RC_NV_AUTHORIZATION: u32 = 0x149;
const RC_NV_DEFINED: u32 = 0x14C;
const RC_NV_RANGE: u32 = 0x146;
const RC_AUTH_FAIL_S1: u32 = 0x98E;
const RC_LOCKOUT: u32 = 0x921;
const RC_HANDLE_P1: u32 = 0x18B;

for_each_target!(
    nv_ordinary_define_write_read_undefine,
    nv_index_auth,
    nv_counter_never_goes_back,
    nv_bits,
    nv_extend,
    nv_write_lock_and_read_lock,
    nv_global_write_lock,
    nv_writeall_and_ranges,
    nv_define_twice,
    nv_state_survives_restart,
    nv_da_lockout_and_reset,
    nv_policy_write,
    nv_certify,
    nv_undefine_space_special,
    nv_change_auth_with_policy,
);

fn start(target: Target) -> Result<(Server, Tpm2)> {
    let server = target.start()?;
    let tpm = server.tpm2();
    Ok((server, tpm))
}

/// `tpm2_nvread` to a file, returning the bytes.
fn nvread(tpm: &Tpm2, server: &Server, args: &[&str]) -> Result<Vec<u8>> {
    let out = server.path("nvread.out");
    let out_s = out.to_string_lossy().into_owned();
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", &out_s]);
    tpm.run("nvread", &all)?;
    Ok(std::fs::read(&out)?)
}

fn nv_ordinary_define_write_read_undefine(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500016",
            "-C",
            "o",
            "-s",
            "32",
            "-a",
            "ownerread|ownerwrite",
        ],
    )?;
    let public = tpm.run("nvreadpublic", &["0x1500016"])?;
    ensure!(
        public.stdout.contains("size: 32"),
        "nvreadpublic:\n{public}"
    );
    let data = server.write_file("data", b"hello NV world")?;
    tpm.run("nvwrite", &["0x1500016", "-C", "o", "-i", &data])?;
    let got = nvread(&tpm, &server, &["0x1500016", "-C", "o", "-s", "14"])?;
    ensure!(got == b"hello NV world", "read back {got:?}");
    let got = nvread(
        &tpm,
        &server,
        &["0x1500016", "-C", "o", "-s", "2", "--offset", "6"],
    )?;
    ensure!(got == b"NV", "offset read {got:?}");
    let public = tpm.run("nvreadpublic", &["0x1500016"])?;
    ensure!(
        public.stdout.contains("written"),
        "WRITTEN not reported:\n{public}"
    );
    tpm.run("nvundefine", &["0x1500016", "-C", "o"])?;
    let handles = tpm.run("getcap", &["handles-nv-index"])?;
    ensure!(
        !handles.stdout.contains("0x1500016"),
        "still listed:\n{handles}"
    );
    tpm.fails("nvreadpublic", &["0x1500016"])?;
    Ok(())
}

fn nv_index_auth(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500017",
            "-C",
            "o",
            "-s",
            "16",
            "-a",
            "authread|authwrite",
            "-p",
            "indexpass",
        ],
    )?;
    let data = server.write_file("data", b"0123456789abcdef")?;
    tpm.run("nvwrite", &["0x1500017", "-P", "indexpass", "-i", &data])?;
    let got = nvread(&tpm, &server, &["0x1500017", "-P", "indexpass", "-s", "16"])?;
    ensure!(got == b"0123456789abcdef", "read back {got:?}");
    // Owner authorization is not allowed for this index.
    tpm.fails("nvread", &["0x1500017", "-C", "o", "-s", "16"])?
        .expect_rc(RC_NV_AUTHORIZATION)?;
    // Wrong index password: DA-protected failure.
    tpm.fails("nvread", &["0x1500017", "-P", "wrong", "-s", "16"])?
        .expect_rc(RC_AUTH_FAIL_S1)?;
    Ok(())
}

fn counter_value(tpm: &Tpm2, server: &Server, index: &str) -> Result<u64> {
    let got = nvread(tpm, server, &[index, "-C", "o", "-s", "8"])?;
    ensure!(got.len() == 8, "counter read {got:?}");
    Ok(u64::from_be_bytes(
        got.try_into().map_err(|_| anyhow::anyhow!("size"))?,
    ))
}

fn nv_counter_never_goes_back(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    let attrs = "nt=counter|ownerread|ownerwrite";
    tpm.run(
        "nvdefine",
        &["0x1500020", "-C", "o", "-s", "8", "-a", attrs],
    )?;
    for _ in 0..3 {
        tpm.run("nvincrement", &["0x1500020", "-C", "o"])?;
    }
    let first = counter_value(&tpm, &server, "0x1500020")?;
    tpm.run("nvincrement", &["0x1500020", "-C", "o"])?;
    ensure!(
        counter_value(&tpm, &server, "0x1500020")? == first + 1,
        "increment"
    );
    // A counter cannot be written directly.
    let data = server.write_file("data", &[0; 8])?;
    tpm.fails("nvwrite", &["0x1500020", "-C", "o", "-i", &data])?;
    // Undefine and define again: it starts at least where the old one ended.
    tpm.run("nvundefine", &["0x1500020", "-C", "o"])?;
    tpm.run(
        "nvdefine",
        &["0x1500020", "-C", "o", "-s", "8", "-a", attrs],
    )?;
    tpm.run("nvincrement", &["0x1500020", "-C", "o"])?;
    let again = counter_value(&tpm, &server, "0x1500020")?;
    ensure!(again > first, "counter went back: {again} <= {first}");
    Ok(())
}

fn nv_bits(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500021",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "nt=bits|ownerread|ownerwrite",
        ],
    )?;
    tpm.run("nvsetbits", &["0x1500021", "-C", "o", "-i", "0x11"])?;
    tpm.run("nvsetbits", &["0x1500021", "-C", "o", "-i", "0x100"])?;
    let got = nvread(&tpm, &server, &["0x1500021", "-C", "o", "-s", "8"])?;
    ensure!(got == 0x111u64.to_be_bytes(), "bits {got:?}");
    Ok(())
}

fn nv_extend(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500022",
            "-C",
            "o",
            "-g",
            "sha256",
            "-a",
            "nt=extend|ownerread|ownerwrite",
        ],
    )?;
    let data = server.write_file("event", b"measured event")?;
    tpm.run("nvextend", &["0x1500022", "-C", "o", "-i", &data])?;
    let got = nvread(&tpm, &server, &["0x1500022", "-C", "o", "-s", "32"])?;
    let mut input = vec![0u8; 32];
    input.extend_from_slice(b"measured event");
    let want = ukvtpm_tests::util::reference_digest("sha256", &input)?;
    ensure!(ukvtpm_tests::util::unhex(&want)? == got, "extend value");
    Ok(())
}

fn nv_write_lock_and_read_lock(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500023",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerread|ownerwrite|write_stclear|read_stclear",
        ],
    )?;
    let data = server.write_file("data", b"12345678")?;
    tpm.run("nvwrite", &["0x1500023", "-C", "o", "-i", &data])?;
    tpm.run("nvwritelock", &["0x1500023", "-C", "o"])?;
    tpm.fails("nvwrite", &["0x1500023", "-C", "o", "-i", &data])?
        .expect_rc(RC_NV_LOCKED)?;
    nvread(&tpm, &server, &["0x1500023", "-C", "o", "-s", "8"])?;
    tpm.run("nvreadlock", &["0x1500023", "-C", "o"])?;
    tpm.fails("nvread", &["0x1500023", "-C", "o", "-s", "8"])?
        .expect_rc(RC_NV_LOCKED)?;
    // An index without WRITEDEFINE/WRITE_STCLEAR cannot be write-locked.
    tpm.run(
        "nvdefine",
        &[
            "0x1500024",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerread|ownerwrite",
        ],
    )?;
    tpm.fails("nvwritelock", &["0x1500024", "-C", "o"])?;
    Ok(())
}

fn nv_global_write_lock(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500025",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerread|ownerwrite|globallock",
        ],
    )?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500026",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerread|ownerwrite",
        ],
    )?;
    let data = server.write_file("data", b"12345678")?;
    tpm.run("nvwritelock", &["--global", "-C", "o"])?;
    tpm.fails("nvwrite", &["0x1500025", "-C", "o", "-i", &data])?
        .expect_rc(RC_NV_LOCKED)?;
    tpm.run("nvwrite", &["0x1500026", "-C", "o", "-i", &data])?;
    Ok(())
}

fn nv_writeall_and_ranges(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500027",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerread|ownerwrite|writeall",
        ],
    )?;
    let short = server.write_file("short", b"1234")?;
    tpm.fails("nvwrite", &["0x1500027", "-C", "o", "-i", &short])?
        .expect_rc(RC_NV_RANGE)?;
    let full = server.write_file("full", b"12345678")?;
    tpm.run("nvwrite", &["0x1500027", "-C", "o", "-i", &full])?;
    // (tpm2_nvread refuses out-of-range reads itself, before asking the TPM.)
    tpm.fails(
        "nvread",
        &["0x1500027", "-C", "o", "-s", "4", "--offset", "6"],
    )?;
    Ok(())
}

fn nv_define_twice(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    let args = [
        "0x1500028",
        "-C",
        "o",
        "-s",
        "8",
        "-a",
        "ownerread|ownerwrite",
    ];
    tpm.run("nvdefine", &args)?;
    tpm.fails("nvdefine", &args)?.expect_rc(RC_NV_DEFINED)?;
    tpm.run("nvundefine", &["0x1500028", "-C", "o"])?;
    tpm.fails("nvundefine", &["0x1500028", "-C", "o"])?;
    let _ = RC_HANDLE_P1;
    Ok(())
}

fn nv_state_survives_restart(target: Target) -> Result<()> {
    let (mut server, tpm) = start(target)?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500029",
            "-C",
            "o",
            "-s",
            "16",
            "-a",
            "ownerread|ownerwrite",
        ],
    )?;
    let data = server.write_file("data", b"survives restart")?;
    tpm.run("nvwrite", &["0x1500029", "-C", "o", "-i", &data])?;
    tpm.run(
        "nvdefine",
        &[
            "0x150002a",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "nt=counter|ownerread|ownerwrite",
        ],
    )?;
    tpm.run("nvincrement", &["0x150002a", "-C", "o"])?;
    let before = counter_value(&tpm, &server, "0x150002a")?;
    server.restart()?;
    let tpm = server.tpm2();
    // swtpm and ukvtpm start with TPM2_Startup(CLEAR) done by the flags/TCTI.
    let _ = tpm.output("startup", &["-c"], None)?;
    let got = nvread(&tpm, &server, &["0x1500029", "-C", "o", "-s", "16"])?;
    ensure!(got == b"survives restart", "after restart {got:?}");
    ensure!(
        counter_value(&tpm, &server, "0x150002a")? == before,
        "counter after restart"
    );
    Ok(())
}

fn nv_da_lockout_and_reset(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    // Known DA parameters: 3 tries, long recovery.
    tpm.run(
        "dictionarylockout",
        &["-s", "-n", "3", "-t", "1000", "-l", "1000"],
    )?;
    tpm.run(
        "nvdefine",
        &[
            "0x150002b",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "authread|authwrite",
            "-p",
            "good",
        ],
    )?;
    let data = server.write_file("data", b"12345678")?;
    tpm.run("nvwrite", &["0x150002b", "-P", "good", "-i", &data])?;
    for _ in 0..3 {
        tpm.fails("nvread", &["0x150002b", "-P", "bad", "-s", "8"])?
            .expect_rc(RC_AUTH_FAIL_S1)?;
    }
    tpm.fails("nvread", &["0x150002b", "-P", "good", "-s", "8"])?
        .expect_rc(RC_LOCKOUT)?;
    tpm.run("dictionarylockout", &["-c"])?;
    nvread(&tpm, &server, &["0x150002b", "-P", "good", "-s", "8"])?;
    Ok(())
}

fn nv_policy_write(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    // Policy: PolicyCommandCode(NV_Write) computed in a trial session.
    tpm.run("startauthsession", &["-S", "trial.ctx"])?;
    tpm.run(
        "policycommandcode",
        &["-S", "trial.ctx", "-L", "policy.dat", "TPM2_CC_NV_Write"],
    )?;
    tpm.run("flushcontext", &["trial.ctx"])?;
    tpm.run(
        "nvdefine",
        &[
            "0x150002c",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerread|policywrite",
            "-L",
            "policy.dat",
        ],
    )?;
    let data = server.write_file("data", b"policy!!")?;
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    tpm.run("policycommandcode", &["-S", "s.ctx", "TPM2_CC_NV_Write"])?;
    tpm.run(
        "nvwrite",
        &[
            "0x150002c",
            "-C",
            "0x150002c",
            "-P",
            "session:s.ctx",
            "-i",
            &data,
        ],
    )?;
    tpm.run("flushcontext", &["s.ctx"])?;
    let got = nvread(&tpm, &server, &["0x150002c", "-C", "o", "-s", "8"])?;
    ensure!(got == b"policy!!", "read back {got:?}");
    Ok(())
}

fn nv_certify(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    tpm.run("flushcontext", &["-t"])?;
    tpm.run("createprimary", &["-C", "e", "-c", "prim.ctx"])?;
    tpm.run("flushcontext", &["-t"])?;
    tpm.run(
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
    tpm.run("flushcontext", &["-t"])?;
    tpm.run(
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
    )?;
    tpm.run("flushcontext", &["-t"])?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500300",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerread|ownerwrite",
        ],
    )?;
    let data = server.write_file("data", b"certify!")?;
    tpm.run("nvwrite", &["0x1500300", "-C", "o", "-i", &data])?;
    tpm.run(
        "nvcertify",
        &[
            "-C",
            "sign.ctx",
            "-g",
            "sha256",
            "-o",
            "nv.sig",
            "--attestation",
            "nv.att",
            "--size",
            "8",
            "-c",
            "o",
            "0x1500300",
        ],
    )?;
    tpm.run("flushcontext", &["-t"])?;
    let att = std::fs::read(server.path("nv.att"))?;
    ensure!(
        att.get(4..6) == Some(&[0x80, 0x14][..]),
        "not an NV attestation"
    );
    ensure!(att.ends_with(b"certify!"), "contents not attested");
    tpm.run(
        "verifysignature",
        &[
            "-c", "sign.ctx", "-g", "sha256", "-m", "nv.att", "-s", "nv.sig",
        ],
    )?;
    tpm.run("flushcontext", &["-t"])?;
    Ok(())
}

/// Crash test (issue 5): 1 000 acknowledged NV_Increments while `ukvtpm serve` is killed with
/// SIGKILL at random moments and restarted. After every restart the counter equals the last
/// acknowledged value, or that plus one for the increment in flight: never less.
#[test]
fn ukvtpm_nv_increment_survives_sigkill() -> Result<()> {
    use std::time::Duration;
    use ukvtpm_tests::raw::{self, Client, Framing};
    ukvtpm_tests::server::with_logs(|| {
        let mut server = Target::Ukvtpm.start()?;
        const INDEX: u32 = 0x0150_0400;
        const OWNER: u32 = 0x4000_0001;
        let connect = |server: &Server| -> Result<Client> {
            let mut c = Client::connect(server.port(), Framing::Plain)?;
            // Startup may already have happened (INITIALIZE then): either is fine.
            c.execute(&raw::command(0x8001, 0x144, &[0, 0]))?;
            Ok(c)
        };
        let increment = || {
            let mut rest = OWNER.to_be_bytes().to_vec();
            rest.extend_from_slice(&INDEX.to_be_bytes());
            rest.extend_from_slice(&raw::password_auth(b""));
            raw::command(0x8002, 0x134, &rest)
        };
        let read = |c: &mut Client| -> Result<u64> {
            let mut rest = OWNER.to_be_bytes().to_vec();
            rest.extend_from_slice(&INDEX.to_be_bytes());
            rest.extend_from_slice(&raw::password_auth(b""));
            rest.extend_from_slice(&8u16.to_be_bytes());
            rest.extend_from_slice(&0u16.to_be_bytes());
            let r = c.execute(&raw::command(0x8002, 0x14E, &rest))?.success()?;
            let v = r.body.get(6..14).context("short NV_Read response")?;
            Ok(u64::from_be_bytes(v.try_into()?))
        };
        let mut c = connect(&server)?;
        let mut public = INDEX.to_be_bytes().to_vec();
        public.extend_from_slice(&0x000Bu16.to_be_bytes());
        public.extend_from_slice(&(0x0002_0002u32 | 0x10).to_be_bytes()); // counter, owner rw
        public.extend_from_slice(&raw::tpm2b(&[]));
        public.extend_from_slice(&8u16.to_be_bytes());
        let mut rest = OWNER.to_be_bytes().to_vec();
        rest.extend_from_slice(&raw::password_auth(b""));
        rest.extend_from_slice(&raw::tpm2b(&[]));
        rest.extend_from_slice(&raw::tpm2b(&public));
        c.execute(&raw::command(0x8002, 0x12A, &rest))?.success()?;
        c.execute(&increment())?.success()?;
        let mut acked = read(&mut c)?;

        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64
            | 1;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut done = 0u32;
        let mut crashes = 0u32;
        while done < 1000 {
            // Kill at a random moment within the next few commands.
            let pid = server.pid().context("server not running")?;
            // Up to 100 ms: a few durable increments per crash, killed at any point of one
            // (before, during or after its commit).
            let delay = Duration::from_micros(next() % 100_000);
            let killer = std::thread::spawn(move || {
                std::thread::sleep(delay);
                // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our child,
                // reaped only by `Server::kill` below after this thread is joined.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            });
            let mut in_flight;
            loop {
                in_flight = true;
                match c.execute(&increment()) {
                    Ok(r) if r.rc == 0 => {
                        acked += 1;
                        done += 1;
                        in_flight = false;
                    }
                    Ok(r) => anyhow::bail!("NV_Increment rc {:#x}", r.rc),
                    Err(_) => break,
                }
                if done >= 1000 {
                    break;
                }
            }
            killer
                .join()
                .map_err(|_| anyhow::anyhow!("killer panicked"))?;
            server.kill()?;
            server.start_again()?;
            crashes += 1;
            c = connect(&server)?;
            let now = read(&mut c)?;
            ensure!(
                now == acked || (in_flight && now == acked + 1),
                "after crash {crashes}: counter {now}, last acknowledged {acked}"
            );
            acked = now;
        }
        ensure!(crashes > 5, "only {crashes} crashes");
        Ok(())
    })
}

/// A trial-session PolicyCommandCode(code) written to `out`.
fn command_code_policy(tpm: &Tpm2, code: &str, out: &str) -> Result<()> {
    tpm.run("startauthsession", &["-S", "trial.ctx"])?;
    tpm.run("policycommandcode", &["-S", "trial.ctx", "-L", out, code])?;
    tpm.run("flushcontext", &["trial.ctx"])?;
    Ok(())
}

fn nv_undefine_space_special(target: Target) -> Result<()> {
    let (_server, tpm) = start(target)?;
    command_code_policy(&tpm, "TPM2_CC_NV_UndefineSpaceSpecial", "del.policy")?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500700",
            "-C",
            "p",
            "-s",
            "8",
            "-a",
            // ppwrite | policy_delete | ppread | platformcreate
            "0x40010401",
            "-L",
            "del.policy",
        ],
    )?;
    // An index with POLICY_DELETE cannot be removed the ordinary way.
    tpm.fails("nvundefine", &["0x1500700", "-C", "p"])?;
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    tpm.run(
        "policycommandcode",
        &["-S", "s.ctx", "TPM2_CC_NV_UndefineSpaceSpecial"],
    )?;
    tpm.run(
        "nvundefine",
        &["0x1500700", "-C", "p", "-S", "s.ctx", "--with-policydelete"],
    )?;
    tpm.fails("nvreadpublic", &["0x1500700"])?;
    Ok(())
}

fn nv_change_auth_with_policy(target: Target) -> Result<()> {
    let (server, tpm) = start(target)?;
    command_code_policy(&tpm, "TPM2_CC_NV_ChangeAuth", "ca.policy")?;
    tpm.run(
        "nvdefine",
        &[
            "0x1500701",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "authread|authwrite",
            "-p",
            "old",
            "-L",
            "ca.policy",
        ],
    )?;
    tpm.run("startauthsession", &["--policy-session", "-S", "s.ctx"])?;
    tpm.run(
        "policycommandcode",
        &["-S", "s.ctx", "TPM2_CC_NV_ChangeAuth"],
    )?;
    tpm.run(
        "changeauth",
        &["-c", "0x1500701", "-p", "session:s.ctx", "new"],
    )?;
    tpm.run("flushcontext", &["s.ctx"])?;
    let data = server.write_file("data", b"new auth")?;
    tpm.fails("nvwrite", &["0x1500701", "-P", "old", "-i", &data])?;
    tpm.run("nvwrite", &["0x1500701", "-P", "new", "-i", &data])?;
    Ok(())
}
