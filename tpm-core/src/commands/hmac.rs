//! Part 3, 15.4-15.5 and 17.2: HMAC, HMAC_Start.
//!
//! Not implemented yet: the table is empty, so these commands answer TPM_RC_COMMAND_CODE and
//! GetCapability does not list them.

use crate::commands::CommandDef;

pub const COMMANDS: &[CommandDef] = &[];
