//! Guest agent: attests its backend and exposes a swtpm-compatible socket and Linux
//! `vtpm_proxy` to the guest (DESIGN §4).
#![forbid(unsafe_code)]
