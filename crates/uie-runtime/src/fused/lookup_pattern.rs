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
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::logic::Iff;

use super::lookup::{EmbeddingTable, UieHashedLookup};

/// The name of a binary op node (`Rem`, `Add`, `And`, `Or`, `CompGT`, `CompLT`, …).
fn bin_name(node: &TypedNode) -> Option<&'static str> {
    node.op_as::<TypedBinOp>().map(|b| b.0.name())
}

/// A constant outlet's values as i64 (any integer or bool type), if it is constant.
fn konst_i64(model: &TypedModel, outlet: OutletId) -> Option<Vec<i64>> {
    let t = model.outlet_fact(outlet).ok()?.konst.clone()?;
    let t = t.cast_to::<i64>().ok()?;
    let v = t.to_plain_array_view::<i64>().ok()?;
    Some(v.iter().copied().collect())
}

/// The single value of a one-element integer constant.
fn scalar_i64(model: &TypedModel, outlet: OutletId) -> Option<i64> {
    match konst_i64(model, outlet)?.as_slice() {
        [v] => Some(*v),
        _ => None,
    }
}

/// A constant boolean outlet that is `value` everywhere.
fn all_bool(model: &TypedModel, outlet: OutletId, value: bool) -> bool {
    let Some(t) = model.outlet_fact(outlet).ok().and_then(|f| f.konst.clone()) else {
        return false;
    };
    if t.datum_type() != bool::datum_type() {
        return false;
    }
    t.to_plain_array_view::<bool>()
        .is_ok_and(|v| !v.is_empty() && v.iter().all(|&b| b == value))
}

/// The outlet behind any i64 → i64 `Cast`s.
fn through_casts(model: &TypedModel, mut outlet: OutletId) -> OutletId {
    loop {
        let node = model.node(outlet.node);
        let same = node
            .op_as::<Cast>()
            .is_some_and(|c| c.to == i64::datum_type())
            && node.inputs.len() == 1
            && model
                .outlet_fact(node.inputs[0])
                .is_ok_and(|f| f.datum_type == i64::datum_type());
        if !same {
            return outlet;
        }
        outlet = node.inputs[0];
    }
}

/// Whether `outlet` is `r < 0`: `GT(0, r)` or `LT(r, 0)`.
fn is_negative_test(model: &TypedModel, outlet: OutletId, r: OutletId) -> bool {
    let node = model.node(outlet.node);
    let is_zero = |o: OutletId| {
        konst_i64(model, o).is_some_and(|v| !v.is_empty() && v.iter().all(|&x| x == 0))
    };
    match (bin_name(node), node.inputs.as_slice()) {
        (Some("GT" | "CompGT"), [z, x]) => through_casts(model, *x) == r && is_zero(*z),
        (Some("LT" | "CompLT"), [x, z]) => through_casts(model, *x) == r && is_zero(*z),
        _ => false,
    }
}

/// Whether `outlet` is exactly `r < 0` given the constants: `Or` of a constant-false `And` and
/// `And(true, r < 0)`, in any order.
fn is_sign_fix_condition(model: &TypedModel, outlet: OutletId, r: OutletId) -> bool {
    let or = model.node(outlet.node);
    if bin_name(or) != Some("Or") || or.inputs.len() != 2 {
        return false;
    }
    let dead = |o: OutletId| {
        let n = model.node(o.node);
        bin_name(n) == Some("And") && n.inputs.iter().any(|&i| all_bool(model, i, false))
    };
    let live = |o: OutletId| {
        let n = model.node(o.node);
        match (bin_name(n), n.inputs.as_slice()) {
            (Some("And"), [a, b]) => {
                (all_bool(model, *a, true) && is_negative_test(model, *b, r))
                    || (all_bool(model, *b, true) && is_negative_test(model, *a, r))
            }
            _ => false,
        }
    };
    let (a, b) = (or.inputs[0], or.inputs[1]);
    (dead(a) && live(b)) || (live(a) && dead(b))
}

/// Steps 1–3: the ids and `H` of a Python-style `Mod` ending in `iff`.
fn match_mod(model: &TypedModel, iff: &TypedNode) -> Option<(OutletId, i64)> {
    if !iff.op_is::<Iff>() || iff.outputs.len() != 1 {
        return None;
    }
    let out = model.outlet_fact(OutletId::new(iff.id, 0)).ok()?;
    if out.datum_type != i64::datum_type() || out.rank() != 1 {
        return None;
    }
    let [cond, then, other] = iff.inputs.as_slice() else {
        return None;
    };
    let r = through_casts(model, *other);
    let rem = model.node(r.node);
    let [ids, h_in] = rem.inputs.as_slice() else {
        return None;
    };
    if bin_name(rem) != Some("Rem") {
        return None;
    }
    let h = scalar_i64(model, *h_in)?;
    if h <= 0 || model.outlet_fact(*ids).ok()?.datum_type != i64::datum_type() {
        return None;
    }
    let add = model.node(then.node);
    let add_ok = bin_name(add) == Some("Add")
        && match add.inputs.as_slice() {
            [a, b] => {
                (through_casts(model, *a) == r && scalar_i64(model, *b) == Some(h))
                    || (through_casts(model, *b) == r && scalar_i64(model, *a) == Some(h))
            }
            _ => false,
        };
    if !add_ok || !is_sign_fix_condition(model, *cond, r) {
        return None;
    }
    Some((*ids, h))
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
        if n.op_as::<Cast>().is_some_and(|c| c.to == i64::datum_type()) {
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

/// Rewrites one matched lookup in a copy of `model`; `None` when tract refuses it.
fn apply(
    model: &TypedModel,
    name: &str,
    ids: OutletId,
    h: i64,
    gathers: &[(OutletId, Arc<EmbeddingTable>)],
) -> Option<TypedModel> {
    let op = UieHashedLookup::new(h, gathers.iter().map(|(_, t)| Arc::clone(t)).collect()).ok()?;
    let mut patch = TypedModelPatch::new(format!("fuse lookup {name}"));
    let tapped = patch.tap_model(model, ids).ok()?;
    let wired = patch.wire_node(name, op, &[tapped]).ok()?;
    for ((outlet, _), by) in gathers.iter().zip(wired) {
        patch.shunt_outside(model, *outlet, by).ok()?;
    }
    let mut out = model.clone();
    patch.apply(&mut out).ok()?;
    out.compact().ok()?;
    Some(out)
}

/// Rewrites every recognised hashed-embedding lookup of `model` into one [`UieHashedLookup`]
/// node per `Mod`; returns how many `Gather`s it replaced. Anything not recognised is unchanged.
pub fn fuse_lookups(model: &mut TypedModel) -> TractResult<usize> {
    let iffs: Vec<String> = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<Iff>())
        .map(|n| n.name.clone())
        .collect();
    let mut fused = 0;
    for name in iffs {
        // Node ids change as the model is compacted: find the Iff again by its name.
        let Some(iff) = model
            .nodes()
            .iter()
            .find(|n| n.name == name && n.op_is::<Iff>())
        else {
            continue;
        };
        let Some((ids, h)) = match_mod(model, iff) else {
            continue;
        };
        let gathers = match_gathers(model, OutletId::new(iff.id, 0), h);
        if gathers.is_empty() {
            continue;
        }
        let fused_name = format!("{name}.lookup");
        if model.nodes().iter().any(|n| n.name == fused_name) {
            continue;
        }
        if let Some(rewritten) = apply(model, &fused_name, ids, h, &gathers) {
            *model = rewritten;
            fused += gathers.len();
        }
    }
    Ok(fused)
}
