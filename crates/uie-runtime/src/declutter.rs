//! tract's optimiser as [`crate::Engine`] runs it: tract's declutter with some passes left out,
//! then tract's codegen.
//!
//! tract names no pass: `Optimizer::declutter()` is a list of boxed passes whose types are private
//! to tract. [`DeclutterPass`] is this crate's typed copy of that list, in tract's order; passes
//! are left out by position in it, and the list's length is checked against tract's when the
//! optimiser is built (a unit test checks each position against the pass tract puts there).
//!
//! Left out always: `ConcatThenEinsum`. It splits every MatMul that reads a Concat into one MatMul
//! per concatenated part plus a chain of Adds. The backbone input `x` is a Concat of a dozen parts
//! read by every first expert and gate layer, so the split turned ~12 MatMuls into ~120 MatMuls
//! and ~90 Adds (the largest cost in the profile, see `docs/perf-log.md`). The math is the same either
//! way (one MatMul over the concatenated row).
//!
//! Left out when some linear layers were merged ([`crate::rewrites::merge`]): `PushSliceUp`. It
//! would push each member's column slice up into the merged MatMul's weights and so split it back
//! into one MatMul per layer.

use tract_onnx::tract_core::internal::{bail, TractResult, TypedModel};
use tract_onnx::tract_core::optim::Optimizer;

/// One pass of tract's `Optimizer::declutter()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeclutterPass {
    /// Constant propagation.
    PropConst,
    /// Uniform symbolic-dimension propagation.
    PropagateUniformTdim,
    /// Region-of-interest propagation.
    PropagateRoi,
    /// Folding of uniform masks.
    FoldUniformMask,
    /// Every op's own declutter rule.
    OpDeclutter,
    /// Pushing slices up towards the inputs.
    PushSliceUp,
    /// Pushing splits down.
    PushSplitDown,
    /// Splitting a MatMul of a Concat into one MatMul per part.
    ConcatThenEinsum,
    /// Axis-change propagation.
    ChangeAxes,
}

impl DeclutterPass {
    /// tract's declutter passes, in the order `Optimizer::declutter()` lists them.
    pub const ALL: [DeclutterPass; 9] = [
        DeclutterPass::PropConst,
        DeclutterPass::PropagateUniformTdim,
        DeclutterPass::PropagateRoi,
        DeclutterPass::FoldUniformMask,
        DeclutterPass::OpDeclutter,
        DeclutterPass::PushSliceUp,
        DeclutterPass::PushSplitDown,
        DeclutterPass::ConcatThenEinsum,
        DeclutterPass::ChangeAxes,
    ];
}

/// tract's declutter optimiser without the passes in `skip`.
pub fn declutter_without(skip: &[DeclutterPass]) -> TractResult<Optimizer> {
    let mut optimizer = Optimizer::declutter();
    if optimizer.passes.len() != DeclutterPass::ALL.len() {
        bail!(
            "tract's declutter has {} passes, this runtime knows {}",
            optimizer.passes.len(),
            DeclutterPass::ALL.len()
        );
    }
    let mut kinds = DeclutterPass::ALL.iter();
    optimizer
        .passes
        .retain(|_| kinds.next().is_some_and(|k| !skip.contains(k)));
    Ok(optimizer)
}

/// The optimised model (module doc); `keep_slices` when some linear layers were merged.
pub fn optimize(mut typed: TypedModel, keep_slices: bool) -> TractResult<TypedModel> {
    let mut skip = vec![DeclutterPass::ConcatThenEinsum];
    if keep_slices {
        skip.push(DeclutterPass::PushSliceUp);
    }
    declutter_without(&skip)?.optimize(&mut typed)?;
    typed.optimize()?;
    Ok(typed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each position of [`DeclutterPass::ALL`] holds the pass tract puts there (tract's passes
    /// are told apart here by their `Debug` text, the only name they have).
    #[test]
    fn the_typed_list_matches_tracts_declutter() {
        let tract_names = [
            "PropConst",
            "PropagateUniformTdim",
            "PropagateRoi",
            "FoldUniformMask",
            "declutter",
            "PushSliceUp",
            "PushSplitDown",
            "ConcatThenEinsum",
            "ChangeAxes",
        ];
        let passes = Optimizer::declutter().passes;
        assert_eq!(passes.len(), DeclutterPass::ALL.len());
        for (pass, name) in passes.iter().zip(tract_names) {
            assert!(
                format!("{pass:?}").starts_with(name),
                "{pass:?} is not {name}"
            );
        }
        let without =
            declutter_without(&[DeclutterPass::ConcatThenEinsum, DeclutterPass::PushSliceUp])
                .expect("optimizer");
        let left: Vec<String> = without.passes.iter().map(|p| format!("{p:?}")).collect();
        assert_eq!(left.len(), DeclutterPass::ALL.len() - 2);
        assert!(!left
            .iter()
            .any(|p| p.starts_with("ConcatThenEinsum") || p.starts_with("PushSliceUp")));
    }
}
