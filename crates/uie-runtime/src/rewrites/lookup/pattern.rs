//! Finding the hashed-embedding lookups `Gather(E, Mod(ids, H))` in a typed tract model and
//! replacing each by one [`UieHashedLookup`].
//!
//! tract-onnx expands the ONNX `Mod` (`fmod = 0`) of `ids` by a constant `H` into
//! `Iff(Or(And(r > 0, H < 0), And(r < 0, H > 0)), r + H, r)` with `r = Rem(ids, H)` (the sign fix
//! of ONNX Runtime). The match runs on the typed model before declutter, by structure and
//! constants only, never by names:
//!
//! 1. an `Iff` whose output is i64 of rank 1 (one id per row: the categorical fields; the history
//!    ids `[N, L]` of the sequence attention are left to its own rewrite);
//! 2. its "else" input `r` is `Rem(ids, c)` with `ids` i64 and `c` a one-element constant `H > 0`;
//!    its "then" input is `Add(r, c')` with `c'` a one-element constant equal to `H`;
//! 3. its condition is `Or` of two `And`s: one whose inputs include a constant all-false tensor
//!    (the `H < 0` term), the other made of a constant all-true tensor and `r < 0` (written
//!    `CompGT(0, r)` or `CompLT(r, 0)` with a constant 0) — so the condition is exactly `r < 0` and the
//!    `Iff` is `ids.rem_euclid(H)`;
//! 4. the consumers taken are `Gather(axis 0)` nodes reading the `Iff` as indices (directly or
//!    through an i64 → i64 `Cast`, as tract wires an ONNX `Gather`) from a constant f32 `[R, d]`
//!    table with `R ≥ H` (every bucket in range).
//!
//! All the matched `Gather`s of one `Iff` become one op with one output per table. Other
//! consumers of the `Iff` keep reading it; nodes left without consumers are pruned. A lookup that
//! does not match, or a rewiring tract refuses, leaves the graph unchanged.

use std::sync::Arc;

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::Gather;

use super::op::{EmbeddingTable, UieHashedLookup};
use crate::rewrites::graph::{hashed_mod, is_cast_to};
use crate::rewrites::Patch;

/// Steps 1–3: the ids and `H` of a Python-style `Mod` ending in `iff`, one id per row.
fn match_mod(model: &TypedModel, iff: &TypedNode) -> Option<(OutletId, i64)> {
    let out = model.outlet_fact(OutletId::new(iff.id, 0)).ok()?;
    if out.datum_type != i64::datum_type() || out.rank() != 1 {
        return None;
    }
    hashed_mod(model, iff)
}

/// Step 4: the `Gather`s of the `Iff`'s rows from constant tables holding every bucket.
fn match_gathers(
    model: &TypedModel,
    rows: OutletId,
    h: i64,
) -> Vec<(OutletId, Arc<EmbeddingTable>)> {
    // The rows, and i64 → i64 Casts of them (tract's Gather casts its indices to i64).
    let mut direct = vec![rows];
    for inlet in model.outlet_successors(rows) {
        let n = model.node(inlet.node);
        if is_cast_to(n, i64::datum_type()) {
            direct.push(OutletId::new(n.id, 0));
        }
    }
    let mut found = Vec::new();
    for inlet in direct.iter().flat_map(|&o| model.outlet_successors(o)) {
        let g = model.node(inlet.node);
        let Some(op) = g.op_as::<Gather>() else {
            continue;
        };
        if op.axis != 0 || op.output_type.is_some() || inlet.slot != 1 {
            continue;
        }
        let Some(t) = g
            .inputs
            .first()
            .and_then(|&o| model.outlet_fact(o).ok())
            .and_then(|f| f.konst.clone())
        else {
            continue;
        };
        if t.datum_type() != f32::datum_type() || t.rank() != 2 {
            continue;
        }
        let r = t.shape()[0];
        if (r as u128) < h as u128 {
            continue;
        }
        let Ok(table) = EmbeddingTable::from_tensor(t) else {
            continue;
        };
        found.push((OutletId::new(g.id, 0), Arc::new(table)));
    }
    found
}

/// The patch replacing the `Gather`s of the `Mod` ending in the `Iff` node `iff` by one
/// [`UieHashedLookup`] node, counting the `Gather`s it replaces; `None` when nothing matches or
/// tract refuses the rewiring.
pub(super) fn patch(model: &TypedModel, iff: &TypedNode) -> Option<Patch> {
    let (ids, h) = match_mod(model, iff)?;
    let gathers = match_gathers(model, OutletId::new(iff.id, 0), h);
    if gathers.is_empty() {
        return None;
    }
    let name = format!("{}.lookup", iff.name);
    if model.nodes().iter().any(|n| n.name == name) {
        return None;
    }
    let op = UieHashedLookup::new(h, gathers.iter().map(|(_, t)| Arc::clone(t)).collect()).ok()?;
    let mut patch = TypedModelPatch::new(format!("fuse lookup {name}"));
    let tapped = patch.tap_model(model, ids).ok()?;
    let wired = patch.wire_node(&name, op, &[tapped]).ok()?;
    for ((outlet, _), by) in gathers.iter().zip(wired) {
        patch.shunt_outside(model, *outlet, by).ok()?;
    }
    Some(Patch {
        patch,
        count: gathers.len(),
    })
}
