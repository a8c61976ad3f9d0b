//! The runtime's load-time rewrites of tract's typed model: one registry, one driver.
//!
//! The ONNX file `uie-compile` writes stays standard (every runtime runs it). After loading,
//! [`crate::Engine`] hands tract's typed model, before tract's optimiser, to [`apply`], which
//! runs every rewrite of [`registry`] in that order. Each rewrite finds its sub-graphs by
//! structure and constants (never by node names) and replaces each by an op of this crate:
//!
//! | [`RewriteName`] | folder | replaces | by |
//! | --- | --- | --- | --- |
//! | `attention` | [`attention`] | a target attention over gathered table rows (the behaviour-sequence attention with UCSE's history sum, UCSE's attention over the kept centres) | [`attention::UieAttention`] |
//! | `gate` | [`gate`] | a PLE gate mix (softmax, stack, weighted sum) | [`gate::UieGateMix`] |
//! | `retrieval` | [`retrieval`] | a centre retrieval after its MatMul (TopK, keep mask, masked softmax, gather, weighted sum) | [`retrieval::UieRetrieval`] |
//! | `lookup` | [`lookup`] | the hashed-embedding lookups `Gather(E, Mod(ids, H))` of one `Mod` | [`lookup::UieHashedLookup`] |
//! | `merge` | [`merge`] | the linear layers that read the same input | one MatMul plus a column slice per layer |
//!
//! Attention runs before retrieval: it reads the retrieval's keep mask and indices, which the
//! retrieval rewrite then provides from its own op. Merge runs last, on the graph the others left.
//!
//! A [`Rewrite`] says which nodes anchor it and, for one anchor, the patch that replaces the
//! sub-graph found there. [`apply`] is the one loop around them: it collects the anchors' names,
//! finds each again by name (node ids change as the model is compacted), asks for its patch,
//! applies it to a copy of the model and compacts it ([`patched`]), and keeps the copy. An anchor
//! whose sub-graph does not match, a patch tract refuses, or a panic while matching or patching
//! leaves the model as it was and goes on with the next anchor. [`EngineOptions`]'s `disabled`
//! set turns rewrites off by name; [`crate::Engine::rewrite_counts`] reports what each did.
//!
//! [`EngineOptions`]: crate::EngineOptions

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

use tract_onnx::tract_core::internal::{
    Datum, Tensor, TractResult, TypedModel, TypedModelPatch, TypedNode,
};

/// Declares a rewrite `$ty` named `$name`, anchored on every node whose op is `$anchor`, whose
/// patch is the `patch` function of the declaring folder's `pattern` module.
macro_rules! anchored_rewrite {
    ($(#[$doc:meta])* $ty:ident, $name:expr, $anchor:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $ty;

        impl $crate::rewrites::Rewrite for $ty {
            fn name(&self) -> $crate::rewrites::RewriteName {
                $name
            }

            fn is_anchor(&self, node: &tract_onnx::tract_core::internal::TypedNode) -> bool {
                node.op_is::<$anchor>()
            }

            fn patch(
                &self,
                model: &tract_onnx::tract_core::internal::TypedModel,
                anchor: &tract_onnx::tract_core::internal::TypedNode,
            ) -> Option<$crate::rewrites::Patch> {
                pattern::patch(model, anchor)
            }
        }
    };
}

pub mod attention;
pub mod gate;
pub(crate) mod graph;
pub mod lookup;
pub mod merge;
pub mod retrieval;

/// A rewrite of the registry, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RewriteName {
    /// Target attention over gathered table rows ([`attention`]).
    Attention,
    /// PLE gate mix ([`gate`]).
    Gate,
    /// Centre retrieval ([`retrieval`]).
    Retrieval,
    /// Hashed-embedding lookup ([`lookup`]).
    Lookup,
    /// Same-input linear layers merged ([`merge`]).
    Merge,
}

impl RewriteName {
    /// Every rewrite, in the order [`apply`] runs them.
    pub const ALL: [RewriteName; 5] = [
        RewriteName::Attention,
        RewriteName::Gate,
        RewriteName::Retrieval,
        RewriteName::Lookup,
        RewriteName::Merge,
    ];

    /// The name as written in options and reports (`attention`, `gate`, `retrieval`, `lookup`,
    /// `merge`).
    pub fn as_str(self) -> &'static str {
        match self {
            RewriteName::Attention => "attention",
            RewriteName::Gate => "gate",
            RewriteName::Retrieval => "retrieval",
            RewriteName::Lookup => "lookup",
            RewriteName::Merge => "merge",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for RewriteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a rewrite's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rewrite {0:?} (known: attention, gate, retrieval, lookup, merge)")]
pub struct UnknownRewrite(pub String);

impl FromStr for RewriteName {
    type Err = UnknownRewrite;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RewriteName::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRewrite(s.to_string()))
    }
}

/// A set of rewrites (small and `Copy`, so [`crate::EngineOptions`] stays `Copy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RewriteSet(u8);

impl RewriteSet {
    /// No rewrite.
    pub const NONE: RewriteSet = RewriteSet(0);
    /// Every rewrite.
    pub const ALL: RewriteSet = RewriteSet((1 << RewriteName::ALL.len()) - 1);

    /// Whether `name` is in the set.
    pub fn contains(self, name: RewriteName) -> bool {
        self.0 & name.bit() != 0
    }

    /// The set with `name` added.
    pub fn with(self, name: RewriteName) -> RewriteSet {
        RewriteSet(self.0 | name.bit())
    }

    /// The set with `name` removed.
    pub fn without(self, name: RewriteName) -> RewriteSet {
        RewriteSet(self.0 & !name.bit())
    }

    /// The members, in [`RewriteName::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = RewriteName> {
        RewriteName::ALL
            .into_iter()
            .filter(move |&r| self.contains(r))
    }
}

impl FromIterator<RewriteName> for RewriteSet {
    fn from_iter<I: IntoIterator<Item = RewriteName>>(iter: I) -> Self {
        iter.into_iter().fold(RewriteSet::NONE, RewriteSet::with)
    }
}

/// How many sub-graphs each rewrite replaced, by name (every rewrite of the registry has an
/// entry; a disabled one counts 0). What a count counts is the rewrite's own unit, documented on
/// [`Rewrite::patch`]'s implementations: one per fused op, except `lookup` (one per replaced
/// `Gather`) and `merge` (the MatMuls merged away).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewriteCounts(BTreeMap<RewriteName, usize>);

impl RewriteCounts {
    /// The count of one rewrite (0 when it did not run).
    pub fn get(&self, name: RewriteName) -> usize {
        self.0.get(&name).copied().unwrap_or(0)
    }

    /// Every count, in [`RewriteName::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (RewriteName, usize)> + '_ {
        self.0.iter().map(|(&name, &n)| (name, n))
    }
}

impl fmt::Display for RewriteCounts {
    /// `attention 2, gate 3, …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name} {n}")?;
        }
        Ok(())
    }
}

/// The patch one rewrite makes at one anchor, and how much it counts.
pub struct Patch {
    /// The patch (applied by [`patched`]).
    pub patch: TypedModelPatch,
    /// What it adds to the rewrite's count.
    pub count: usize,
}

/// One load-time rewrite of the typed model.
pub trait Rewrite: Sync {
    /// The rewrite's name (what options and counts are keyed by).
    fn name(&self) -> RewriteName;

    /// Whether `node` is where a match of this rewrite starts.
    fn is_anchor(&self, node: &TypedNode) -> bool;

    /// The patch replacing the sub-graph anchored at `anchor`, or `None` when there is nothing
    /// (left) to replace there.
    fn patch(&self, model: &TypedModel, anchor: &TypedNode) -> Option<Patch>;
}

/// The rewrites, in the order [`apply`] runs them (that of [`RewriteName::ALL`]).
pub fn registry() -> [&'static dyn Rewrite; 5] {
    [
        &attention::AttentionRewrite,
        &gate::GateRewrite,
        &retrieval::RetrievalRewrite,
        &lookup::LookupRewrite,
        &merge::MergeRewrite,
    ]
}

/// Runs every rewrite of the [`registry`] not in `disabled` on `model`, in order; returns the
/// counts (module doc).
pub fn apply(model: &mut TypedModel, disabled: RewriteSet) -> RewriteCounts {
    let mut counts = BTreeMap::new();
    for rewrite in registry() {
        let n = if disabled.contains(rewrite.name()) {
            0
        } else {
            apply_one(model, rewrite)
        };
        counts.insert(rewrite.name(), n);
    }
    RewriteCounts(counts)
}

/// Runs one rewrite at each of its anchors (module doc); returns its count.
pub fn apply_one(model: &mut TypedModel, rewrite: &dyn Rewrite) -> usize {
    let anchors: Vec<String> = model
        .nodes()
        .iter()
        .filter(|n| rewrite.is_anchor(n))
        .map(|n| n.name.clone())
        .collect();
    let mut count = 0;
    for name in anchors {
        let current: &TypedModel = model;
        let Some(anchor) = current
            .nodes()
            .iter()
            .find(|n| n.name == name && rewrite.is_anchor(n))
        else {
            continue;
        };
        let step = catch_unwind(AssertUnwindSafe(|| {
            let p = rewrite.patch(current, anchor)?;
            Some((patched(current, p.patch)?, p.count))
        }));
        if let Ok(Some((rewritten, n))) = step {
            *model = rewritten;
            count += n;
        }
    }
    count
}

/// A copy of `model` with `patch` applied and compacted (nodes left without consumers pruned), or
/// `None` when tract refuses the patch.
pub fn patched(model: &TypedModel, patch: TypedModelPatch) -> Option<TypedModel> {
    let mut out = model.clone();
    patch.apply(&mut out).ok()?;
    out.compact().ok()?;
    Some(out)
}

/// A tensor's values in row-major order: borrowed when the tensor is laid out contiguously (the
/// usual case), copied otherwise. What every fused op reads its inputs through.
pub(crate) fn values<T: Datum + Copy>(t: &Tensor) -> TractResult<Cow<'_, [T]>> {
    let view = t.to_plain_array_view::<T>()?;
    Ok(match view.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(view.iter().copied().collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_registry_follows_all() {
        for name in RewriteName::ALL {
            assert_eq!(name.as_str().parse::<RewriteName>(), Ok(name));
        }
        assert!("fuse".parse::<RewriteName>().is_err());
        let order: Vec<RewriteName> = registry().iter().map(|r| r.name()).collect();
        assert_eq!(order, RewriteName::ALL);
    }

    #[test]
    fn sets_hold_what_was_put_in() {
        let set: RewriteSet = [RewriteName::Gate, RewriteName::Merge]
            .into_iter()
            .collect();
        assert!(set.contains(RewriteName::Gate) && set.contains(RewriteName::Merge));
        assert!(!set.contains(RewriteName::Lookup));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [RewriteName::Gate, RewriteName::Merge]
        );
        assert_eq!(
            set.without(RewriteName::Gate).without(RewriteName::Merge),
            RewriteSet::NONE
        );
        assert_eq!(RewriteSet::ALL.iter().count(), RewriteName::ALL.len());
        assert_eq!(RewriteSet::default(), RewriteSet::NONE);
    }

    #[test]
    fn every_rewrite_has_a_count() {
        let mut model = TypedModel::default();
        let counts = apply(&mut model, RewriteSet::NONE);
        assert_eq!(counts.iter().count(), RewriteName::ALL.len());
        assert!(counts.iter().all(|(_, n)| n == 0));
        assert_eq!(
            counts.to_string(),
            "attention 0, gate 0, retrieval 0, lookup 0, merge 0"
        );
    }
}
