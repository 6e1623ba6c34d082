//! Part 3, 20 "Signing and Signature Verification": Sign, VerifySignature.
//!
//! Not implemented yet: the table is empty, so these commands answer TPM_RC_COMMAND_CODE and
//! GetCapability does not list them.

use crate::commands::CommandDef;

pub const COMMANDS: &[CommandDef] = &[];
