//! uie-compile
