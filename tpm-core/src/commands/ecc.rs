//! Part 3, 19 "Ephemeral EC Keys" (Commit, EC_Ephemeral) if implemented.
//!
//! Not implemented yet: the table is empty, so these commands answer TPM_RC_COMMAND_CODE and
//! GetCapability does not list them.

use crate::commands::CommandDef;

pub const COMMANDS: &[CommandDef] = &[];
