//! Placeholder: filled in by the hash command family.

use crate::commands::CommandDef;

pub const COMMANDS: &[CommandDef] = &[];
