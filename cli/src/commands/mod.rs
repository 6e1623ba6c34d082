//! One module per subcommand: its clap `Args` struct and its `run`.

pub mod serve;
