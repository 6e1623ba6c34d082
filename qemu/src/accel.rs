//! KVM or TCG. `/dev/kvm` existing is not enough: on some hosts (PVM, a software-assisted KVM)
//! a `-bios` guest stops at the switch to protected mode or `-cpu host` fails outright, and
//! where it does boot it can be far slower than TCG (measured on the 2-core PVM test machines:
//! reset -> ready about 0.6-0.8 s of guest time and ~60 ms per TPM command under KVM, versus
//! 20-100 ms and ~0.15 ms under TCG). So KVM is chosen only when a probe boot under KVM prints
//! the kernel's ready line within a short timeout *and* reports a reset -> ready time of at
//! most [`KVM_MAX_RESET_TO_READY`]; otherwise TCG, with a warning that says why.

use std::fs::OpenOptions;
use std::path::Path;
use std::time::Duration;

use crate::args::{Accel, QemuCommand};
use crate::backend;

/// Default time a KVM probe boot gets to reach the ready line (a real host needs well under
/// 100 ms of guest time; QEMU start-up dominates).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The slowest guest boot (reset vector -> ready line, TSC-measured) accepted from KVM. Real
/// hardware virtualization takes a few milliseconds; 100 ms is slower than TCG here.
pub const KVM_MAX_RESET_TO_READY: Duration = Duration::from_millis(100);

/// The outcome of choosing an accelerator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The engine to use.
    pub accel: Accel,
    /// Why KVM was not used, when it was not and nobody forced TCG: print it as a warning.
    pub warning: Option<String>,
}

/// Whether `/dev/kvm` can be opened read-write.
pub fn kvm_device_usable() -> bool {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Boots `image` under KVM with no port forwards and reports whether the ready line came
/// within `timeout`. The probe VM is stopped either way.
///
/// # Errors
/// A human-readable reason when KVM does not work for this image.
pub fn probe_kvm(qemu: &Path, image: &Path, timeout: Duration) -> Result<(), String> {
    if !kvm_device_usable() {
        return Err("/dev/kvm is missing or not accessible".to_owned());
    }
    let cmd = QemuCommand::new(image).binary(qemu).accel(Accel::Kvm);
    match backend::spawn(&cmd, timeout) {
        Ok(probe) => {
            let boot = Duration::from_micros(probe.ready.reset_to_ready_us);
            let _ = probe.stop(Duration::from_secs(2));
            if boot > KVM_MAX_RESET_TO_READY {
                Err(format!(
                    "KVM boots but slowly: reset -> ready took {} ms of guest time (limit {} ms), \
                     as on emulated/PVM KVM",
                    boot.as_millis(),
                    KVM_MAX_RESET_TO_READY.as_millis()
                ))
            } else {
                Ok(())
            }
        }
        Err(e) => Err(format!("KVM probe boot failed: {e}")),
    }
}

/// `forced` if given; else KVM when [`probe_kvm`] succeeds, else TCG with a warning.
pub fn choose(forced: Option<Accel>, qemu: &Path, image: &Path, timeout: Duration) -> Choice {
    if let Some(accel) = forced {
        return Choice {
            accel,
            warning: None,
        };
    }
    match probe_kvm(qemu, image, timeout) {
        Ok(()) => Choice {
            accel: Accel::Kvm,
            warning: None,
        },
        Err(why) => Choice {
            accel: Accel::Tcg,
            warning: Some(format!(
                "not using KVM ({why}); falling back to TCG software emulation, which is slower"
            )),
        },
    }
}
