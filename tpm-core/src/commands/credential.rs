//! Part 3, 12.5-12.6: MakeCredential, ActivateCredential.
//!
//! Not implemented yet: the table is empty, so these commands answer TPM_RC_COMMAND_CODE and
//! GetCapability does not list them.

use crate::commands::CommandDef;

pub const COMMANDS: &[CommandDef] = &[];
