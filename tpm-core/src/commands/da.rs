//! Placeholder: filled in by the da command family.

use crate::commands::CommandDef;

pub const COMMANDS: &[CommandDef] = &[];
