//! Placeholder: filled in by the capability command family.

use crate::commands::CommandDef;

pub const COMMANDS: &[CommandDef] = &[];
