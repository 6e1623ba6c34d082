//! One module per subcommand: its clap `Args` struct and its `run`.

pub mod build;
pub mod measure;
pub mod run_backend;
pub mod serve;
pub mod verify;
