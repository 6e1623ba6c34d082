//! The ukvtpm backend unikernel (DESIGN §6). Built for `x86_64-unknown-none`; on the host this
//! binary only says how to build it.

fn main() {
    eprintln!("the unikernel runs under QEMU: build it with `cargo xtask image`");
}
