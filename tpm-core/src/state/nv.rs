//! NV indices (Part 1, 37 "NV Memory"; Part 2, 13 NV storage structures): filled in by the
//! NV issue.

use serde::{Deserialize, Serialize};

/// All defined NV indices and their data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvStore {}
