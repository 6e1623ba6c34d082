//! Placeholder: filled in by the pcr command family.

use crate::commands::CommandDef;

pub const COMMANDS: &[CommandDef] = &[];
