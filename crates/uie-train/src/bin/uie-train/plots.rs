//! PNG plots of a training run, drawn from its epoch records ([`EpochRecord`], `history.json`):
//!
//! - `training.png`: train loss and auxiliary loss per epoch (top) and validation AUC per task
//!   (bottom); warm-up epochs are shaded.
//! - `cohorts.png`: validation AUC per history cohort (`docs/evaluation.md` Protocol B, including
//!   `sparse`) and task at the last epoch; only when the history has cohorts.
//! - `centres.png`: per memory table and epoch, the share of centres used and the assignment
//!   entropy (dashed: its maximum `ln N`); only when the history has memory tables.
//!
//! Text is rendered with the DejaVu Sans font embedded in the binary (`assets/`, licence beside
//! it), so plotting needs no system fonts. Every PNG is written to a temporary file in `dir` and
//! renamed into place.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use uie_train::report::{EpochRecord, Phase};
use uie_train::TrainError;

use crate::tables::thousands;

/// Width of every plot, pixels.
pub const WIDTH: u32 = 1200;
/// Height of `training.png` and `centres.png` (two panels), pixels.
pub const TALL_HEIGHT: u32 = 900;
/// Height of `cohorts.png`, pixels.
pub const COHORTS_HEIGHT: u32 = 600;

/// File name of the loss and validation-AUC plot.
pub const TRAINING_PNG: &str = "training.png";
/// File name of the per-cohort AUC plot.
pub const COHORTS_PNG: &str = "cohorts.png";
/// File name of the memory-table plot.
pub const CENTRES_PNG: &str = "centres.png";

/// DejaVu Sans (Bitstream Vera licence, `assets/DejaVuSans-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
/// The family name the embedded font is registered under.
const FAMILY: &str = "sans-serif";

type DrawResult<T = ()> = Result<T, Box<dyn Error>>;

/// Series colours: tasks, tables and losses cycle through these.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];
/// Fill of warm-up epochs.
const WARMUP_FILL: RGBColor = RGBColor(255, 228, 181);
/// Grey of reference lines.
const GREY: RGBColor = RGBColor(110, 110, 110);
/// Room right of an epoch chart's plotting area for its legend, pixels.
const LEGEND_ROOM: u32 = 300;

fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
                .map_err(|_| "the embedded DejaVu Sans font is not a valid font".to_string())
        })
        .clone()
}

fn plot_error(path: &Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::io(
        path,
        std::io::Error::other(format!("cannot draw the plot: {message}")),
    )
}

/// Writes `training.png`, and `cohorts.png` and `centres.png` when the history has cohorts or
/// memory tables, into `dir` (created if missing). Returns the paths written, in that order.
///
/// An empty history is an error ([`TrainError::EmptyData`]); a drawing failure is reported as
/// [`TrainError::Io`] on the PNG's path. Non-finite values are left out of the curves.
pub fn write_plots(dir: &Path, history: &[EpochRecord]) -> Result<Vec<PathBuf>, TrainError> {
    if history.is_empty() {
        return Err(TrainError::EmptyData(
            "the training history has no epochs: nothing to plot".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    register_font().map_err(|m| plot_error(&dir.join(TRAINING_PNG), m))?;
    let mut written = Vec::new();
    written.push(write_png(
        dir,
        TRAINING_PNG,
        (WIDTH, TALL_HEIGHT),
        |root| draw_training(root, history),
    )?);
    let last = history.last().filter(|r| !r.val.cohorts.is_empty());
    if let Some(last) = last {
        written.push(write_png(
            dir,
            COHORTS_PNG,
            (WIDTH, COHORTS_HEIGHT),
            |root| draw_cohorts(root, last),
        )?);
    }
    if history.iter().any(|r| !r.tables.is_empty()) {
        written.push(write_png(dir, CENTRES_PNG, (WIDTH, TALL_HEIGHT), |root| {
            draw_centres(root, history)
        })?);
    }
    Ok(written)
}

/// Draws into `<dir>/.<name>.tmp-<pid>.png`, then renames it to `<dir>/<name>`.
fn write_png(
    dir: &Path,
    name: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
) -> Result<PathBuf, TrainError> {
    let path = dir.join(name);
    let stem = name.strip_suffix(".png").unwrap_or(name);
    let tmp = dir.join(format!(".{stem}.tmp-{}.png", std::process::id()));
    let result = (|| -> DrawResult {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(plot_error(&path, e));
    }
    if let Err(e) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(TrainError::io(&path, e));
    }
    Ok(path)
}

fn font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// `[lo, hi]` padded by 8 % (or ±`fallback_pad` around a single value); `default` when no value
/// is finite.
fn value_range(values: &[f64], fallback_pad: f64, default: (f64, f64)) -> (f64, f64) {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return default;
    }
    if hi - lo < 1e-12 {
        return (lo - fallback_pad, hi + fallback_pad);
    }
    let pad = (hi - lo) * 0.08;
    (lo - pad, hi + pad)
}

fn epoch_range(history: &[EpochRecord]) -> (f64, f64) {
    let lo = history.iter().map(|r| r.epoch).min().unwrap_or(1);
    let hi = history.iter().map(|r| r.epoch).max().unwrap_or(1);
    (lo as f64 - 0.5, hi as f64 + 0.5)
}

fn integer_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

/// Finite `(epoch, value)` points.
fn points(history: &[EpochRecord], value: impl Fn(&EpochRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    history
        .iter()
        .filter_map(|r| {
            value(r)
                .filter(|v| v.is_finite())
                .map(|v| (r.epoch as f64, v))
        })
        .collect()
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// An epoch-axis chart with its mesh and warm-up shading.
fn epoch_chart<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    caption: &str,
    y_desc: &str,
    history: &[EpochRecord],
    y: (f64, f64),
) -> DrawResult<(Chart<'a, 'b>, Vec<Entry>)> {
    let x = epoch_range(history);
    let n_epochs = (x.1 - x.0).round().max(1.0) as usize;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, font(24))
        .margin(16)
        .margin_right(LEGEND_ROOM)
        .x_label_area_size(52)
        .y_label_area_size(84)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
    chart
        .configure_mesh()
        .x_labels(n_epochs.min(25) + 1)
        .x_label_formatter(&integer_label)
        .y_labels(8)
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style(font(16))
        .axis_desc_style(font(18))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let warm: Vec<f64> = history
        .iter()
        .filter(|r| r.phase == Phase::Warmup)
        .map(|r| r.epoch as f64)
        .collect();
    let mut entries = Vec::new();
    if !warm.is_empty() {
        chart
            .draw_series(warm.iter().map(|&e| {
                Rectangle::new([(e - 0.5, y.0), (e + 0.5, y.1)], WARMUP_FILL.filled())
            }))?;
        entries.push(Entry {
            label: "warm-up epoch (towers only)".into(),
            swatch: Swatch::Fill(WARMUP_FILL),
        });
    }
    Ok((chart, entries))
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Swatch {
    /// A solid line of this colour and width with a marker of this radius.
    Line(RGBColor, u32, u32),
    /// A dashed line of this colour and width.
    Dashed(RGBColor, u32),
    /// A filled box.
    Fill(RGBColor),
}

/// One legend entry.
struct Entry {
    label: String,
    swatch: Swatch,
}

/// Draws `entries` as a boxed legend right of the chart's plotting area, on `root` (absolute
/// pixels; plotters' own series labels are clipped to the plotting area).
fn side_legend(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    chart: &Chart<'_, '_>,
    entries: &[Entry],
) -> DrawResult {
    if entries.is_empty() {
        return Ok(());
    }
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let style = font(16);
    let (margin, row, swatch_w) = (10i32, 26i32, 28i32);
    let mut text_w = 0i32;
    for e in entries {
        let (w, _) = root.estimate_text_size(&e.label, &style)?;
        text_w = text_w.max(w as i32);
    }
    let x0 = xs.end + 16;
    let y0 = ys.start;
    let w = margin * 3 + swatch_w + text_w;
    let h = margin * 2 + row * entries.len() as i32;
    root.draw(&Rectangle::new(
        [(x0, y0), (x0 + w, y0 + h)],
        WHITE.filled(),
    ))?;
    root.draw(&Rectangle::new(
        [(x0, y0), (x0 + w, y0 + h)],
        RGBColor(160, 160, 160).stroke_width(1),
    ))?;
    for (i, e) in entries.iter().enumerate() {
        let y = y0 + margin + row * i as i32 + row / 2;
        let x = x0 + margin;
        match e.swatch {
            Swatch::Fill(c) => {
                root.draw(&Rectangle::new(
                    [(x, y - 8), (x + swatch_w, y + 8)],
                    c.filled(),
                ))?;
            }
            Swatch::Line(c, width, marker) => {
                root.draw(&PathElement::new(
                    vec![(x, y), (x + swatch_w, y)],
                    c.stroke_width(width),
                ))?;
                root.draw(&Circle::new((x + swatch_w / 2, y), marker, c.filled()))?;
            }
            Swatch::Dashed(c, width) => {
                for (a, b) in [(0, 8), (12, 20), (24, 28)] {
                    root.draw(&PathElement::new(
                        vec![(x + a, y), (x + b, y)],
                        c.stroke_width(width),
                    ))?;
                }
            }
        }
        root.draw_text(
            &e.label,
            &style.pos(Pos::new(HPos::Left, VPos::Center)),
            (x + swatch_w + margin, y),
        )?;
    }
    Ok(())
}

/// How a series is drawn: the `i`-th solid series of a chart is drawn thinner than the ones
/// before it, so that series with equal values stay visible one inside the other.
#[derive(Clone, Copy)]
enum Line {
    Solid(usize),
    Dashed,
}

/// A line (solid ones with a marker on every point), with its legend entry.
fn draw_line(
    chart: &mut Chart<'_, '_>,
    entries: &mut Vec<Entry>,
    pts: &[(f64, f64)],
    c: RGBColor,
    label: &str,
    line: Line,
) -> DrawResult {
    if pts.is_empty() {
        return Ok(());
    }
    match line {
        Line::Solid(i) => {
            let width = 6u32.saturating_sub(2 * i as u32).max(2);
            let marker = 9u32.saturating_sub(2 * i as u32).max(4);
            chart.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(width)))?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, marker, c.filled())))?;
            entries.push(Entry {
                label: label.into(),
                swatch: Swatch::Line(c, width, marker),
            });
        }
        Line::Dashed => {
            chart.draw_series(DashedLineSeries::new(
                pts.iter().copied(),
                10,
                6,
                c.stroke_width(2),
            ))?;
            entries.push(Entry {
                label: label.into(),
                swatch: Swatch::Dashed(c, 2),
            });
        }
    }
    Ok(())
}

fn legend_at<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(font(16))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .margin(12)
        .draw()?;
    Ok(())
}

fn no_data(area: &DrawingArea<BitMapBackend<'_>, Shift>, message: &str) -> DrawResult {
    let (w, h) = area.dim_in_pixel();
    area.draw_text(
        message,
        &font(18).pos(Pos::new(HPos::Center, VPos::Center)),
        (w as i32 / 2, h as i32 / 2),
    )?;
    Ok(())
}

fn draw_training(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    history: &[EpochRecord],
) -> DrawResult {
    let (top, bottom) = root.split_vertically(TALL_HEIGHT / 2);
    let train = points(history, |r| Some(r.train_loss));
    let aux = points(history, |r| r.aux_loss);
    let all: Vec<f64> = train.iter().chain(&aux).map(|p| p.1).collect();
    let (mut chart, mut entries) = epoch_chart(
        &top,
        "Training loss per epoch",
        "loss",
        history,
        value_range(&all, 0.05, (0.0, 1.0)),
    )?;
    draw_line(
        &mut chart,
        &mut entries,
        &train,
        colour(0),
        "train loss (Σ w·BCE)",
        Line::Solid(0),
    )?;
    draw_line(
        &mut chart,
        &mut entries,
        &aux,
        colour(3),
        "auxiliary loss (two towers)",
        Line::Solid(1),
    )?;
    side_legend(root, &chart, &entries)?;
    if all.is_empty() {
        no_data(&top, "no finite loss")?;
    }

    let tasks: Vec<String> = history
        .iter()
        .flat_map(|r| r.val.overall.iter().map(|m| m.task.clone()))
        .fold(Vec::new(), |mut acc, t| {
            if !acc.contains(&t) {
                acc.push(t);
            }
            acc
        });
    let series: Vec<(String, Vec<(f64, f64)>)> = tasks
        .iter()
        .map(|task| {
            let pts = points(history, |r| {
                r.val
                    .overall
                    .iter()
                    .find(|m| &m.task == task)
                    .and_then(|m| m.auc)
            });
            (task.clone(), pts)
        })
        .collect();
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .collect();
    let (mut chart, mut entries) = epoch_chart(
        &bottom,
        "Validation AUC per task",
        "AUC",
        history,
        value_range(&values, 0.01, (0.5, 1.0)),
    )?;
    for (i, (task, pts)) in series.iter().enumerate() {
        draw_line(
            &mut chart,
            &mut entries,
            pts,
            colour(i),
            &format!("val AUC {task}"),
            Line::Solid(i),
        )?;
    }
    side_legend(root, &chart, &entries)?;
    if values.is_empty() {
        no_data(&bottom, "no validation AUC (one class or no tasks)")?;
    }
    Ok(())
}

/// One group of bars: its name, its rows, and per task the AUC (if any).
type BarGroup = (String, usize, Vec<(String, Option<f64>)>);

fn draw_cohorts(root: &DrawingArea<BitMapBackend<'_>, Shift>, last: &EpochRecord) -> DrawResult {
    // Groups: all rows, then the cohorts in report order (the five, then sparse).
    let mut groups: Vec<BarGroup> = Vec::new();
    let rows_all = last.val.overall.first().map(|m| m.n).unwrap_or(0);
    groups.push((
        "all".into(),
        rows_all,
        last.val
            .overall
            .iter()
            .map(|m| (m.task.clone(), m.auc))
            .collect(),
    ));
    for c in &last.val.cohorts {
        let name = if c.cohort == uie_train::report::SPARSE {
            "sparse (0-20)".to_string()
        } else {
            c.cohort.clone()
        };
        groups.push((
            name,
            c.rows,
            c.tasks.iter().map(|m| (m.task.clone(), m.auc)).collect(),
        ));
    }
    let tasks: Vec<String> = last.val.overall.iter().map(|m| m.task.clone()).collect();
    let values: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.2.iter().filter_map(|(_, a)| *a))
        .filter(|a| a.is_finite())
        .collect();
    let lo = values.iter().copied().fold(0.5f64, f64::min);
    let lo = (lo * 20.0).floor() / 20.0;
    let lo = lo.max(0.0);
    // Headroom above 1.0 for the legend; no axis label is drawn there.
    let y = (lo, 1.0 + (1.0 - lo) * 0.16);
    let g = groups.len() as f64;
    let caption = format!(
        "Validation AUC per history cohort, epoch {} (bars start at {:.2})",
        last.epoch, y.0
    );
    let mut chart = ChartBuilder::on(root)
        .caption(caption, font(24))
        .margin(16)
        .margin_bottom(20)
        .x_label_area_size(64)
        .y_label_area_size(84)
        .build_cartesian_2d(0.0..g, y.0..y.1)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(12)
        .y_label_formatter(&|v: &f64| {
            if *v <= 1.0 + 1e-9 {
                format!("{v:.2}")
            } else {
                String::new()
            }
        })
        .y_desc("AUC")
        .x_desc("history length at prediction time (cohort), rows in validation")
        .label_style(font(16))
        .axis_desc_style(font(18))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let t = tasks.len().max(1) as f64;
    let bar = 0.8 / t;
    for (k, task) in tasks.iter().enumerate() {
        let c = colour(k);
        let bars: Vec<(f64, f64)> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, gr)| {
                gr.2.iter()
                    .find(|(name, _)| name == task)
                    .and_then(|(_, a)| *a)
                    .filter(|a| a.is_finite())
                    .map(|a| (i as f64 + 0.1 + bar * k as f64, a))
            })
            .collect();
        chart
            .draw_series(bars.iter().map(|&(x0, a)| {
                Rectangle::new(
                    [(x0 + 0.01, y.0), (x0 + bar - 0.01, a.max(y.0))],
                    c.filled(),
                )
            }))?
            .label(format!("val AUC {task}"))
            .legend(move |(px, py)| Rectangle::new([(px, py - 6), (px + 20, py + 6)], c.filled()));
        for &(x0, a) in &bars {
            let (px, py) = chart.backend_coord(&(x0 + bar / 2.0, a.max(y.0)));
            root.draw_text(
                &format!("{a:.3}"),
                &font(14).pos(Pos::new(HPos::Center, VPos::Bottom)),
                (px, py - 4),
            )?;
        }
        // A task without AUC in a group (one class only) is marked where its bar would be.
        for (i, gr) in groups.iter().enumerate() {
            let missing =
                gr.2.iter()
                    .find(|(name, _)| name == task)
                    .is_none_or(|(_, a)| a.is_none_or(|a| !a.is_finite()));
            if missing {
                let x = i as f64 + 0.1 + bar * k as f64 + bar / 2.0;
                let (px, py) = chart.backend_coord(&(x, y.0));
                root.draw_text(
                    "n/a",
                    &font(14).color(&c).pos(Pos::new(HPos::Center, VPos::Bottom)),
                    (px, py - 4),
                )?;
            }
        }
    }
    // Separators: `all` | the five cohorts | `sparse` (which joins the first three).
    let separators: Vec<f64> = groups
        .iter()
        .enumerate()
        .filter(|(i, gr)| *i == 1 || gr.0.starts_with(uie_train::report::SPARSE))
        .map(|(i, _)| i as f64)
        .collect();
    for x in separators {
        chart.draw_series(DashedLineSeries::new(
            [(x, y.0), (x, 1.0)],
            6,
            6,
            GREY.stroke_width(1),
        ))?;
    }
    // Group names and row counts under the axis.
    for (i, (name, rows, _)) in groups.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, y.0));
        root.draw_text(
            name,
            &font(17).pos(Pos::new(HPos::Center, VPos::Top)),
            (px, py + 8),
        )?;
        root.draw_text(
            &format!("n={}", thousands(*rows)),
            &font(14)
                .color(&RGBColor(90, 90, 90))
                .pos(Pos::new(HPos::Center, VPos::Top)),
            (px, py + 30),
        )?;
    }
    legend_at(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

fn draw_centres(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    history: &[EpochRecord],
) -> DrawResult {
    let (top, bottom) = root.split_vertically(TALL_HEIGHT / 2);
    let mut tables: Vec<(String, usize)> = Vec::new();
    for r in history {
        for t in &r.tables {
            if !tables.iter().any(|(name, _)| name == &t.table) {
                tables.push((t.table.clone(), t.centres));
            }
        }
    }
    let usage = |name: &str, f: &dyn Fn(&uie_train::report::TableUsage) -> f64| {
        points(history, |r| {
            r.tables.iter().find(|t| t.table == name).map(f)
        })
    };
    let (mut chart, mut entries) = epoch_chart(
        &top,
        "Centres used per memory table (collapse check)",
        "centres used / centres",
        history,
        (0.0, 1.05),
    )?;
    for (i, (name, centres)) in tables.iter().enumerate() {
        let pts = usage(name, &|t| {
            if t.centres == 0 {
                f64::NAN
            } else {
                t.used as f64 / t.centres as f64
            }
        });
        draw_line(
            &mut chart,
            &mut entries,
            &pts,
            colour(i),
            &format!("{name} ({centres} centres)"),
            Line::Solid(i),
        )?;
    }
    side_legend(root, &chart, &entries)?;

    let entropy: Vec<(String, Vec<(f64, f64)>)> = tables
        .iter()
        .map(|(name, _)| (name.clone(), usage(name, &|t| t.entropy)))
        .collect();
    // One dashed reference `ln N` per distinct table size.
    let mut sizes: Vec<(usize, Vec<String>)> = Vec::new();
    for (name, centres) in &tables {
        match sizes.iter_mut().find(|(n, _)| n == centres) {
            Some((_, names)) => names.push(name.clone()),
            None => sizes.push((*centres, vec![name.clone()])),
        }
    }
    sizes.retain(|(n, _)| *n > 1);
    let values: Vec<f64> = entropy
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .chain(sizes.iter().map(|(n, _)| (*n as f64).ln()))
        .chain(std::iter::once(0.0))
        .collect();
    let (_, hi) = value_range(&values, 0.5, (0.0, 1.0));
    let (mut chart, mut entries) = epoch_chart(
        &bottom,
        "Assignment entropy per memory table (dashed: maximum ln N)",
        "entropy (nats)",
        history,
        (0.0, hi.max(0.1)),
    )?;
    for (i, (name, pts)) in entropy.iter().enumerate() {
        draw_line(
            &mut chart,
            &mut entries,
            pts,
            colour(i),
            name,
            Line::Solid(i),
        )?;
    }
    let (x0, x1) = epoch_range(history);
    for (n, names) in &sizes {
        let y = (*n as f64).ln();
        let short: Vec<&str> = names
            .iter()
            .map(|s| s.strip_prefix("memory.").unwrap_or(s))
            .collect();
        let label = format!("ln {n} = {y:.2} ({})", short.join(", "));
        draw_line(
            &mut chart,
            &mut entries,
            &[(x0, y), (x1, y)],
            GREY,
            &label,
            Line::Dashed,
        )?;
    }
    side_legend(root, &chart, &entries)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uie_train::metrics::TaskMetrics;
    use uie_train::report::{CohortMetrics, EvalReport, Gauc, TableUsage};

    fn task(name: &str, auc: Option<f64>, n: usize) -> TaskMetrics {
        TaskMetrics {
            task: name.into(),
            auc,
            logloss: 0.6,
            n,
        }
    }

    fn record(epoch: usize, warm: bool, with_uie: bool) -> EpochRecord {
        let e = epoch as f64;
        let cohorts = ["0", "1-5", "6-20", "21-100", ">100", "sparse"]
            .iter()
            .enumerate()
            .map(|(i, c)| CohortMetrics {
                cohort: (*c).into(),
                rows: 1000 + 500 * i,
                tasks: vec![
                    task("watch", Some(0.62 + 0.04 * i as f64 + 0.01 * e), 1000),
                    // The `0` cohort has only one class for `like` in this fixture.
                    task(
                        "like",
                        (i != 0).then_some(0.58 + 0.03 * i as f64 + 0.01 * e),
                        1000,
                    ),
                ],
            })
            .collect();
        let tables = if with_uie {
            ["memory.upe", "memory.ucbe", "memory.ucse"]
                .iter()
                .enumerate()
                .map(|(i, t)| TableUsage {
                    table: (*t).into(),
                    centres: [256, 128, 256][i],
                    used: ([256usize, 128, 256][i] * (3 + epoch))
                        .div_ceil(10)
                        .min([256, 128, 256][i]),
                    entropy: 2.0 + 0.4 * e + 0.2 * i as f64,
                    reseeded: 3,
                })
                .collect()
        } else {
            Vec::new()
        };
        EpochRecord {
            epoch,
            phase: if warm { Phase::Warmup } else { Phase::Full },
            train_loss: 1.3 / e.sqrt(),
            aux_loss: with_uie.then_some(0.7 / e.sqrt()),
            val: EvalReport {
                overall: vec![
                    task("watch", Some(0.70 + 0.02 * e), 30_000),
                    task("like", Some(0.66 + 0.015 * e), 30_000),
                ],
                cohorts,
                gauc: vec![Gauc {
                    task: "watch".into(),
                    gauc: Some(0.6),
                    users: 100,
                }],
            },
            tables,
            seconds: 12.0,
            timings: Default::default(),
        }
    }

    /// Width and height from a PNG's IHDR chunk, after checking the signature.
    fn png_size(path: &Path) -> (u32, u32) {
        let bytes = std::fs::read(path).expect("read png");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        assert_eq!(&bytes[12..16], b"IHDR");
        let be =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        assert!(
            bytes.ends_with(&[0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]),
            "IEND"
        );
        (be(16), be(20))
    }

    #[test]
    fn writes_three_valid_pngs_for_a_uie_history() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let history: Vec<EpochRecord> = (1..=6).map(|e| record(e, e == 1, true)).collect();
        let written = write_plots(tmp.path(), &history).expect("plots");
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [TRAINING_PNG, COHORTS_PNG, CENTRES_PNG]);
        assert_eq!(png_size(&written[0]), (WIDTH, TALL_HEIGHT));
        assert_eq!(png_size(&written[1]), (WIDTH, COHORTS_HEIGHT));
        assert_eq!(png_size(&written[2]), (WIDTH, TALL_HEIGHT));
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty());
        if let Ok(keep) = std::env::var("UIE_KEEP_PLOTS") {
            for p in &written {
                let name = p.file_name().expect("name");
                std::fs::copy(p, Path::new(&keep).join(name)).expect("copy");
            }
        }
    }

    #[test]
    fn census_like_history_gets_only_the_training_plot() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut history: Vec<EpochRecord> = (1..=1).map(|e| record(e, false, false)).collect();
        history[0].val.cohorts.clear();
        history[0].train_loss = f64::NAN;
        let written = write_plots(&tmp.path().join("sub"), &history).expect("plots");
        assert_eq!(written.len(), 1);
        assert_eq!(png_size(&written[0]), (WIDTH, TALL_HEIGHT));
    }

    #[test]
    fn empty_history_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let e = write_plots(tmp.path(), &[]).expect_err("empty");
        assert!(matches!(e, TrainError::EmptyData(_)), "{e}");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("dir").count(), 0);
    }
}
