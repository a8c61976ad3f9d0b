//! Scaling benchmark (`scripts/bench-scaling.sh`): p50 latency of a compiled model in
//! `uie-runtime` (tract, the runtime's default options, one thread) and in ONNX Runtime (one
//! intra-op thread, same file and inputs) as one size varies at a time, from the MovieLens
//! full-UIE config (`models/movielens-uie.toml`) with `features.sequence.max_len` raised to 500:
//!
//! - `centres`: UPE and UCSE centres N ∈ {256, 1024, 4096, 16384, 65536};
//! - `history`: history length L ∈ {0, 1, 10, 50, 100, 200, 500} (every row's history is full, L
//!   real items; L = 0 is an empty history, one padding column);
//! - `users`: rows of the personalised memory `P` (the `user_id` buckets) ∈ {1e3, …, 1e7}, compiled
//!   with external data (1e7 × 32 f32 = 1.28 GB of `P` plus 0.32 GB of the `user_id` embedding);
//!   the model load time of both engines is recorded too;
//! - `batch`: batch size 1, 2, 4, …, 1024.
//!
//! The other sizes stay at the base: N = 256, L = 50, 1024 users; `centres`, `history` and `users`
//! are timed at batch 1 and 256. The weights are seeded random values (`random_checkpoint`) and
//! the rows seeded random ids and values: latency does not depend on the values, only on the
//! shapes, so no trained model is needed (the numbers say nothing about accuracy).
//!
//! `run --sweep NAME` builds, compiles (into `--work`, files deleted after each point), times and
//! writes `<figures>/bench-scaling-<NAME>.csv` (after every point) and `.png`; `plot` redraws
//! every PNG from the CSVs. `run --no-fuse` times tract with the fused retrieval off (engine
//! `tract-nofuse`; give it its own `--figures` directory), `--no-ort` skips ONNX Runtime. A timed
//! tract call is `Model::predict` on a prepared batch (see
//! `bench_inference.rs`); the ONNX Runtime side is `tests/python/bench_ort.py cases`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use uie_compile::onnx::{is_data_file_of, write_model, ExternalDataOptions, WriteOptions};
use uie_compile::pipeline::build_graph;
use uie_compile::verify::batch_inputs;
use uie_e2e::latency::{summarise, time_calls, write_inputs_json, Budget};
use uie_e2e::{python, random_checkpoint, repo_root, Rng};
use uie_model::batch::History;
use uie_model::{Config, RawBatch};
use uie_runtime::{EngineOptions, Model, Tensor};

/// The sizes a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sweep {
    Centres,
    History,
    Users,
    Batch,
}

impl Sweep {
    fn name(self) -> &'static str {
        match self {
            Sweep::Centres => "centres",
            Sweep::History => "history",
            Sweep::Users => "users",
            Sweep::Batch => "batch",
        }
    }
    fn all() -> [Sweep; 4] {
        [Sweep::Centres, Sweep::History, Sweep::Users, Sweep::Batch]
    }
    fn default_points(self) -> Vec<usize> {
        match self {
            Sweep::Centres => vec![256, 1024, 4096, 16384, 65536],
            Sweep::History => vec![0, 1, 10, 50, 100, 200, 500],
            Sweep::Users => vec![1_000, 10_000, 100_000, 1_000_000, 10_000_000],
            Sweep::Batch => (0..=10).map(|i| 1usize << i).collect(),
        }
    }
    /// (axis title, log-scale x axis).
    fn axis(self) -> (&'static str, bool) {
        match self {
            Sweep::Centres => ("centres N (UPE and UCSE)", true),
            Sweep::History => ("history length L (real items per row)", false),
            Sweep::Users => ("users: rows of the personalised memory P", true),
            Sweep::Batch => ("batch size (rows per call)", true),
        }
    }
}

#[derive(Parser)]
#[command(about = "latency scaling of the compiled model in tract and ONNX Runtime")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure one sweep, write its CSV and PNG.
    Run {
        #[arg(long, value_enum)]
        sweep: Sweep,
        /// Override the sweep's points (comma-separated).
        #[arg(long, value_delimiter = ',')]
        points: Vec<usize>,
        /// Where models are compiled (deleted after each point).
        #[arg(long, default_value = "target/bench-scaling")]
        work: PathBuf,
        /// Where the CSV and PNG go.
        #[arg(long, default_value = "docs/figures")]
        figures: PathBuf,
        /// Minimum timed seconds per case (and --min-calls calls) after 3 warm-up calls.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        #[arg(long, default_value_t = 10)]
        min_calls: usize,
        /// Skip the ONNX Runtime side.
        #[arg(long)]
        no_ort: bool,
        /// Time tract with the fused retrieval off (engine `tract-nofuse` in the CSV).
        #[arg(long)]
        no_fuse: bool,
        /// Keep the last point's model (`<work>/<sweep>.onnx`) and inputs
        /// (`<work>/inputs_<n>.json`), for `cargo run --release -p uie-e2e --example profile --
        /// <work>/<sweep>.onnx <work>`.
        #[arg(long)]
        keep: bool,
    },
    /// Redraw every PNG from the CSVs in --figures.
    Plot {
        #[arg(long, default_value = "docs/figures")]
        figures: PathBuf,
    },
}

/// Base sizes (the MovieLens config's own N and users, L = its max_len 50).
const BASE_CENTRES: usize = 256;
const BASE_L: usize = 50;
const BASE_USERS: usize = 1024;
/// Batch sizes of the non-batch sweeps.
const SWEEP_BATCHES: [usize; 2] = [1, 256];
const MAX_L: usize = 500;

fn config(sweep: Sweep, point: usize) -> Result<Config> {
    let mut c = Config::load(&repo_root().join("models/movielens-uie.toml"))?;
    let seq = c
        .features
        .sequence
        .as_mut()
        .context("the config has no sequence")?;
    seq.max_len = MAX_L;
    let (centres, users) = match sweep {
        Sweep::Centres => (point, BASE_USERS),
        Sweep::Users => (BASE_CENTRES, point),
        _ => (BASE_CENTRES, BASE_USERS),
    };
    c.uie.upe.centres = centres;
    c.uie.ucse.centres = centres;
    let user_field = c.uie.user_field.clone().context("no uie.user_field")?;
    c.features
        .categorical
        .iter_mut()
        .find(|f| f.name == user_field)
        .context("no user field")?
        .buckets = users;
    c.validate()?;
    Ok(c)
}

/// `n` seeded random rows: ids uniform over each field's buckets, dense values in [-1, 1), full
/// histories of `l` items (`l = 0`: one padding column, length 0).
fn rows(config: &Config, n: usize, l: usize, seed: u64) -> RawBatch {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let categorical: BTreeMap<String, Vec<i64>> = config
        .features
        .categorical
        .iter()
        .map(|f| {
            let ids = (0..n)
                .map(|_| (rng.next_u64() % f.buckets as u64) as i64)
                .collect();
            (f.name.clone(), ids)
        })
        .collect();
    let dense = (0..n * config.features.dense.len())
        .map(|_| rng.uniform(-1.0, 1.0))
        .collect();
    let history = config.features.sequence.as_ref().map(|s| {
        let buckets = config
            .features
            .categorical
            .iter()
            .find(|f| f.name == s.item_field)
            .map_or(1, |f| f.buckets as u64);
        let width = l.max(1);
        History {
            width,
            items: (0..n * width)
                .map(|_| (rng.next_u64() % buckets) as i64)
                .collect(),
            len: vec![l as i64; n],
        }
    });
    RawBatch {
        n,
        categorical,
        dense,
        history,
    }
}

/// One CSV row.
#[derive(Debug, Clone)]
struct Row {
    point: usize,
    batch: usize,
    engine: String,
    p50_us: f64,
    p99_us: f64,
    rows_per_s: f64,
    calls: usize,
    load_s: f64,
}

const CSV_HEADER: &str = "point,batch,engine,p50_us,p99_us,rows_per_s,calls,load_s";

fn write_csv(path: &Path, rows: &[Row]) -> Result<()> {
    let mut text = format!("{CSV_HEADER}\n");
    for r in rows {
        text += &format!(
            "{},{},{},{:.2},{:.2},{:.1},{},{:.4}\n",
            r.point, r.batch, r.engine, r.p50_us, r.p99_us, r.rows_per_s, r.calls, r.load_s
        );
    }
    let tmp = path.with_extension(format!("csv.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn read_csv(path: &Path) -> Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let [point, batch, engine, p50, p99, rps, calls, load] = f[..] else {
            bail!("{}:{}: expected 8 fields", path.display(), i + 1);
        };
        let ctx = || format!("{}:{}", path.display(), i + 1);
        out.push(Row {
            point: point.parse().with_context(ctx)?,
            batch: batch.parse().with_context(ctx)?,
            engine: engine.to_string(),
            p50_us: p50.parse().with_context(ctx)?,
            p99_us: p99.parse().with_context(ctx)?,
            rows_per_s: rps.parse().with_context(ctx)?,
            calls: calls.parse().with_context(ctx)?,
            load_s: load.parse().with_context(ctx)?,
        });
    }
    Ok(out)
}

/// Compiles a seeded random checkpoint of `config` to `model` (external data when asked).
fn compile(config: &Config, model: &Path, external: bool, seed: u64) -> Result<()> {
    let t = Instant::now();
    let ck = random_checkpoint(config.clone(), seed, 0.1, "uie-e2e bench_scaling");
    let graph = build_graph(&ck)?;
    drop(ck);
    let write = WriteOptions {
        external_data: external.then(ExternalDataOptions::default),
        ..WriteOptions::default()
    };
    write_model(&graph, model, &write)?;
    eprintln!("  compiled in {:.1?}", t.elapsed());
    Ok(())
}

/// Removes a compiled model and its external data file (named by its content hash, so found by
/// the compiler's own naming rule rather than guessed).
fn remove_model(model: &Path) {
    let _ = std::fs::remove_file(model);
    let (Some(dir), Some(name)) = (model.parent(), model.file_name().and_then(|n| n.to_str()))
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        if file.to_str().is_some_and(|f| is_data_file_of(name, f)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The inputs of one batch size: in a file (for ONNX Runtime) and in memory (for tract).
struct Feed {
    batch: usize,
    path: PathBuf,
    tensors: Vec<(String, Tensor)>,
}

/// Times tract and (unless `no_ort`) ONNX Runtime on one compiled model, one case per batch.
fn measure(
    point: usize,
    model: &Path,
    feeds: &[Feed],
    budget: Budget,
    no_ort: bool,
    no_fuse: bool,
) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    let t = Instant::now();
    let options = EngineOptions {
        fuse_retrieval: !no_fuse,
        ..EngineOptions::default()
    };
    let m = Model::load_with(model, options)?;
    let engine = if no_fuse { "tract-nofuse" } else { "tract" };
    let load_s = t.elapsed().as_secs_f64();
    for Feed {
        batch: n, tensors, ..
    } in feeds
    {
        let batch = RawBatch::from_tensors(m.schema(), tensors.clone())?;
        let samples = time_calls(budget, || {
            m.predict(&batch)?;
            Ok(())
        })?;
        let s = summarise(&samples, *n);
        eprintln!(
            "  {engine} batch {n}: p50 {:.1} µs, p99 {:.1} µs ({} calls)",
            s.p50_us, s.p99_us, s.calls
        );
        out.push(Row {
            point,
            batch: *n,
            engine: engine.into(),
            p50_us: s.p50_us,
            p99_us: s.p99_us,
            rows_per_s: s.rows_per_s,
            calls: s.calls,
            load_s,
        });
    }
    drop(m);
    if no_ort {
        return Ok(out);
    }
    let output = Command::new(python()?)
        .arg(repo_root().join("tests/python/bench_ort.py"))
        .args(["cases", "--model"])
        .arg(model)
        .arg("--feeds")
        .args(feeds.iter().map(|f| &f.path))
        .args(["--threads", "1", "--seconds"])
        .arg(budget.min_seconds.to_string())
        .arg("--min-calls")
        .arg(budget.min_calls.to_string())
        .arg("--warmup")
        .arg(budget.warmup_calls.to_string())
        .output()
        .context("starting bench_ort.py")?;
    if !output.status.success() {
        bail!(
            "bench_ort.py failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let load_s = doc["load_s"].as_f64().context("load_s")?;
    for case in doc["cases"].as_array().context("cases")? {
        let get = |k: &str| case[k].as_f64().with_context(|| k.to_string());
        let row = Row {
            point,
            batch: get("batch")? as usize,
            engine: "ort".into(),
            p50_us: get("p50_us")?,
            p99_us: get("p99_us")?,
            rows_per_s: get("rows_per_s")?,
            calls: get("calls")? as usize,
            load_s,
        };
        eprintln!(
            "  ORT batch {}: p50 {:.1} µs, p99 {:.1} µs ({} calls)",
            row.batch, row.p50_us, row.p99_us, row.calls
        );
        out.push(row);
    }
    Ok(out)
}

/// The switches of `run`.
#[derive(Clone, Copy)]
struct RunFlags {
    no_ort: bool,
    no_fuse: bool,
    keep: bool,
}

fn run(
    sweep: Sweep,
    points: Vec<usize>,
    work: &Path,
    figures: &Path,
    budget: Budget,
    flags: RunFlags,
) -> Result<()> {
    let RunFlags {
        no_ort,
        no_fuse,
        keep,
    } = flags;
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    std::fs::create_dir_all(figures).with_context(|| format!("creating {}", figures.display()))?;
    let points = if points.is_empty() {
        sweep.default_points()
    } else {
        points
    };
    let csv = figures.join(format!("bench-scaling-{}.csv", sweep.name()));
    let model = work.join(format!("{}.onnx", sweep.name()));
    let mut all = Vec::new();
    let seed = 20261130;
    // The batch sweep compiles one model; every other sweep one per point.
    let models: Vec<(usize, Vec<usize>)> = match sweep {
        Sweep::Batch => vec![(0, points.clone())],
        _ => points
            .iter()
            .map(|&p| (p, SWEEP_BATCHES.to_vec()))
            .collect(),
    };
    for (point, batches) in models {
        eprintln!("{} = {point}", sweep.name());
        let cfg = config(sweep, point)?;
        compile(&cfg, &model, sweep == Sweep::Users, seed)?;
        let l = if sweep == Sweep::History {
            point
        } else {
            BASE_L
        };
        let mut feeds = Vec::new();
        for &n in &batches {
            let inputs = batch_inputs(&cfg, &rows(&cfg, n, l, seed + n as u64))?;
            let path = work.join(format!("{}-inputs-{n}.json", sweep.name()));
            write_inputs_json(&path, &inputs)?;
            let tensors = inputs.clone();
            feeds.push(Feed {
                batch: n,
                path,
                tensors,
            });
        }
        let result = measure(point, &model, &feeds, budget, no_ort, no_fuse);
        for f in &feeds {
            if keep {
                let kept = work.join(format!("inputs_{}.json", f.batch));
                std::fs::rename(&f.path, &kept)
                    .with_context(|| format!("renaming to {}", kept.display()))?;
            } else {
                let _ = std::fs::remove_file(&f.path);
            }
        }
        if !keep {
            remove_model(&model);
        }
        let mut rows = result?;
        if sweep == Sweep::Batch {
            for r in &mut rows {
                r.point = r.batch;
            }
        }
        all.extend(rows);
        write_csv(&csv, &all)?;
    }
    eprintln!("wrote {}", csv.display());
    plot(sweep, &all, figures)
}

// ---------------------------------------------------------------- plots

/// DejaVu Sans, the font `uie-train` embeds for its plots (licence beside it).
static FONT: &[u8] = include_bytes!("../../crates/uie-train/assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
const WIDTH: u32 = 1200;
const PANEL_HEIGHT: u32 = 520;
/// Height of the legend strip under each chart, pixels.
const LEGEND_STRIP: u32 = 34;

fn font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// One plotted series.
struct Series {
    label: String,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// A number for an axis label: integers with thousands grouping as k/M, small values with up to
/// three significant digits.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 && (v / 1e6).fract().abs() < 1e-9 {
        format!("{}M", v / 1e6)
    } else if a >= 1e3 && (v / 1e3).fract().abs() < 1e-9 {
        format!("{}k", v / 1e3)
    } else if a >= 100.0 || v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Draws one panel: y on a log scale, x log or linear.
fn panel(
    area: &Area<'_>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    x_log: bool,
    series: &[Series],
) -> DrawResult {
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    if xs.is_empty() {
        return Ok(());
    }
    let (x0, x1) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (y0, y1) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (y0, y1) = (y0 / 1.5, y1 * 1.5);
    // The x ticks of a log axis are the measured points; the y ticks 1, 2, 5 × 10^k.
    let mut ticks: Vec<f64> = xs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let mut y_ticks = Vec::new();
    let mut decade = 10f64.powf(y0.log10().floor());
    while decade <= y1 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * decade;
            if v >= y0 && v <= y1 {
                y_ticks.push(v);
            }
        }
        decade *= 10.0;
    }
    let x_label = |v: &f64| tick(*v);
    let y_label = |v: &f64| tick(*v);
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .x_label_formatter(&x_label)
                .y_label_formatter(&y_label)
                .label_style(font(15))
                .axis_desc_style(font(17))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            for s in series {
                let c = s.colour;
                chart.draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2)))?;
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
            }
        }};
    }
    // The legend goes in a strip under the chart, so it never hides data.
    let (_, h) = area.dim_in_pixel();
    let (area, strip) = area.split_vertically(h.saturating_sub(LEGEND_STRIP));
    let style = font(15);
    let mut x = 90i32;
    let y = (LEGEND_STRIP / 2) as i32;
    for s in series {
        strip.draw(&PathElement::new(
            vec![(x, y), (x + 28, y)],
            s.colour.stroke_width(3),
        ))?;
        strip.draw(&Circle::new((x + 14, y), 4, s.colour.filled()))?;
        strip.draw_text(
            &s.label,
            &style.pos(Pos::new(HPos::Left, VPos::Center)),
            (x + 36, y),
        )?;
        let (tw, _) = strip.estimate_text_size(&s.label, &style)?;
        x += 36 + tw as i32 + 40;
    }
    let mut builder = ChartBuilder::on(&area);
    builder
        .caption(caption, font(20))
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(80);
    if x_log {
        body!(builder.build_cartesian_2d(
            (x0 / 1.3..x1 * 1.3).log_scale().with_key_points(ticks),
            (y0..y1).log_scale().with_key_points(y_ticks)
        )?);
    } else {
        let pad = (x1 - x0).max(1.0) * 0.04;
        // A linear axis keeps plotters' evenly spaced ticks.
        body!(builder.build_cartesian_2d(
            x0 - pad..x1 + pad,
            (y0..y1).log_scale().with_key_points(y_ticks)
        )?);
    }
    Ok(())
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(120, 180, 230),
    RGBColor(250, 150, 140),
];

fn engine_label(engine: &str) -> &'static str {
    match engine {
        "ort" => "ONNX Runtime (1 thread)",
        "tract-nofuse" => "tract / uie-runtime, fused retrieval off",
        _ => "tract / uie-runtime",
    }
}

/// Series of `value` per (engine, batch) in `rows`, in a fixed order.
fn series_of(rows: &[Row], by_batch: bool, value: impl Fn(&Row) -> f64) -> Vec<Series> {
    let mut keys: Vec<(String, usize)> = rows
        .iter()
        .map(|r| (r.engine.clone(), if by_batch { r.batch } else { 0 }))
        .collect();
    keys.sort_by_key(|k| (k.1, k.0 != "tract"));
    keys.dedup();
    keys.iter()
        .enumerate()
        .map(|(i, (engine, batch))| Series {
            label: if by_batch {
                format!("{}, batch {batch}", engine_label(engine))
            } else {
                engine_label(engine).to_string()
            },
            colour: COLOURS[i % COLOURS.len()],
            points: rows
                .iter()
                .filter(|r| &r.engine == engine && (!by_batch || r.batch == *batch))
                .map(|r| (r.point as f64, value(r)))
                .collect(),
        })
        .collect()
}

fn plot(sweep: Sweep, rows: &[Row], figures: &Path) -> Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok())
    {
        bail!("the embedded DejaVu Sans font is not a valid font");
    }
    let path = figures.join(format!("bench-scaling-{}.png", sweep.name()));
    let tmp = figures.join(format!(
        ".bench-scaling-{}.tmp-{}.png",
        sweep.name(),
        std::process::id()
    ));
    let (x_desc, x_log) = sweep.axis();
    let two_panels = matches!(sweep, Sweep::Batch | Sweep::Users);
    let height = if two_panels {
        2 * PANEL_HEIGHT
    } else {
        PANEL_HEIGHT
    };
    let drawn = (|| -> DrawResult {
        let root = BitMapBackend::new(&tmp, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = if two_panels {
            let (a, b) = root.split_vertically(PANEL_HEIGHT);
            (a, Some(b))
        } else {
            (root.clone(), None)
        };
        let by_batch = sweep != Sweep::Batch;
        let p50 = series_of(rows, by_batch, |r| r.p50_us / 1e3);
        let title = match sweep {
            Sweep::Centres => "p50 latency against centres N (L = 50, 1024 users)",
            Sweep::History => "p50 latency against history length L (N = 256, 1024 users)",
            Sweep::Users => "p50 latency against users in P (N = 256, L = 50)",
            Sweep::Batch => "p50 latency against batch size (N = 256, L = 50, 1024 users)",
        };
        panel(
            &top,
            title,
            x_desc,
            "p50 latency per call (ms, log)",
            x_log,
            &p50,
        )?;
        if let Some(bottom) = bottom {
            if sweep == Sweep::Batch {
                let rps = series_of(rows, false, |r| r.rows_per_s);
                panel(
                    &bottom,
                    "throughput",
                    x_desc,
                    "rows per second (log)",
                    true,
                    &rps,
                )?;
            } else {
                // One load time per model and engine (the batch-1 row carries it).
                let loads: Vec<Row> = rows.iter().filter(|r| r.batch == 1).cloned().collect();
                let load = series_of(&loads, false, |r| r.load_s.max(1e-3));
                panel(
                    &bottom,
                    "model load time (tract: load + optimise; ONNX Runtime: session creation)",
                    x_desc,
                    "seconds (log)",
                    true,
                    &load,
                )?;
            }
        }
        root.present()?;
        Ok(())
    })();
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        bail!("cannot draw {}: {e}", path.display());
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Run {
            sweep,
            points,
            work,
            figures,
            seconds,
            min_calls,
            no_ort,
            no_fuse,
            keep,
        } => run(
            sweep,
            points,
            &work,
            &figures,
            Budget {
                warmup_calls: 3,
                min_seconds: seconds,
                min_calls,
            },
            RunFlags {
                no_ort,
                no_fuse,
                keep,
            },
        ),
        Cmd::Plot { figures } => {
            for sweep in Sweep::all() {
                let csv = figures.join(format!("bench-scaling-{}.csv", sweep.name()));
                if csv.exists() {
                    plot(sweep, &read_csv(&csv)?, &figures)?;
                }
            }
            Ok(())
        }
    }
}
