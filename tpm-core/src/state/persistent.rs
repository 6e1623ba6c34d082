//! Persistent objects made by EvictControl (Part 3, 28.5): filled in by the keys issue.

use serde::{Deserialize, Serialize};

/// Objects stored in NV under persistent handles (0x81xxxxxx).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistentObjects {}
