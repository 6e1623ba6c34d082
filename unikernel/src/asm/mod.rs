//! The boot stub (`boot.s`): reset vector, mode switches, .data/.bss set-up. It lives in the
//! binary crate so the linker always keeps it; `rust_start` is bound through `sym`.

core::arch::global_asm!(
    include_str!("boot.s"),
    rust_start = sym crate::rust_start,
    options(att_syntax)
);
