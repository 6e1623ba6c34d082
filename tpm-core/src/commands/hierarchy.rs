//! Placeholder: filled in by the hierarchy command family.

use crate::commands::CommandDef;

pub const COMMANDS: &[CommandDef] = &[];
