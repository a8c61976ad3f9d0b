//! uie-runtime
