//! uie-train
