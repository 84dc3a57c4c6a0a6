//! `tuner-cli plot`: a study's optimization history, learning curves or best trial's
//! confusion matrix as an SVG or PNG file (plotters; text in the vendored DejaVu Sans,
//! so a PNG looks the same on a machine without fonts).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;
use plotters::{
    coord::{Shift, types::RangedCoordusize},
    prelude::*,
    style::{
        FontStyle,
        text_anchor::{HPos, Pos, VPos},
    },
};
use serde_json::Value;
use tuner_api::{ApiClient, SortKey, SortOrder, Study, Trial, TrialQuery, TrialView};
use tuner_core::{StudyId, TrialState};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlotKind {
    /// Objective value per trial and the best so far.
    History,
    /// A metric per epoch for the best trials.
    Curves,
    /// The best trial's confusion matrix (built-in trainer studies).
    Confusion,
}

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (900, 600);

fn register_font() -> Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        bail!("the embedded font could not be read")
    }
}

/// The data a plot needs, fetched once; drawing is then pure.
pub struct PlotData {
    pub study: Study,
    pub trials: Vec<Trial>,
    pub best: Option<Trial>,
}

pub async fn fetch(
    client: &ApiClient,
    id: StudyId,
    kind: PlotKind,
    top: usize,
) -> Result<PlotData> {
    let study = client.get_study(id).await?;
    let maximize = study.objective.direction == tuner_core::Direction::Maximize;
    let (trials, best) = match kind {
        PlotKind::History => {
            let all = TrialQuery {
                view: Some(TrialView::Summary),
                ..TrialQuery::default()
            };
            (client.list_trials_where(id, &all).await?.trials, None)
        }
        PlotKind::Curves => {
            let best_first = TrialQuery {
                state: Some(TrialState::Completed),
                sort: Some(SortKey::Value),
                order: maximize.then_some(SortOrder::Desc),
                limit: Some(top),
                ..TrialQuery::default()
            };
            (
                client.list_trials_where(id, &best_first).await?.trials,
                None,
            )
        }
        PlotKind::Confusion => {
            let best = client
                .best(id)
                .await
                .with_context(|| format!("study {id} has no best trial to plot"))?;
            (Vec::new(), Some(best.trial))
        }
    };
    Ok(PlotData {
        study,
        trials,
        best,
    })
}

/// How values go on the y axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Log where the values are positive and span two decades or more, else linear.
    Auto,
    /// Log (`--log`): refused where a value is not positive.
    Log,
}

/// Draws `kind` into `out`; the extension (`.svg` or `.png`) picks the format.
pub fn draw(
    data: &PlotData,
    kind: PlotKind,
    metric: Option<&str>,
    scale: Scale,
    out: &Path,
) -> Result<()> {
    register_font()?;
    // Refuse before a backend exists: a failed plot leaves no file behind.
    match kind {
        PlotKind::History => {
            let (completed, pruned) = history_points(data)?;
            value_axis(
                scale,
                &data.study.objective.metric,
                completed.iter().chain(&pruned),
            )
            .map(drop)?
        }
        PlotKind::Curves => {
            let metric = metric.unwrap_or(&data.study.objective.metric);
            let lines = curve_lines(data, metric)?;
            value_axis(scale, metric, lines.iter().flat_map(|(_, c)| c)).map(drop)?
        }
        PlotKind::Confusion if scale == Scale::Log => {
            bail!("--log applies to --kind history and curves, not to a confusion matrix")
        }
        PlotKind::Confusion => confusion_data(data).map(drop)?,
    }
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let result = match ext.as_deref() {
        Some("svg") => draw_on(
            SVGBackend::new(out, SIZE).into_drawing_area(),
            data,
            kind,
            metric,
            scale,
        ),
        Some("png") => draw_on(
            BitMapBackend::new(out, SIZE).into_drawing_area(),
            data,
            kind,
            metric,
            scale,
        ),
        _ => bail!(
            "cannot tell the format of {}: name it .svg or .png",
            out.display()
        ),
    };
    result.with_context(|| format!("cannot draw {}", out.display()))
}

fn draw_on<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    data: &PlotData,
    kind: PlotKind,
    metric: Option<&str>,
    scale: Scale,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    match kind {
        PlotKind::History => history(&root, data, scale)?,
        PlotKind::Curves => curves(&root, data, metric, scale)?,
        PlotKind::Confusion => confusion(&root, data)?,
    }
    root.present().map_err(err)?;
    Ok(())
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("{e:?}")
}

/// Pads a value range so points do not sit on the frame (and a single value still
/// gets a range).
fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    (lo - pad)..(hi + pad)
}

/// Completed and pruned trials as (number, value).
type Points = Vec<(f64, f64)>;

/// Whether values are drawn on a log axis: all positive and spanning at least two
/// decades (a loss falling from 2.3 to 0.01), where a linear axis would flatten all
/// but the largest.
fn wants_log(values: impl Iterator<Item = f64> + Clone) -> bool {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    lo > 0.0 && hi.is_finite() && hi / lo >= 100.0
}

/// The y axis for `points` (x, value) of `metric`: as `scale` asks, and a log axis
/// only for positive values.
fn value_axis<'a>(
    scale: Scale,
    metric: &str,
    points: impl Iterator<Item = &'a (f64, f64)> + Clone,
) -> Result<ValueAxis> {
    let values = points.map(|p| p.1);
    match scale {
        Scale::Auto => Ok(ValueAxis {
            log: wants_log(values),
        }),
        Scale::Log => match values.clone().find(|v| *v <= 0.0) {
            Some(v) => bail!(
                "--log needs positive values, and {metric} has {} (a log axis cannot show \
                 zero or negative values; leave --log out for a linear axis)",
                short(v)
            ),
            None => Ok(ValueAxis { log: true }),
        },
    }
}

/// The y range to draw: all of `values`, unless a few lie far outside the bulk (beyond
/// 1.5 spans of the 5–95 % quantiles, the dashboard's rule for learning curves), which
/// are then left off so that one diverged epoch does not flatten every other curve.
fn robust_range(values: &[f64]) -> (f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let (Some(&min), Some(&max)) = (v.first(), v.last()) else {
        return (0.0, 1.0);
    };
    if v.len() < 8 {
        return (min, max);
    }
    let q = |f: f64| v[((f * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
    let (q05, q95) = (q(0.05), q(0.95));
    let span = if q95 > q05 {
        q95 - q05
    } else if q95 != 0.0 {
        q95.abs() * 0.1
    } else {
        1.0
    };
    (min.max(q05 - 1.5 * span), max.min(q95 + 1.5 * span))
}

/// A value axis: linear, or log10 of the values (drawn on a linear axis whose labels
/// give the values back).
#[derive(Clone, Copy)]
struct ValueAxis {
    log: bool,
}

impl ValueAxis {
    fn to_axis(self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }

    /// The value at an axis position, as a label.
    fn label(self, y: f64) -> String {
        let v = if self.log { 10f64.powf(y) } else { y };
        short(v)
    }

    /// How many labels to ask plotters for: on a log axis about one a decade, so
    /// that they fall on 0.01, 0.1, 1 rather than between.
    fn labels(self, range: &std::ops::Range<f64>) -> usize {
        if self.log {
            ((range.end - range.start).ceil() as usize + 1).clamp(2, 12)
        } else {
            10
        }
    }

    fn desc(self, metric: &str) -> String {
        if self.log {
            format!("{metric} (log scale)")
        } else {
            metric.to_owned()
        }
    }
}

/// A whole-number axis label (trial, epoch); none between whole numbers.
fn whole(x: &f64) -> String {
    let r = x.round();
    if (x - r).abs() < 1e-9 {
        format!("{}", r as i64)
    } else {
        String::new()
    }
}

/// A number in at most 4 significant digits, without trailing zeros.
fn short(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else {
        let digits = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let text = format!("{v:.digits$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            text
        }
    }
}

/// The corner of the plot whose `w` × `h` share (of width and height) holds the
/// fewest points, for the legend: it then covers as little data as it can.
fn quiet_corner(
    points: &[(f64, f64)],
    x: &std::ops::Range<f64>,
    y: &std::ops::Range<f64>,
    w: f64,
    h: f64,
) -> SeriesLabelPosition {
    let fx = |v: f64| (v - x.start) / (x.end - x.start);
    let fy = |v: f64| (v - y.start) / (y.end - y.start);
    let corners = [
        (
            SeriesLabelPosition::UpperRight,
            1.0 - w..=1.0,
            1.0 - h..=1.0,
        ),
        (SeriesLabelPosition::LowerRight, 1.0 - w..=1.0, 0.0..=h),
        (SeriesLabelPosition::UpperLeft, 0.0..=w, 1.0 - h..=1.0),
        (SeriesLabelPosition::LowerLeft, 0.0..=w, 0.0..=h),
    ];
    corners
        .into_iter()
        .map(|(pos, cx, cy)| {
            let inside = points
                .iter()
                .filter(|p| cx.contains(&fx(p.0)) && cy.contains(&fy(p.1)))
                .count();
            (inside, pos)
        })
        .min_by_key(|(inside, _)| *inside)
        .map_or(SeriesLabelPosition::UpperRight, |(_, pos)| pos)
}

/// Light horizontal grid lines only: the data, not the mesh, should stand out.
const GRID: RGBAColor = RGBAColor(0, 0, 0, 0.07);

fn history_points(data: &PlotData) -> Result<(Points, Points)> {
    let points = |state: TrialState| -> Points {
        data.trials
            .iter()
            .filter(|t| t.state == state)
            .filter_map(|t| t.value.map(|v| (t.number as f64, v)))
            .collect()
    };
    let completed = points(TrialState::Completed);
    let pruned = points(TrialState::Pruned);
    if completed.is_empty() && pruned.is_empty() {
        bail!("study {} has no trial with a value yet", data.study.id);
    }
    Ok((completed, pruned))
}

fn history<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &PlotData,
    scale: Scale,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let study = &data.study;
    let maximize = study.objective.direction == tuner_core::Direction::Maximize;
    let (completed, pruned) = history_points(data)?;
    // Best so far: a step line over completed trials in number order.
    let mut best: Vec<(f64, f64)> = Vec::new();
    for &(x, y) in &completed {
        let better = best
            .last()
            .is_none_or(|&(_, b)| if maximize { y > b } else { y < b });
        let y = if better {
            y
        } else {
            best.last().map_or(y, |p| p.1)
        };
        if let Some(&(_, prev)) = best.last() {
            best.push((x, prev));
        }
        best.push((x, y));
    }
    let axis = value_axis(
        scale,
        &study.objective.metric,
        completed.iter().chain(&pruned),
    )?;
    let on_axis = |points: &[(f64, f64)]| -> Points {
        points.iter().map(|&(x, y)| (x, axis.to_axis(y))).collect()
    };
    let (completed, pruned, best) = (on_axis(&completed), on_axis(&pruned), on_axis(&best));
    let all = completed.iter().chain(&pruned);
    let (lo, hi) = all
        .clone()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let last = all.clone().map(|p| p.0).fold(0.0, f64::max);
    let (xr, yr) = (-0.5..last + 0.5, padded(lo, hi));
    // The best-so-far line counts too: it runs on to the last trial.
    let covered: Vec<_> = all.chain(&best).copied().collect();
    let legend_at = quiet_corner(&covered, &xr, &yr, 0.32, 0.2);

    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "Optimization history: study {} \"{}\"",
                study.id, study.name
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(xr, yr.clone())
        .map_err(err)?;
    chart
        .configure_mesh()
        .y_labels(axis.labels(&yr))
        .disable_x_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .x_desc("trial")
        .x_label_formatter(&whole)
        .y_desc(axis.desc(&study.objective.metric))
        .y_label_formatter(&|y| axis.label(*y))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let blue = RGBColor(37, 99, 235);
    let grey = RGBColor(148, 163, 184);
    let red = RGBColor(220, 38, 38);
    chart
        .draw_series(completed.iter().map(|&p| Circle::new(p, 4, blue.filled())))
        .map_err(err)?
        .label(format!("completed ({})", completed.len()))
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, blue.filled()));
    if !pruned.is_empty() {
        chart
            .draw_series(
                pruned
                    .iter()
                    .map(|&p| Cross::new(p, 4, grey.stroke_width(2))),
            )
            .map_err(err)?
            .label(format!("pruned ({}), last value", pruned.len()))
            .legend(move |(x, y)| Cross::new((x + 10, y), 4, grey.stroke_width(2)));
    }
    chart
        .draw_series(LineSeries::new(best, red.stroke_width(2)))
        .map_err(err)?
        .label("best so far")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(legend_at)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The metric per epoch of one trial: from its per-epoch metrics, or its reported
/// value when that is the metric.
fn curve(t: &Trial, metric: &str, objective: &str) -> Vec<(f64, f64)> {
    t.intermediate
        .iter()
        .filter_map(|e| {
            let v = e
                .metrics
                .get(metric)
                .and_then(Value::as_f64)
                .or(if metric == objective { e.value } else { None })?;
            Some((f64::from(e.epoch), v))
        })
        .collect()
}

/// Each trial's (epoch, metric) line, for the trials that reported the metric.
fn curve_lines(data: &PlotData, metric: &str) -> Result<Vec<(u64, Points)>> {
    let objective = data.study.objective.metric.as_str();
    let lines: Vec<(u64, Points)> = data
        .trials
        .iter()
        .map(|t| (t.number, curve(t, metric, objective)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if lines.is_empty() {
        bail!(
            "no trial of study {} reported `{metric}` per epoch (completed trials only)",
            data.study.id
        );
    }
    Ok(lines)
}

fn curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &PlotData,
    metric: Option<&str>,
    scale: Scale,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let study = &data.study;
    let objective = study.objective.metric.as_str();
    let metric = metric.unwrap_or(objective);
    let lines = curve_lines(data, metric)?;
    let axis = value_axis(scale, metric, lines.iter().flat_map(|(_, c)| c))?;
    let lines: Vec<(u64, Points)> = lines
        .into_iter()
        .map(|(n, c)| {
            (
                n,
                c.into_iter().map(|(x, y)| (x, axis.to_axis(y))).collect(),
            )
        })
        .collect();
    let values: Vec<f64> = lines
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .collect();
    let (lo, hi) = robust_range(&values);
    let yr = padded(lo, hi);
    // Outliers are drawn at the axis edge, marked, and counted in the legend.
    let mut clipped: Vec<(f64, f64, bool)> = Vec::new();
    let lines: Vec<(u64, Points)> = lines
        .into_iter()
        .map(|(n, c)| {
            let c = c
                .into_iter()
                .map(|(x, y)| {
                    if y > hi {
                        clipped.push((x, yr.end, true));
                        (x, yr.end)
                    } else if y < lo {
                        clipped.push((x, yr.start, false));
                        (x, yr.start)
                    } else {
                        (x, y)
                    }
                })
                .collect();
            (n, c)
        })
        .collect();
    let points = lines.iter().flat_map(|(_, c)| c.iter());
    let (first, last) = points
        .clone()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let xr = first - 0.2..last + 0.2;
    // The legend's height grows with its entries (about 22 px each of ~500).
    let entries = lines.len() + usize::from(!clipped.is_empty());
    let legend_h = (entries as f64 * 22.0 + 12.0) / 500.0;
    let legend_at = quiet_corner(
        &points.copied().collect::<Vec<_>>(),
        &xr,
        &yr,
        0.25,
        legend_h.min(0.9),
    );
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "Learning curves: {metric}, the {} best trials of study {}",
                lines.len(),
                study.id
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(xr, yr.clone())
        .map_err(err)?;
    chart
        .configure_mesh()
        .y_labels(axis.labels(&yr))
        .disable_x_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .x_desc("epoch")
        .y_desc(axis.desc(metric))
        .y_label_formatter(&|y| axis.label(*y))
        .x_labels((last - first + 1.0).clamp(2.0, 20.0) as usize)
        .x_label_formatter(&whole)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (i, (number, line)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(format!("trial {number}"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    if !clipped.is_empty() {
        // A triangle pointing off the axis, its tip on the edge the value lies beyond.
        let mark = |at: (f64, f64), above: bool| {
            let dy = if above { 9 } else { -9 };
            EmptyElement::at(at) + Polygon::new(vec![(0, 0), (-5, dy), (5, dy)], BLACK.filled())
        };
        let n = clipped.len();
        chart
            .draw_series(clipped.iter().map(|&(x, y, above)| mark((x, y), above)))
            .map_err(err)?
            .label(format!(
                "{n} outlying {} at the edge (clipped)",
                if n == 1 { "value" } else { "values" }
            ))
            .legend(move |(x, y)| {
                EmptyElement::at((x + 10, y - 4))
                    + Polygon::new(vec![(0, 0), (-5, 9), (5, 9)], BLACK.filled())
            });
    }
    chart
        .configure_series_labels()
        .position(legend_at)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The confusion matrix and class names a built-in trainer reports with its final
/// metrics.
fn confusion_of(t: &Trial) -> Option<(Vec<Vec<u64>>, Vec<String>)> {
    let metrics = t.metrics.as_ref()?;
    let rows: Vec<Vec<u64>> =
        serde_json::from_value(metrics.get("confusion_matrix")?.clone()).ok()?;
    let n = rows.len();
    if n == 0 || rows.iter().any(|r| r.len() != n) {
        return None;
    }
    let names = metrics
        .get("class_names")
        .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
        .filter(|names| names.len() == n)
        .unwrap_or_else(|| (0..n).map(|i| i.to_string()).collect());
    Some((rows, names))
}

type Confusion<'a> = (&'a Trial, Vec<Vec<u64>>, Vec<String>);

fn confusion_data(data: &PlotData) -> Result<Confusion<'_>> {
    let study = &data.study;
    let best = data
        .best
        .as_ref()
        .ok_or_else(|| anyhow!("study {} has no completed trial", study.id))?;
    let (rows, names) = confusion_of(best).ok_or_else(|| {
        anyhow!(
            "trial {} of study {} has no confusion matrix (only built-in trainer studies report one)",
            best.number,
            study.id
        )
    })?;
    Ok((best, rows, names))
}

fn confusion<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, data: &PlotData) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let study = &data.study;
    let (best, rows, names) = confusion_data(data)?;
    let n = rows.len();
    let (plot, side) = root.split_horizontally(SIZE.0 - 120);
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            format!(
                "Confusion matrix: trial {} of study {} ({} {:.4})",
                best.number,
                study.id,
                study.objective.metric,
                best.value.unwrap_or(f64::NAN)
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(70)
        .y_label_area_size(100)
        .build_cartesian_2d(
            // Integer ranges are inclusive here: n segments.
            RangedCoordusize::from(0..n - 1).into_segmented(),
            RangedCoordusize::from(0..n - 1).into_segmented(),
        )
        .map_err(err)?;
    let label = |v: &SegmentValue<usize>, flip: bool| match v {
        SegmentValue::CenterOf(i) if *i < n => names[if flip { n - 1 - i } else { *i }].clone(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(n)
        .y_labels(n)
        .x_label_formatter(&|v| label(v, false))
        .y_label_formatter(&|v| label(v, true))
        .x_desc("predicted")
        .y_desc("true class")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    // Colour by the row's share (recall per class), so classes of any size compare.
    let shade = |share: f64| {
        let t = share.clamp(0.0, 1.0);
        let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
        RGBColor(mix(247.0, 8.0), mix(251.0, 48.0), mix(255.0, 107.0))
    };
    for (r, row) in rows.iter().enumerate() {
        let total = row.iter().sum::<u64>().max(1) as f64;
        let y = n - 1 - r;
        for (c, &count) in row.iter().enumerate() {
            let share = count as f64 / total;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(c), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(c + 1), SegmentValue::Exact(y + 1)),
                    ],
                    shade(share).filled(),
                )))
                .map_err(err)?;
            let ink = if share > 0.5 { WHITE } else { BLACK };
            let style = TextStyle::from(("sans-serif", 13).into_font())
                .color(&ink)
                .pos(Pos::new(HPos::Center, VPos::Center));
            chart
                .draw_series(std::iter::once(Text::new(
                    count.to_string(),
                    (SegmentValue::CenterOf(c), SegmentValue::CenterOf(y)),
                    style,
                )))
                .map_err(err)?;
        }
    }
    // A colour key: share of the true class.
    let key = side.margin(60, 80, 20, 30);
    let (w, h) = key.dim_in_pixel();
    let steps = 50;
    for i in 0..steps {
        let top = (h as i32) * i / steps;
        let bottom = (h as i32) * (i + 1) / steps;
        let share = 1.0 - f64::from(i) / f64::from(steps);
        key.draw(&Rectangle::new(
            [(0, top), (w as i32 / 2, bottom)],
            shade(share).filled(),
        ))
        .map_err(err)?;
    }
    for (share, at) in [(1.0, 0), (0.5, h as i32 / 2), (0.0, h as i32 - 12)] {
        key.draw(&Text::new(
            format!("{:.0}%", share * 100.0),
            (w as i32 / 2 + 6, at),
            ("sans-serif", 12),
        ))
        .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trial(number: u64, state: TrialState, value: Option<f64>, epochs: &[f64]) -> Trial {
        serde_json::from_value(json!({
            "id": number + 1, "study_id": 1, "number": number, "state": state, "params": {"x": 1},
            "value": value, "attempts": 1, "created_at": "2026-01-01T00:00:00Z",
            "metrics": {
                "val_accuracy": value,
                "confusion_matrix": (0..10).map(|r| (0..10).map(|c| if r == c { 90 } else { 1 + (r + c) % 3 }).collect::<Vec<u64>>()).collect::<Vec<_>>(),
                "class_names": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
            },
            "intermediate": epochs.iter().enumerate().map(|(i, v)| json!({
                "epoch": i + 1, "value": v, "metrics": {"val_accuracy": v, "loss": 1.0 - v},
                "reported_at": "2026-01-01T00:00:00Z"
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn data() -> PlotData {
        let study: Study = serde_json::from_value(json!({
            "id": 1, "name": "plots", "state": "completed", "objective": {"metric": "val_accuracy", "direction": "maximize"},
            "optimizer": "gp", "max_trials": 4,
            "counts": {"pending": 0, "running": 0, "completed": 3, "pruned": 1, "failed": 0, "total": 4},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let trials = vec![
            trial(0, TrialState::Completed, Some(0.81), &[0.7, 0.78, 0.81]),
            trial(1, TrialState::Pruned, Some(0.6), &[0.6]),
            trial(2, TrialState::Completed, Some(0.88), &[0.8, 0.86, 0.88]),
            trial(3, TrialState::Completed, Some(0.85), &[0.79, 0.84, 0.85]),
        ];
        PlotData {
            study,
            best: Some(trials[2].clone()),
            trials,
        }
    }

    /// Every kind, as SVG (well-formed XML with the drawn marks) and as PNG (a real
    /// image of the requested size).
    #[test]
    fn every_kind_draws_valid_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let data = data();
        for (kind, mark, at_least) in [
            (PlotKind::History, "<circle", 3),
            (PlotKind::Curves, "<polyline", 3),
            (PlotKind::Confusion, "<rect", 100),
        ] {
            let svg = dir.path().join(format!("{kind:?}.svg"));
            draw(&data, kind, None, Scale::Auto, &svg).unwrap();
            let text = std::fs::read_to_string(&svg).unwrap();
            assert!(
                text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
                "{kind:?}"
            );
            assert!(
                text.matches(mark).count() >= at_least,
                "{kind:?}: {} {mark}",
                text.matches(mark).count()
            );
            let png = dir.path().join(format!("{kind:?}.png"));
            draw(&data, kind, None, Scale::Auto, &png).unwrap();
            let bytes = std::fs::read(&png).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{kind:?}");
            // IHDR: width and height, big-endian, at bytes 16..24.
            let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
            let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
            assert_eq!((width, height), SIZE);
        }
        let text = std::fs::read_to_string(dir.path().join("Confusion.svg")).unwrap();
        assert!(
            text.contains("Ankle boot") && text.contains("\n90\n"),
            "class names and counts"
        );
        assert!(
            draw(
                &data,
                PlotKind::History,
                None,
                Scale::Auto,
                &dir.path().join("x.gif")
            )
            .is_err()
        );
    }

    #[test]
    fn missing_data_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = data();
        let out = dir.path().join("c.svg");
        let e = draw(&data, PlotKind::Curves, Some("auc"), Scale::Auto, &out).unwrap_err();
        assert!(format!("{e:#}").contains("reported `auc`"), "{e:#}");
        data.best.as_mut().unwrap().metrics = Some(json!({"val_accuracy": 0.9}));
        let e = draw(&data, PlotKind::Confusion, None, Scale::Auto, &out).unwrap_err();
        assert!(format!("{e:#}").contains("no confusion matrix"), "{e:#}");
        data.trials.clear();
        let e = draw(&data, PlotKind::History, None, Scale::Auto, &out).unwrap_err();
        assert!(format!("{e:#}").contains("no trial with a value"), "{e:#}");
    }

    /// Values over more than two decades go on a log axis by themselves; values in a
    /// narrow band stay linear.
    #[test]
    fn skewed_values_get_a_log_axis() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = data();
        let svg = dir.path().join("h.svg");
        draw(&data, PlotKind::History, None, Scale::Auto, &svg).unwrap();
        assert!(!std::fs::read_to_string(&svg).unwrap().contains("log scale"));
        for (t, v) in data.trials.iter_mut().zip([2.3, 0.5, 0.004, 0.02]) {
            t.value = Some(v);
        }
        draw(&data, PlotKind::History, None, Scale::Auto, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(
            text.contains("val_accuracy (log scale)"),
            "the axis says so"
        );
        assert!(
            text.contains("\n0.01\n") && text.contains("\n1\n"),
            "labels are values, not logs: {text}"
        );
        assert!(wants_log([0.01, 5.0].into_iter()));
        assert!(!wants_log([-1.0, 500.0].into_iter()));
    }

    /// `--log` puts the values on a log axis even where they span less than two
    /// decades, and is refused, saying why, for a value that is not positive (and for
    /// a confusion matrix, which has no value axis).
    #[test]
    fn log_is_asked_for_and_refused_for_non_positive_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = data();
        let svg = dir.path().join("h.svg");
        for kind in [PlotKind::History, PlotKind::Curves] {
            draw(&data, kind, None, Scale::Log, &svg).unwrap();
            let text = std::fs::read_to_string(&svg).unwrap();
            assert!(text.contains("val_accuracy (log scale)"), "{kind:?}");
        }
        let e = draw(&data, PlotKind::Confusion, None, Scale::Log, &svg).unwrap_err();
        assert!(
            format!("{e:#}").contains("not to a confusion matrix"),
            "{e:#}"
        );

        data.trials[0].value = Some(0.0);
        let _ = std::fs::remove_file(&svg);
        let e = draw(&data, PlotKind::History, None, Scale::Log, &svg).unwrap_err();
        assert!(
            format!("{e:#}").contains("--log needs positive values, and val_accuracy has 0"),
            "{e:#}"
        );
        assert!(!svg.exists(), "a refused plot leaves no file");
        // Curves read the per-epoch values: a negative one there is refused too.
        data.trials[2].intermediate[0].metrics["val_accuracy"] = json!(-0.5);
        let e = draw(&data, PlotKind::Curves, None, Scale::Log, &svg).unwrap_err();
        assert!(format!("{e:#}").contains("has -0.5"), "{e:#}");
        // Without --log the same data draws, on a linear axis.
        draw(&data, PlotKind::Curves, None, Scale::Auto, &svg).unwrap();
        assert!(!std::fs::read_to_string(&svg).unwrap().contains("log scale"));
    }

    /// One diverged epoch among the learning curves: the axis spans the others, the
    /// outlier is drawn at the edge with a mark, and the legend says how many were.
    #[test]
    fn one_outlier_does_not_flatten_the_learning_curves() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = data();
        data.trials = (0..10)
            .map(|n| {
                let base = 0.80 + 0.005 * n as f64;
                trial(
                    n,
                    TrialState::Completed,
                    Some(base + 0.04),
                    &[base, base + 0.02, base + 0.04],
                )
            })
            .collect();
        // Trial 3's first epoch diverged (think of a loss 1,000 times the others'; here
        // an accuracy far below them, on a linear axis).
        data.trials[3].intermediate[0].value = Some(-40.0);
        data.trials[3].intermediate[0].metrics["val_accuracy"] = json!(-40.0);
        let svg = dir.path().join("c.svg");
        draw(&data, PlotKind::Curves, None, Scale::Auto, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(
            text.contains("1 outlying value at the edge (clipped)"),
            "the legend says so: {text}"
        );
        // The y labels stay within the bulk's range (0.80 to 0.885), not down to -40.
        assert!(
            !text.contains("\n-40\n") && !text.contains("\n-20\n"),
            "{text}"
        );
        assert!(
            text.contains("\n0.84\n") || text.contains("\n0.85\n"),
            "{text}"
        );

        // The range rule on its own: the outlier is left off, the bulk kept whole.
        let mut values: Vec<f64> = (0..30).map(|i| 0.80 + 0.003 * f64::from(i)).collect();
        let (lo, hi) = robust_range(&values);
        assert_eq!((lo, hi), (0.80, values[29]), "no outlier: everything");
        values.push(1000.0);
        let (lo, hi) = robust_range(&values);
        assert!(lo == 0.80 && hi < 1.1, "{lo} {hi}");
        // Few values: all of them (quantiles of 7 values say nothing).
        assert_eq!(robust_range(&[1.0, 2.0, 1000.0]), (1.0, 1000.0));
    }

    /// The legend goes to the corner with the fewest points.
    #[test]
    fn the_legend_avoids_the_data() {
        let (x, y) = (0.0..10.0, 0.0..1.0);
        // Points rising from lower left to upper right (a maximized history): not
        // the upper right, where the best points are.
        let rising: Vec<_> = (0..10)
            .map(|i| (f64::from(i), f64::from(i) / 10.0))
            .collect();
        assert!(matches!(
            quiet_corner(&rising, &x, &y, 0.3, 0.3),
            SeriesLabelPosition::LowerRight
        ));
        // Everything low (a loss near 0): the legend goes up.
        let low: Vec<_> = (0..10).map(|i| (f64::from(i), 0.05)).collect();
        assert!(matches!(
            quiet_corner(&low, &x, &y, 0.3, 0.3),
            SeriesLabelPosition::UpperRight
        ));
    }
}
