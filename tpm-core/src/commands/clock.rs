//! Placeholder: filled in by the clock command family.

use crate::commands::CommandDef;

pub const COMMANDS: &[CommandDef] = &[];
