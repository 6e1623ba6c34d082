//! Part 3, 11 "Session Commands": StartAuthSession, PolicyRestart.
//!
//! Not implemented yet: the table is empty, so these commands answer TPM_RC_COMMAND_CODE and
//! GetCapability does not list them.

use crate::commands::CommandDef;

pub const COMMANDS: &[CommandDef] = &[];
