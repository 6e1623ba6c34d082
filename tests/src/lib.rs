//! End-to-end test harness: real tpm2-tools against `ukvtpm serve`, swtpm and the unikernel.
