//! End-to-end test harness: real tpm2-tools against `ukvtpm serve`, swtpm and the unikernel.
//!
//! The same test body runs against every [`Target`]: swtpm is the reference (a test that fails
//! against swtpm is a wrong test), `ukvtpm serve` is the system under test, reached through both
//! the `swtpm:` and the `mssim:` TCTI of tpm2-tss.
//!
//! * [`server`]: spawn swtpm or `ukvtpm serve` on a free port pair with a fresh state directory,
//!   or boot the unikernel in QEMU with both ports forwarded, wait until it accepts, kill it on
//!   drop (its log is printed when the test failed).
//! * [`unikernel`]: the release image (built once per process), the accelerator choice and the
//!   boot of one fresh guest.
//! * [`tpm2`]: run one tpm2-tools binary with the right `TPM2TOOLS_TCTI`; failures quote the
//!   command line, its output and the tail of the server log.
//! * [`raw`]: a client that sends TPM command bytes in the swtpm plain framing or the TCG
//!   simulator ("mssim") framing and reads the response, plus builders for a few commands.
//! * [`require`]: a missing system tool is an error that names the `apt-get install` command.
//! * [`venv`]: the local Python venv with `sev-snp-measure`, installed once under a lock.

pub mod raw;
pub mod require;
pub mod server;
pub mod tpm2;
pub mod unikernel;
pub mod util;
pub mod venv;

pub use server::{Kind, Protocol, Server, Target};
pub use tpm2::{Output, Tpm2};
