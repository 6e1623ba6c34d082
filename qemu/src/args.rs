//! A typed QEMU command line for the unikernel backend. Every argument is built from typed
//! fields and passed to `execve` as its own word: nothing is ever parsed by a shell.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

/// The QEMU binary used unless told otherwise.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";

/// Execution engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's software emulator.
    Tcg,
}

impl Accel {
    /// The `-accel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// CPU model for this engine. The kernel needs RDRAND or RDSEED, which QEMU's default
    /// `qemu64` model lacks: TCG emulates them with `-cpu max`; under KVM `-cpu host` passes
    /// the host's through.
    pub fn cpu_model(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Accel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!(
                "unknown accelerator {other:?} (expected kvm or tcg)"
            )),
        }
    }
}

/// One `hostfwd` rule of QEMU user networking: host TCP `addr:host_port` -> guest `guest_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostForward {
    /// Host address to listen on.
    pub addr: Ipv4Addr,
    /// Host port.
    pub host_port: u16,
    /// Guest port.
    pub guest_port: u16,
}

impl HostForward {
    fn render(&self) -> String {
        format!(
            "hostfwd=tcp:{}:{}-:{}",
            self.addr, self.host_port, self.guest_port
        )
    }
}

/// `qemu-system-x86_64 -machine q35 -bios IMAGE -m N -nographic` plus user networking and one
/// virtio-net device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuCommand {
    /// The QEMU binary.
    pub binary: PathBuf,
    /// The firmware image (`-bios`).
    pub bios: PathBuf,
    /// Guest RAM in MiB (`-m`).
    pub memory_mib: u32,
    /// Execution engine (`-accel`, and the matching `-cpu`).
    pub accel: Accel,
    /// Forwarded ports; the network device exists even when this is empty.
    pub forwards: Vec<HostForward>,
    /// `-no-reboot`: a guest triple fault ends QEMU instead of looping through reset.
    pub no_reboot: bool,
}

impl QemuCommand {
    /// A backend command for `bios` with 16 MiB, TCG, no forwards.
    pub fn new(bios: impl Into<PathBuf>) -> QemuCommand {
        QemuCommand {
            binary: PathBuf::from(DEFAULT_QEMU),
            bios: bios.into(),
            memory_mib: 16,
            accel: Accel::Tcg,
            forwards: Vec::new(),
            no_reboot: true,
        }
    }

    /// Sets the accelerator.
    #[must_use]
    pub fn accel(mut self, accel: Accel) -> QemuCommand {
        self.accel = accel;
        self
    }

    /// Sets guest RAM.
    #[must_use]
    pub fn memory_mib(mut self, mib: u32) -> QemuCommand {
        self.memory_mib = mib;
        self
    }

    /// Forwards host `127.0.0.1:host_port` to guest `guest_port`.
    #[must_use]
    pub fn forward(mut self, host_port: u16, guest_port: u16) -> QemuCommand {
        self.forwards.push(HostForward {
            addr: Ipv4Addr::LOCALHOST,
            host_port,
            guest_port,
        });
        self
    }

    /// Sets the QEMU binary.
    #[must_use]
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> QemuCommand {
        self.binary = binary.into();
        self
    }

    /// The argument vector (without the binary).
    pub fn args(&self) -> Vec<OsString> {
        let mut netdev = String::from("user,id=n0");
        for f in &self.forwards {
            netdev.push(',');
            netdev.push_str(&f.render());
        }
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &str| args.push(OsString::from(a));
        push("-machine");
        push("q35");
        push("-accel");
        push(self.accel.as_str());
        push("-cpu");
        push(self.accel.cpu_model());
        push("-m");
        push(&format!("{}M", self.memory_mib));
        push("-nographic");
        push("-netdev");
        push(&netdev);
        push("-device");
        push("virtio-net-pci,netdev=n0");
        if self.no_reboot {
            push("-no-reboot");
        }
        args.push(OsString::from("-bios"));
        args.push(self.bios.clone().into_os_string());
        args
    }

    /// A [`Command`] ready to spawn (stdio not yet configured).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.args());
        cmd
    }

    /// The command line for humans (log lines and error messages only).
    pub fn display(&self) -> String {
        let mut s = self.binary.display().to_string();
        for a in self.args() {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_command_line() {
        let cmd = QemuCommand::new("/img/ukvtpm.img")
            .forward(2400, 2321)
            .memory_mib(12);
        let args: Vec<String> = cmd
            .args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            "-machine q35 -accel tcg -cpu max -m 12M -nographic \
             -netdev user,id=n0,hostfwd=tcp:127.0.0.1:2400-:2321 \
             -device virtio-net-pci,netdev=n0 -no-reboot -bios /img/ukvtpm.img"
        );
    }

    #[test]
    fn kvm_uses_host_cpu_and_paths_stay_one_word() {
        let cmd = QemuCommand::new("/a dir/x;rm -rf.img").accel(Accel::Kvm);
        let args = cmd.args();
        assert!(args.contains(&OsString::from("host")));
        assert_eq!(args.last().unwrap(), "/a dir/x;rm -rf.img");
    }

    #[test]
    fn accel_parses() {
        assert_eq!("kvm".parse::<Accel>(), Ok(Accel::Kvm));
        assert_eq!("tcg".parse::<Accel>(), Ok(Accel::Tcg));
        assert!("hvf".parse::<Accel>().is_err());
    }
}
