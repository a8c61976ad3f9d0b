//! The hashed-embedding lookup rewrite: the `Gather(E, Mod(ids, H))` of the categorical fields
//! (eight element-wise nodes plus the `Gather` once tract has expanded the `Mod`) become one
//! [`UieHashedLookup`] per `Mod`, doing the modulo and the row copy in one pass. Kernel and op in
//! [`op`], match rules in [`pattern`]; anchored on every `Iff` node, one count per replaced
//! `Gather`.

use tract_onnx::tract_core::ops::logic::Iff;

use super::RewriteName;

pub mod op;
pub mod pattern;

pub use op::{EmbeddingTable, LookupError, UieHashedLookup};

anchored_rewrite!(
    /// The hashed-embedding lookup rewrite ([`RewriteName::Lookup`]).
    LookupRewrite,
    RewriteName::Lookup,
    Iff
);
