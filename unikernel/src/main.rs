//! The ukvtpm backend unikernel (DESIGN §6). Built for `x86_64-unknown-none` as a firmware image
//! (`cargo xtask image`); on the host this binary only says how to build it. Everything but the
//! boot stub and the panic handler lives in the library (`src/lib.rs`).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod asm;

/// First Rust code: called by `boot.s` in long mode with a stack, `.data` and `.bss` ready.
#[cfg(target_os = "none")]
extern "C" fn rust_start(tsc_at_reset: u64) -> ! {
    ukvtpm_unikernel::kernel::main(tsc_at_reset)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    ukvtpm_unikernel::arch::panic(info)
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the unikernel runs under QEMU: build it with `cargo xtask image`");
}
