//! Acceptance tests of the sequence and UIE forward pass, its stop-gradients and the memory
//! updates: a plain-Rust f64 reference of `docs/model.md` §2–§6, compared with dfdx.

use std::collections::BTreeMap;

use dfdx::tensor::{Cpu, NoneTape};
use rand::RngExt;
use uie_model::schema::{
    Mlp, Plan, Role, MEMORY_PERSONAL, MEMORY_UCSE, MEMORY_UPE, SEQ_QUERY, UCSE_ATTN,
};
use uie_model::{Checkpoint, Config, History, RawBatch, TensorData, TensorMap};

use super::stream::{Collected, UieRun};
use super::tests::reference_probs_from_x;
use super::{
    backbone_input, init_weights, predict, tower_tensors, train_step, trainable, DeviceParams,
    Objective, Sink,
};
use crate::data::Dataset;
use crate::train::Adam;

/// The shared tiny UIE config (`fixtures/configs/tiny-uie.toml`) with two PLE levels, a hidden
/// layer in the `watch` tower and an auxiliary weight other than the default, so the reference
/// covers them too.
fn config() -> Config {
    let mut config = uie_testkit::configs::tiny_uie();
    config.ple.levels = 2;
    config.tasks[0].tower_hidden = vec![3];
    config.uie.aux_weight = 0.7;
    config.validate().expect("tiny uie config");
    config
}

fn set(w: &mut TensorMap, name: &str, f: impl Fn(usize, &mut f32)) {
    if let Some(TensorData::F32(v)) = w.get_mut(name).map(|t| &mut t.data) {
        for (i, x) in v.iter_mut().enumerate() {
            f(i, x);
        }
    }
}

/// Weights where every term matters: random biases and embeddings, random centres (row 1 of
/// `M_upe` duplicated into row 4 for ties), random `P` rows.
fn weights(config: &Config, seed: u64) -> TensorMap {
    let mut w = init_weights(config, &[1.0, 3.0, 2.0], seed);
    let mut rng = crate::rng::seeded(seed + 99);
    let names: Vec<String> = w.keys().cloned().collect();
    for name in names {
        if name.ends_with(".bias") || name.starts_with("embed.") || name.starts_with("memory.") {
            let scale = if name.starts_with("embed.") { 1.0 } else { 0.5 };
            let noise: Vec<f32> = (0..w[&name].shape.iter().product::<usize>())
                .map(|_| rng.random_range(-scale..scale))
                .collect();
            set(&mut w, &name, |i, x| *x += noise[i]);
        }
    }
    let d = config.uie.dim;
    let upe = w[MEMORY_UPE].as_f32().expect("f32")[d..2 * d].to_vec();
    set(&mut w, MEMORY_UPE, |i, x| {
        if (4 * d..5 * d).contains(&i) {
            *x = upe[i - 4 * d];
        }
    });
    w
}

fn batch() -> RawBatch {
    let l = 5;
    let items = vec![
        3,
        7,
        7,
        0,
        0, // len 3
        0,
        0,
        0,
        0,
        0, // len 0
        -4,
        9,
        1,
        2,
        i64::MAX, // full
        i64::MIN,
        0,
        0,
        0,
        0, // len 1, huge negative
        15,
        1 << 40,
        -1,
        0,
        0, // len 2
        11,
        12,
        13,
        14,
        19, // len 4
    ];
    RawBatch {
        n: 6,
        categorical: BTreeMap::from([
            ("user_id".into(), vec![3, -7, i64::MIN, 4, 1 << 40, 3]),
            ("movie_id".into(), vec![0, 19, -1, i64::MAX, 12345, 7]),
            ("genre".into(), vec![1, 2, 3, -9, 8, 0]),
        ]),
        dense: vec![1.0, -2.0, 3.5, 0.0, 2.0, 10.0],
        history: Some(History {
            width: l,
            items,
            len: vec![3, 0, 5, 1, 2, 4],
        }),
    }
}

fn labels() -> Vec<f32> {
    vec![1., 1., 0., 0., 1., 0., 1., 1., 0., 0., 1., 0.]
}

fn checkpoint(config: &Config, weights: TensorMap) -> Checkpoint {
    Checkpoint::new(config.clone(), weights, "test")
}

// ---- the f64 reference ----

fn get<'a>(w: &'a TensorMap, name: &str) -> &'a [f32] {
    w.get(name).and_then(|t| t.as_f32()).expect("tensor")
}

fn row(w: &TensorMap, name: &str, r: usize, width: usize) -> Vec<f64> {
    get(w, name)[r * width..(r + 1) * width]
        .iter()
        .map(|&v| f64::from(v))
        .collect()
}

fn matvec(w: &TensorMap, name: &str, x: &[f64]) -> Vec<f64> {
    let m = get(w, name);
    let out = m.len() / x.len();
    (0..out)
        .map(|o| (0..x.len()).map(|i| x[i] * f64::from(m[i * out + o])).sum())
        .collect()
}

fn linear(w: &TensorMap, x: &[f64], weight: &str, bias: &str) -> Vec<f64> {
    matvec(w, weight, x)
        .into_iter()
        .zip(get(w, bias))
        .map(|(v, &b)| v + f64::from(b))
        .collect()
}

fn relu_mlp(w: &TensorMap, mlp: &Mlp, x: &[f64]) -> Vec<f64> {
    let mut h = x.to_vec();
    for m in 0..mlp.depth() {
        let (wn, bn) = mlp.layer(m);
        h = linear(w, &h, &wn, &bn)
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
    }
    h
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Masked softmax: weights over entries with `mask`, zero elsewhere (all zero when none).
fn masked_softmax(s: &[f64], mask: &[bool]) -> Vec<f64> {
    let max = s
        .iter()
        .zip(mask)
        .filter(|(_, &m)| m)
        .map(|(v, _)| *v)
        .fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s
        .iter()
        .zip(mask)
        .map(|(v, &m)| if m { (v - max).exp() } else { 0.0 })
        .collect();
    let z: f64 = e.iter().sum();
    e.iter()
        .map(|v| if z > 0.0 { v / z } else { 0.0 })
        .collect()
}

/// Top-K indices by descending score, ties toward the lower index; and the kept flags.
fn top_k(s: &[f64], k: usize) -> (Vec<usize>, Vec<bool>) {
    let mut idx: Vec<usize> = (0..s.len()).collect();
    idx.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
    idx.truncate(k);
    let keep = idx.iter().map(|&i| s[i] > 0.0).collect();
    (idx, keep)
}

/// Rows of a `[N, width]` table as f64 vectors.
fn table(w: &TensorMap, name: &str, width: usize) -> Vec<Vec<f64>> {
    let n = get(w, name).len() / width;
    (0..n).map(|r| row(w, name, r, width)).collect()
}

/// `x` per row, by the formulas of `docs/model.md` §2–§6.
fn reference_x(config: &Config, w: &TensorMap, b: &RawBatch) -> Vec<Vec<f64>> {
    let plan = Plan::new(config);
    let e = plan.embed_dim;
    let u = plan.uie.as_ref().expect("uie");
    let d = u.dim;
    let h = b.history.as_ref().expect("history");
    let mut out = Vec::new();
    for r in 0..b.n {
        let mut x = Vec::new();
        let mut emb: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for (field, name, buckets) in &plan.embeddings {
            let id = b.categorical[field][r];
            let v = row(w, name, id.rem_euclid(*buckets as i64) as usize, e);
            x.extend(&v);
            emb.insert(field, v);
        }
        let (mean, std) = (get(w, "dense.mean"), get(w, "dense.std"));
        x.push((f64::from(b.dense[r]) - f64::from(mean[0])) / f64::from(std[0]));
        // §2 sequence
        let len = h.len[r] as usize;
        let hs: Vec<Vec<f64>> = (0..h.width)
            .map(|j| {
                row(
                    w,
                    "embed.movie_id",
                    h.items[r * h.width + j].rem_euclid(20) as usize,
                    e,
                )
            })
            .collect();
        let e_item = &emb["movie_id"];
        let q = matvec(w, SEQ_QUERY, e_item);
        let s: Vec<f64> = hs
            .iter()
            .map(|hj| dot(hj, &q) / (e as f64).sqrt())
            .collect();
        let mask: Vec<bool> = (0..h.width).map(|j| j < len).collect();
        let a = masked_softmax(&s, &mask);
        let mut seq = vec![0.0; e];
        let mut q_u = vec![0.0; e];
        for j in 0..h.width {
            for c in 0..e {
                seq[c] += a[j] * hs[j][c];
                if j < len {
                    q_u[c] += hs[j][c] / len as f64;
                }
            }
        }
        x.extend(&seq);
        // §3 towers
        let tower = |t: &uie_model::schema::AuxTower| {
            let input: Vec<f64> = t
                .fields
                .iter()
                .flat_map(|f| emb[f.as_str()].clone())
                .collect();
            let hdn = relu_mlp(w, &t.hidden, &input);
            linear(w, &hdn, &t.out_weight, &t.out_bias)
        };
        let v_u = tower(&u.user_tower);
        // §5 UPE
        let upe = u.upe.as_ref().expect("upe");
        let m = table(w, MEMORY_UPE, d);
        let s: Vec<f64> = m.iter().map(|c| dot(&v_u, c)).collect();
        let (idx, keep) = top_k(&s, upe.retrieval.k);
        let a = masked_softmax(&idx.iter().map(|&i| s[i]).collect::<Vec<_>>(), &keep);
        let mut ret = vec![0.0; d];
        for (k, &i) in idx.iter().enumerate() {
            for c in 0..d {
                ret[c] += a[k] * m[i][c];
            }
        }
        ret.extend(&v_u);
        x.extend(relu_mlp(w, &upe.gen, &ret));
        // UCBE
        let ucbe = u.ucbe.as_ref().expect("ucbe");
        let user_row = b.categorical["user_id"][r].rem_euclid(10) as usize;
        x.extend(relu_mlp(
            w,
            &ucbe.gen,
            &row(w, MEMORY_PERSONAL, user_row, d),
        ));
        // UCSE
        let ucse = u.ucse.as_ref().expect("ucse");
        let m = table(w, MEMORY_UCSE, e);
        let s: Vec<f64> = m.iter().map(|c| dot(&q_u, c)).collect();
        let (idx, keep) = top_k(&s, ucse.retrieval.k);
        let t = matvec(w, UCSE_ATTN, e_item);
        let score: Vec<f64> = idx
            .iter()
            .map(|&i| dot(&m[i], &t) / (e as f64).sqrt())
            .collect();
        let bw = masked_softmax(&score, &keep);
        let mut pooled = vec![0.0; e];
        for (k, &i) in idx.iter().enumerate() {
            for c in 0..e {
                pooled[c] += bw[k] * m[i][c];
            }
        }
        x.extend(relu_mlp(w, &ucse.gen, &pooled));
        out.push(x);
    }
    out
}

fn dfdx_x(config: &Config, w: &TensorMap, b: &RawBatch) -> Vec<f32> {
    let plan = Plan::new(config);
    let p = DeviceParams::new(&Cpu::default(), &plan, w).expect("params");
    let mut sink = Sink::<NoneTape>::new();
    let (x, _, _) = backbone_input(&mut sink, &p, &plan, b).expect("forward");
    x.as_vec()
}

#[test]
fn sequence_and_uie_forward_match_a_plain_rust_loop() {
    let config = config();
    let plan = Plan::new(&config);
    for seed in [1, 2, 3] {
        let w = weights(&config, seed);
        let b = batch();
        let want = reference_x(&config, &w, &b);
        let got = dfdx_x(&config, &w, &b);
        assert_eq!(got.len(), b.n * plan.input_width);
        for (r, xr) in want.iter().enumerate() {
            assert_eq!(xr.len(), plan.input_width);
            for (c, v) in xr.iter().enumerate() {
                let g = f64::from(got[r * plan.input_width + c]);
                assert!(
                    (g - v).abs() <= 1e-5,
                    "seed {seed} row {r} col {c}: {g} vs {v}"
                );
            }
        }
        // And the probabilities through the PLE backbone.
        let probs = predict(&checkpoint(&config, w.clone()), &b).expect("predict");
        let want_p = reference_probs_from_x(&config, &w, &want);
        for (g, r) in probs.iter().zip(&want_p) {
            assert!((f64::from(*g) - r).abs() <= 1e-5, "{g} vs {r}");
        }
        assert!(probs.iter().any(|p| (p - probs[0]).abs() > 1e-4));
    }
    // L = 1.
    let w = weights(&config, 4);
    let mut b = batch();
    let h = b.history.as_mut().expect("history");
    h.items = h.items.chunks(5).map(|c| c[0]).collect();
    h.width = 1;
    h.len = vec![1, 0, 1, 1, 0, 1];
    let want = reference_x(&config, &w, &b);
    let got = dfdx_x(&config, &w, &b);
    for (r, xr) in want.iter().enumerate() {
        for (c, v) in xr.iter().enumerate() {
            let g = f64::from(got[r * plan.input_width + c]);
            assert!((g - v).abs() <= 1e-5, "L=1 row {r} col {c}: {g} vs {v}");
        }
    }
}

/// Column ranges of x: (seq, e_upe, e_ucbe, e_ucse).
fn parts(config: &Config) -> [std::ops::Range<usize>; 4] {
    let e = config.model.embed_dim;
    let d = config.uie.dim;
    let seq = config.features.categorical.len() * e + config.features.dense.len();
    [
        seq..seq + e,
        seq + e..seq + e + d,
        seq + e + d..seq + e + 2 * d,
        seq + e + 2 * d..seq + e + 3 * d,
    ]
}

#[test]
fn empty_history_and_no_kept_centre_give_exact_zero_and_g_of_zero() {
    let config = config();
    let plan = Plan::new(&config);
    let mut w = weights(&config, 5);
    let b = batch();
    let [seq, upe, _, ucse] = parts(&config);
    let wd = plan.input_width;
    let x = dfdx_x(&config, &w, &b);
    assert!(x.iter().all(|v| v.is_finite()));
    // Row 1 has hist_len = 0: seq is exactly zero and q_u = 0 keeps no centre: e_ucse = G(0).
    assert!(x[wd + seq.start..wd + seq.end].iter().all(|&v| v == 0.0));
    let g0: Vec<f32> = get(&w, "uie.ucse.gen.fc0.bias")
        .iter()
        .map(|b| b.max(0.0))
        .collect();
    assert_eq!(&x[wd + ucse.start..wd + ucse.end], &g0[..]);
    // A centre table whose scores are all ≤ 0 keeps nothing: e_upe = G([0, v_u]), e_ucse = G(0).
    set(&mut w, MEMORY_UPE, |_, x| *x = 0.0);
    set(&mut w, MEMORY_UCSE, |i, x| {
        *x = if i % 2 == 0 { 0.0 } else { -0.0 }
    });
    let x = dfdx_x(&config, &w, &b);
    let want = reference_x(&config, &w, &b);
    for r in 0..b.n {
        assert_eq!(
            &x[r * wd + ucse.start..r * wd + ucse.end],
            &g0[..],
            "row {r}"
        );
        for c in upe.clone() {
            let g = f64::from(x[r * wd + c]);
            assert!(
                (g - want[r][c]).abs() <= 1e-6,
                "row {r}: {g} vs {}",
                want[r][c]
            );
        }
    }
    assert!(x.iter().all(|v| v.is_finite()));
}

fn dataset() -> Dataset {
    Dataset {
        batch: batch(),
        labels: labels(),
        users: vec![3, -7, 1, 4, 2, 3],
        past_counts: vec![2, 0, 50, 1, 7, 2],
    }
}

#[test]
fn stop_gradients_and_frozen_memory() {
    let config = config();
    let plan = Plan::new(&config);
    let w = weights(&config, 6);
    let data = dataset();
    let dev = Cpu::default();
    let towers = tower_tensors(&plan);
    assert!(!towers.is_empty());
    let main = train_step(&dev, &config, &plan, &w, &data, Objective::Main).expect("main");
    for t in &towers {
        assert!(
            main.grads[t].iter().all(|&g| g == 0.0),
            "main loss reaches {t}"
        );
    }
    for name in [
        "embed.movie_id",
        SEQ_QUERY,
        UCSE_ATTN,
        "uie.upe.gen.fc0.weight",
    ] {
        assert!(
            main.grads[name].iter().any(|&g| g != 0.0),
            "{name} is not trained"
        );
    }
    let aux = train_step(&dev, &config, &plan, &w, &data, Objective::Aux).expect("aux");
    for (field, _, _) in &plan.embeddings {
        let name = format!("embed.{field}");
        assert!(
            aux.grads[&name].iter().all(|&g| g == 0.0),
            "L_aux reaches {name}"
        );
    }
    for t in &towers {
        assert!(
            aux.grads[t].iter().any(|&g| g != 0.0),
            "L_aux does not train {t}"
        );
    }
    let total = train_step(&dev, &config, &plan, &w, &data, Objective::Total).expect("total");
    // Total = main + α · aux, tensor by tensor.
    for (name, g) in &total.grads {
        for ((t, m), a) in g.iter().zip(&main.grads[name]).zip(&aux.grads[name]) {
            assert!((t - (m + 0.7 * a)).abs() <= 1e-5, "{name}");
        }
    }
    // Memory tables: never in the gradient set, never trainable, never moved by Adam.
    let memory: Vec<String> = plan
        .tensor_specs()
        .into_iter()
        .filter(|s| s.role == Role::Memory)
        .map(|s| s.name)
        .collect();
    assert_eq!(memory.len(), 4);
    let names = trainable(&plan);
    for m in &memory {
        assert!(!total.grads.contains_key(m), "{m} has a gradient");
        assert!(!names.contains(m), "{m} is trainable");
    }
    let mut moved = w.clone();
    let mut adam = Adam::new(0.05);
    adam.update(&mut moved, &total.grads).expect("adam");
    for m in &memory {
        assert_eq!(moved[m], w[m], "{m} moved");
    }
    assert_ne!(moved["embed.movie_id"], w["embed.movie_id"]);
}

#[test]
fn personal_memory_moves_only_for_users_with_positives() {
    let config = config();
    let plan = Plan::new(&config);
    let mut w = weights(&config, 8);
    set(&mut w, MEMORY_PERSONAL, |_, x| *x = 0.25);
    let data = dataset();
    let dev = Cpu::default();
    let r = train_step(&dev, &config, &plan, &w, &data, Objective::Total).expect("step");
    let mut run = UieRun::new(&config, &plan, &w, None)
        .expect("run")
        .expect("uie");
    // Centres = this batch's vectors, so every positive item keeps a centre (<v, v> > 0).
    let mut collected = Collected::new(config.uie.dim, config.model.embed_dim);
    let positive = run.positives(&data);
    collected.push(&r.side, &positive);
    let mut rng = crate::rng::seeded(1);
    run.init_centres(&collected, &mut rng, &mut w)
        .expect("init");
    let before = w[MEMORY_PERSONAL].as_f32().expect("f32").to_vec();
    run.step(&data, &[1, 1, 1, 1, 1, 1], &r.side, &mut rng, &mut w)
        .expect("step");
    let after = w[MEMORY_PERSONAL].as_f32().expect("f32");
    let d = config.uie.dim;
    // watch labels: rows 0 (user 3), 2 (user i64::MIN), 3 (user 4), 5 (user 3) are positive.
    let ids = &data.batch.categorical["user_id"];
    let positive_rows: Vec<usize> = (0..data.len())
        .filter(|&r| positive[r])
        .map(|r| ids[r].rem_euclid(10) as usize)
        .collect();
    assert_eq!(positive.iter().filter(|&&p| p).count(), 4);
    for u in 0..10 {
        let (b, a) = (&before[u * d..(u + 1) * d], &after[u * d..(u + 1) * d]);
        if positive_rows.contains(&u) {
            assert_ne!(a, b, "user row {u} has a positive sample and moved");
        } else {
            assert_eq!(a, b, "user row {u} has no positive sample");
        }
    }
}
