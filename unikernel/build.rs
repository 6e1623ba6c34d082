//! Links the kernel with `layout.ld`, and only when building for the bare-metal target: on the
//! host the crate builds a stub binary with the normal linker defaults.

fn main() {
    println!("cargo:rerun-if-changed=layout.ld");
    println!("cargo:rerun-if-changed=src/asm/boot.s");
    println!("cargo:rerun-if-changed=src/asm/interrupts.s");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-none" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/layout.ld");
        // A firmware image has no loader: no PIE, no build id.
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rustc-link-arg-bins=--build-id=none");
    }
}
