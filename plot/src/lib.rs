//! PNG charts: the grouped bar chart of `peirce report` and the training curves of the
//! trainers.
//!
//! Drawn with `plotters` into an RGB buffer and encoded with `png` directly, with fixed
//! settings and no timestamp, so the same input gives the same bytes (charts live in
//! content-addressed trees). Text needs a TrueType font, read at run time from `PEIRCE_FONT`
//! or the usual Debian, Fedora and Arch paths, never through system font discovery; when none
//! is found the chart is still drawn, without any text, and [`Chart::warning`] says so. The
//! bytes therefore depend on the font file too: the same machine gives the same PNG.
//!
//! This module draws; it does not decide what to plot (`peirce report` builds the table).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The data cannot be charted (empty, mismatched lengths, non-finite values).
    #[error("Cannot chart this data: {0}")]
    BadInput(String),
    /// Drawing failed (a bug or a font problem).
    #[error("Drawing the chart failed: {0}")]
    Draw(String),
    /// Encoding the PNG failed.
    #[error("Encoding the PNG failed: {0}")]
    Encode(String),
    /// Writing the file failed.
    #[error("Cannot write the chart to `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A drawn chart: its PNG bytes, and a warning when it had to be drawn without text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// The PNG file's bytes.
    pub png: Vec<u8>,
    /// Set when no font was found and the chart has no text at all.
    pub warning: Option<String>,
}

impl Chart {
    /// Writes the PNG to `path` (through a temporary file and a rename, so a reader never
    /// sees half a file).
    pub fn write(&self, path: &Path) -> Result<(), PlotError> {
        let error = |source| PlotError::Write {
            path: path.to_path_buf(),
            source,
        };
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "chart.png".into());
        let temporary = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::write(&temporary, &self.png).map_err(error)?;
        std::fs::rename(&temporary, path).map_err(|source| {
            let _ = std::fs::remove_file(&temporary);
            error(source)
        })
    }
}

/// The environment variable naming a TrueType font file to draw text with.
pub const FONT_VARIABLE: &str = "PEIRCE_FONT";

/// Where fonts are looked for when `PEIRCE_FONT` is unset (or unusable), in order.
pub const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
];

/// The family name the loaded font is registered under with plotters.
const FONT_FAMILY: &str = "peirce-sans";
/// A family never registered: text styles of a chart drawn without a font use it, so any
/// text drawn by mistake fails loudly instead of silently needing a font.
const NO_FONT_FAMILY: &str = "peirce-no-font";

/// The font in use: its path, or why there is none. Loaded once per process.
fn font() -> &'static Result<PathBuf, String> {
    static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        let chosen = std::env::var_os(FONT_VARIABLE).filter(|path| !path.is_empty());
        if let Some(path) = &chosen {
            candidates.push(PathBuf::from(path));
        }
        candidates.extend(FONT_PATHS.iter().map(PathBuf::from));
        let mut problems = Vec::new();
        for path in candidates {
            match register(&path) {
                Ok(()) => {
                    if let (Some(_), Some(problem)) = (&chosen, problems.first()) {
                        tracing::warn!(
                            "{FONT_VARIABLE} is unusable ({problem}); charts use `{}`",
                            path.display()
                        );
                    }
                    return Ok(path);
                }
                Err(problem) => problems.push(problem),
            }
        }
        let reason = format!(
            "No font found, so the chart has no text (set {FONT_VARIABLE} to a .ttf file): {}",
            problems.join("; ")
        );
        // Returned with every chart (`Chart::warning`) for the caller to show.
        tracing::debug!("{reason}");
        Err(reason)
    })
}

/// Reads a font file and registers it with plotters under [`FONT_FAMILY`].
fn register(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|error| format!("`{}`: {error}", path.display()))?;
    // plotters keeps fonts for the life of the process; this runs at most a few times.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| format!("`{}` is not a TrueType or OpenType font", path.display()))
}

/// How text is drawn in one chart: with the loaded font, or not at all.
#[derive(Debug, Clone, Copy)]
struct Text {
    family: &'static str,
    enabled: bool,
}

impl Text {
    /// Text with the process's font when one is found, else none; and the warning to give.
    fn from_font() -> (Text, Option<String>) {
        match font() {
            Ok(_) => (Text::with_font(), None),
            Err(reason) => (Text::none(), Some(reason.clone())),
        }
    }

    fn with_font() -> Text {
        Text {
            family: FONT_FAMILY,
            enabled: true,
        }
    }

    fn none() -> Text {
        Text {
            family: NO_FONT_FAMILY,
            enabled: false,
        }
    }

    fn style(&self, size: f64) -> TextStyle<'static> {
        TextStyle::from((self.family, size).into_font()).color(&BLACK)
    }
}

/// Series colors (the Tableau 10 palette), repeated past ten series.
const COLORS: [RGBColor; 10] = [
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(225, 87, 89),
    RGBColor(118, 183, 178),
    RGBColor(89, 161, 79),
    RGBColor(237, 201, 72),
    RGBColor(176, 122, 161),
    RGBColor(255, 157, 167),
    RGBColor(156, 117, 95),
    RGBColor(186, 176, 172),
];

/// The color of series `index`.
fn color(index: usize) -> RGBColor {
    COLORS[index % COLORS.len()]
}

fn draw_error(error: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(error.to_string())
}

/// An RGB buffer of `width` x `height` pixels as PNG bytes, with fixed settings (no time,
/// no text chunks), so equal pixels give equal bytes.
fn encode_png(pixels: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Default);
    encoder.set_filter(png::FilterType::Sub);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::NonAdaptive);
    let mut writer = encoder
        .write_header()
        .map_err(|error| PlotError::Encode(error.to_string()))?;
    writer
        .write_image_data(pixels)
        .map_err(|error| PlotError::Encode(error.to_string()))?;
    writer
        .finish()
        .map_err(|error| PlotError::Encode(error.to_string()))?;
    Ok(bytes)
}

/// Draws onto a white `width` x `height` canvas with `draw`, then encodes it.
fn render(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), PlotError>,
) -> Result<Vec<u8>, PlotError> {
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        draw(&root)?;
        root.present().map_err(draw_error)?;
    }
    encode_png(&pixels, width, height)
}

/// A grouped bar chart: one group of bars per entry of `groups` (x axis), one bar per
/// series in each group, one color per series with a legend; values are percentages
/// (`None`: no bar). Written to `path` as PNG.
pub fn bar_chart(
    title: &str,
    groups: &[String],
    series: &[(String, Vec<Option<f64>>)],
    y_label: &str,
    path: &Path,
) -> Result<Chart, PlotError> {
    let chart = render_bar_chart(title, groups, series, y_label)?;
    chart.write(path)?;
    Ok(chart)
}

/// [`bar_chart`] without writing: the PNG bytes.
pub fn render_bar_chart(
    title: &str,
    groups: &[String],
    series: &[(String, Vec<Option<f64>>)],
    y_label: &str,
) -> Result<Chart, PlotError> {
    render_bar_chart_with_errors(title, groups, series, &[], y_label)
}

/// [`render_bar_chart`] with an error bar on each bar: `errors[s][g]` is the half-width of
/// series `s`'s interval at group `g` (a 95% confidence interval, say), drawn as a
/// whisker from `value - e` to `value + e`; `None`, or no entry for a series, draws none.
pub fn render_bar_chart_with_errors(
    title: &str,
    groups: &[String],
    series: &[(String, Vec<Option<f64>>)],
    errors: &[Vec<Option<f64>>],
    y_label: &str,
) -> Result<Chart, PlotError> {
    let (text, warning) = Text::from_font();
    let png = draw_bar_chart(title, groups, series, errors, y_label, text)?;
    Ok(Chart { png, warning })
}

/// The half-width of series `index`'s error bar at `group`, when it has a finite one.
fn error_at(errors: &[Vec<Option<f64>>], index: usize, group: usize) -> Option<f64> {
    errors
        .get(index)
        .and_then(|list| list.get(group).copied().flatten())
        .filter(|e| e.is_finite() && *e > 0.0)
}

fn check_bars(groups: &[String], series: &[(String, Vec<Option<f64>>)]) -> Result<(), PlotError> {
    if groups.is_empty() || series.is_empty() {
        return Err(PlotError::BadInput(format!(
            "a bar chart needs at least one group and one series, got {} groups and {} series",
            groups.len(),
            series.len()
        )));
    }
    for (label, values) in series {
        if values.len() != groups.len() {
            return Err(PlotError::BadInput(format!(
                "series `{label}` has {} values for {} groups",
                values.len(),
                groups.len()
            )));
        }
        for (group, value) in groups.iter().zip(values) {
            if let Some(value) = value {
                if !value.is_finite() {
                    return Err(PlotError::BadInput(format!(
                        "series `{label}` has the value {value} at `{group}`"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn draw_bar_chart(
    title: &str,
    groups: &[String],
    series: &[(String, Vec<Option<f64>>)],
    errors: &[Vec<Option<f64>>],
    y_label: &str,
    text: Text,
) -> Result<Vec<u8>, PlotError> {
    check_bars(groups, series)?;
    let longest_label = series
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    let legend_width = (48 + 8 * longest_label as u32).clamp(120, 320);
    let plot_width = (groups.len() as u32 * (40 + 24 * series.len() as u32)).clamp(560, 2400);
    let (width, height) = (plot_width + legend_width, 480);
    let highest = series
        .iter()
        .enumerate()
        .flat_map(|(index, (_, values))| {
            values.iter().enumerate().filter_map(move |(group, value)| {
                Some((*value)? + error_at(errors, index, group).unwrap_or(0.0))
            })
        })
        .fold(0.0f64, f64::max);
    // Headroom for the value labels above the bars, in steps of 10, at most 100.
    let top = ((highest * 1.12 / 10.0).ceil() * 10.0)
        .clamp(10.0, 100.0)
        .max(highest);
    let bottom = series
        .iter()
        .flat_map(|(_, values)| values.iter().flatten().copied())
        .fold(0.0f64, f64::min);

    render(width, height, |root| {
        let (plot_area, legend_area) = root.split_horizontally(plot_width);
        let mut builder = ChartBuilder::on(&plot_area);
        builder.margin(16);
        if text.enabled {
            builder
                .caption(title, text.style(22.0))
                .x_label_area_size(36)
                .y_label_area_size(56);
        } else {
            builder.x_label_area_size(8).y_label_area_size(8);
        }
        let mut chart = builder
            .build_cartesian_2d(GroupAxis(groups.len()), bottom..top)
            .map_err(draw_error)?;
        let group_name = |x: &f64| {
            let index = x.floor().max(0.0) as usize;
            groups.get(index).cloned().unwrap_or_default()
        };
        let mut mesh = chart.configure_mesh();
        mesh.disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .label_style(text.style(14.0))
            .axis_desc_style(text.style(14.0))
            .x_label_formatter(&group_name)
            .y_label_formatter(&|y| format!("{y:.0}"));
        if text.enabled {
            mesh.x_labels(groups.len()).y_labels(11).y_desc(y_label);
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(draw_error)?;

        let slot = 0.8 / series.len() as f64;
        // A value label fits above a bar when the bar is wide enough in pixels.
        let bar_pixels = plot_width as f64 * 0.8 / (groups.len() * series.len()) as f64;
        let value_labels = text.enabled && bar_pixels >= 24.0;
        for (index, (_, values)) in series.iter().enumerate() {
            let fill = color(index).filled();
            let bars = values.iter().enumerate().filter_map(|(group, value)| {
                let value = (*value)?;
                let left = group as f64 + 0.1 + index as f64 * slot;
                Some(Rectangle::new(
                    [(left, 0.0), (left + slot * 0.92, value)],
                    fill,
                ))
            });
            chart.draw_series(bars).map_err(draw_error)?;
            // Whiskers: the interval, with caps a third of the bar wide.
            let whiskers = values.iter().enumerate().filter_map(|(group, value)| {
                let (value, error) = ((*value)?, error_at(errors, index, group)?);
                let center = group as f64 + 0.1 + (index as f64 + 0.46) * slot;
                let cap = slot * 0.15;
                let (low, high) = (value - error, value + error);
                Some(PathElement::new(
                    vec![
                        (center - cap, low),
                        (center + cap, low),
                        (center, low),
                        (center, high),
                        (center - cap, high),
                        (center + cap, high),
                    ],
                    BLACK.stroke_width(1),
                ))
            });
            chart.draw_series(whiskers).map_err(draw_error)?;
            if value_labels {
                let style = text.style(11.0).pos(Pos::new(HPos::Center, VPos::Bottom));
                let labels = values.iter().enumerate().filter_map(|(group, value)| {
                    let value = (*value)?;
                    let center = group as f64 + 0.1 + (index as f64 + 0.46) * slot;
                    // Above the whisker's cap, clear of its line.
                    let above = match error_at(errors, index, group) {
                        Some(error) => value + error + (top - bottom) * 0.012,
                        None => value,
                    };
                    Some(plotters::element::Text::new(
                        format!("{value:.1}"),
                        (center, above.max(0.0)),
                        style.clone(),
                    ))
                });
                chart.draw_series(labels).map_err(draw_error)?;
            }
        }

        // The legend, in its own strip right of the plot so it never hides a bar.
        for (index, (label, _)) in series.iter().enumerate() {
            let y = 56 + index as i32 * 24;
            legend_area
                .draw(&Rectangle::new(
                    [(8, y), (24, y + 16)],
                    color(index).filled(),
                ))
                .map_err(draw_error)?;
            if text.enabled {
                legend_area
                    .draw(&plotters::element::Text::new(
                        label.clone(),
                        (32, y + 8),
                        text.style(14.0).pos(Pos::new(HPos::Left, VPos::Center)),
                    ))
                    .map_err(draw_error)?;
            }
        }
        Ok(())
    })
}

/// The x axis of a bar chart: group `g` spans `g..g + 1`, its label at the center.
struct GroupAxis(usize);

impl Ranged for GroupAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let fraction = value / self.0 as f64;
        limit.0 + (fraction * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.max_num_points() < self.0 {
            return Vec::new();
        }
        (0..self.0).map(|group| group as f64 + 0.5).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.0 as f64
    }
}

/// Fields of a metrics row that are coordinates, not curves.
const NOT_CURVES: [&str; 2] = ["step", "level"];
/// Curves drawn first, in this order, when present; the others follow by name.
const PREFERRED: [&str; 6] = [
    "reward",
    "accuracy",
    "kl",
    "entropy",
    "response_length",
    "rollout_tokens_per_second",
];

/// The curves of metrics rows: field name to its (step, value) points. A row's x is its
/// `step`, or its index when it has none; fields that are not numbers are skipped.
fn curves(rows: &[serde_json::Value]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut found: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for (index, row) in rows.iter().enumerate() {
        let Some(fields) = row.as_object() else {
            continue;
        };
        let x = fields
            .get("step")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(index as f64);
        for (name, value) in fields {
            if NOT_CURVES.contains(&name.as_str()) {
                continue;
            }
            if let Some(value) = value.as_f64().filter(|value| value.is_finite()) {
                found.entry(name.clone()).or_default().push((x, value));
            }
        }
    }
    let mut ordered = Vec::new();
    for name in PREFERRED {
        if let Some(points) = found.remove(name) {
            ordered.push((name.to_string(), points));
        }
    }
    ordered.extend(found);
    ordered
}

/// How a metric is shown: the factor its values are multiplied by and the unit of the
/// result, by field name: fractions (`accuracy`, `format`, `clipped`) in percent, as the
/// report shows accuracy; `None` for a field of no known unit.
fn unit(name: &str) -> (f64, Option<&'static str>) {
    match name {
        "accuracy" | "format" | "clipped" => (100.0, Some("%")),
        "reward" => (1.0, Some("points")),
        "kl" | "entropy" | "loss" => (1.0, Some("nats per token")),
        "response_length" | "tokens" => (1.0, Some("tokens")),
        "seconds" => (1.0, Some("s")),
        "grad_norm" => (1.0, Some("L2 norm")),
        _ if name.ends_with("tokens_per_second") => (1.0, Some("tokens/s")),
        _ => (1.0, None),
    }
}

/// The steps where the curriculum level changes, with the new level: `(x, level)` at the
/// first row of each level after the first.
fn level_changes(rows: &[serde_json::Value]) -> Vec<(f64, i64)> {
    let mut changes = Vec::new();
    let mut current = None;
    for (index, row) in rows.iter().enumerate() {
        let Some(level) = row.get("level").and_then(serde_json::Value::as_i64) else {
            continue;
        };
        let x = row
            .get("step")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(index as f64);
        if current.is_some_and(|previous| previous != level) {
            changes.push((x, level));
        }
        current = Some(level);
    }
    changes
}

/// The smoothing window for `count` points: a tenth of them, at least 2; `None` (no
/// smoothed line) below 10 points, where every point is drawn anyway.
fn smoothing_window(count: usize) -> Option<usize> {
    (count >= 10).then(|| (count / 10).max(2))
}

/// A trailing moving average over `window` points (fewer at the start), so a smoothed
/// value never uses a later step.
fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(index, &(x, y))| {
            sum += y;
            if index >= window {
                sum -= points[index - window].1;
            }
            (x, sum / (index + 1).min(window) as f64)
        })
        .collect()
}

/// A grid of small line charts, one per numeric field of the metrics rows (JSONL lines of a
/// trainer: `step` and fields such as `reward`, `accuracy`, `kl`), x = step, under `title`
/// (the node, say). Each panel has its unit (accuracy in percent), the raw series in a
/// light line and, from 10 steps on, its trailing moving average in a bold one; a change of
/// the rows' `level` is marked by a vertical line. Written to `path` as PNG.
pub fn training_curves(
    title: &str,
    rows: &[serde_json::Value],
    path: &Path,
) -> Result<Chart, PlotError> {
    let chart = render_training_curves(title, rows)?;
    chart.write(path)?;
    Ok(chart)
}

/// [`training_curves`] without writing: the PNG bytes.
pub fn render_training_curves(title: &str, rows: &[serde_json::Value]) -> Result<Chart, PlotError> {
    let (text, warning) = Text::from_font();
    let png = draw_training_curves(title, rows, text)?;
    Ok(Chart { png, warning })
}

/// `low..high` padded by 5% (and widened around a single value), so lines do not run along
/// the frame.
fn padded(low: f64, high: f64) -> std::ops::Range<f64> {
    let span = high - low;
    if span <= f64::EPSILON * high.abs().max(1.0) {
        let pad = (high.abs() * 0.1).max(1e-3);
        return (low - pad)..(high + pad);
    }
    (low - span * 0.05)..(high + span * 0.05)
}

/// A color halfway to white: the raw series beside its smoothed line.
fn light(color: RGBColor) -> RGBColor {
    let mix = |c: u8| ((u16::from(c) + 255) / 2) as u8;
    RGBColor(mix(color.0), mix(color.1), mix(color.2))
}

fn draw_training_curves(
    title: &str,
    rows: &[serde_json::Value],
    text: Text,
) -> Result<Vec<u8>, PlotError> {
    let curves = curves(rows);
    if curves.is_empty() {
        return Err(PlotError::BadInput(format!(
            "none of the {} metrics rows has a numeric field besides `step` and `level`",
            rows.len()
        )));
    }
    let levels = level_changes(rows);
    let columns = curves.len().min(3);
    let grid_rows = curves.len().div_ceil(columns);
    let (panel_width, panel_height) = (420u32, 280u32);
    let header = 36u32;
    let (width, height) = (
        panel_width * columns as u32,
        panel_height * grid_rows as u32 + header,
    );
    let window = smoothing_window(curves.iter().map(|(_, p)| p.len()).max().unwrap_or(0));
    render(width, height, |root| {
        let (top, body) = root.split_vertically(header);
        if text.enabled {
            let mut heading = title.to_string();
            if let Some(window) = window {
                heading.push_str(&format!(
                    "  (light: each step; bold: mean of the last {window})"
                ));
            }
            top.draw(&plotters::element::Text::new(
                heading,
                (12, header as i32 / 2),
                text.style(16.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(draw_error)?;
        }
        let panels = body.split_evenly((grid_rows, columns));
        for (index, ((name, points), panel)) in curves.iter().zip(&panels).enumerate() {
            let (scale, unit) = unit(name);
            let points: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x, y * scale)).collect();
            let (x_low, x_high) = points
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), (x, _)| {
                    (low.min(*x), high.max(*x))
                });
            let (y_low, y_high) = points
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), (_, y)| {
                    (low.min(*y), high.max(*y))
                });
            let caption = match unit {
                Some(unit) => format!("{name} ({unit})"),
                None => name.clone(),
            };
            let mut builder = ChartBuilder::on(panel);
            builder.margin(10);
            if text.enabled {
                builder
                    .caption(&caption, text.style(16.0))
                    .x_label_area_size(34)
                    .y_label_area_size(60);
            } else {
                builder.x_label_area_size(6).y_label_area_size(6);
            }
            let y_range = padded(y_low, y_high);
            let mut chart = builder
                .build_cartesian_2d(padded(x_low, x_high), y_range.clone())
                .map_err(draw_error)?;
            let mut mesh = chart.configure_mesh();
            mesh.light_line_style(WHITE)
                .bold_line_style(RGBColor(230, 230, 230))
                .label_style(text.style(11.0))
                .axis_desc_style(text.style(11.0))
                .x_label_formatter(&|x| format_tick(*x))
                .y_label_formatter(&|y| format_tick(*y));
            if text.enabled {
                mesh.x_labels(5).y_labels(5).x_desc("step");
                if let Some(unit) = unit {
                    mesh.y_desc(unit);
                }
            } else {
                mesh.x_labels(0).y_labels(0);
            }
            mesh.draw().map_err(draw_error)?;
            // Level changes: a grey line where the curriculum moves on, named at its top.
            for &(x, level) in &levels {
                let grey = RGBColor(150, 150, 150);
                chart
                    .draw_series(LineSeries::new(
                        [(x, y_range.start), (x, y_range.end)],
                        grey.stroke_width(1),
                    ))
                    .map_err(draw_error)?;
                if text.enabled {
                    chart
                        .draw_series(std::iter::once(plotters::element::Text::new(
                            format!(" level {level}"),
                            (x, y_range.end),
                            text.style(10.0).pos(Pos::new(HPos::Left, VPos::Top)),
                        )))
                        .map_err(draw_error)?;
                }
            }
            let line = color(index);
            let smoothed = window.filter(|_| points.len() >= 10);
            let raw_style = if smoothed.is_some() {
                light(line).stroke_width(1)
            } else {
                line.stroke_width(2)
            };
            chart
                .draw_series(LineSeries::new(points.iter().copied(), raw_style))
                .map_err(draw_error)?;
            if let Some(window) = smoothed {
                chart
                    .draw_series(LineSeries::new(
                        moving_average(&points, window),
                        line.stroke_width(2),
                    ))
                    .map_err(draw_error)?;
            }
            if points.len() <= 40 {
                chart
                    .draw_series(
                        points
                            .iter()
                            .map(|point| Circle::new(*point, 2, line.filled())),
                    )
                    .map_err(draw_error)?;
            }
        }
        Ok(())
    })
}

/// A y tick: compact, with more decimals for small magnitudes.
fn format_tick(value: f64) -> String {
    let magnitude = value.abs();
    if value.fract() == 0.0 || magnitude >= 1000.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 0.1 {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{value:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn groups() -> Vec<String> {
        ["deduction", "induction", "abduction", "Average"]
            .map(String::from)
            .to_vec()
    }

    fn series() -> Vec<(String, Vec<Option<f64>>)> {
        vec![
            (
                "start".into(),
                vec![Some(12.5), Some(30.0), Some(4.0), Some(15.5)],
            ),
            (
                "merged".into(),
                vec![Some(41.0), None, Some(22.5), Some(31.8)],
            ),
        ]
    }

    /// Decodes a PNG: (width, height, RGB pixels).
    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().expect("a valid PNG header");
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).expect("a valid PNG image");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        pixels.truncate(info.buffer_size());
        (info.width, info.height, pixels)
    }

    fn count_color(pixels: &[u8], rgb: RGBColor) -> usize {
        pixels
            .chunks_exact(3)
            .filter(|pixel| pixel == &[rgb.0, rgb.1, rgb.2])
            .count()
    }

    /// Pixels that are neither white nor a series color: text, axes and grid lines.
    fn ink(pixels: &[u8], series: usize) -> usize {
        pixels
            .chunks_exact(3)
            .filter(|pixel| {
                *pixel != [255, 255, 255]
                    && !(0..series).any(|i| {
                        let c = color(i);
                        *pixel == [c.0, c.1, c.2]
                    })
            })
            .count()
    }

    #[test]
    fn error_bars_are_drawn_where_given_and_nowhere_else() {
        let black = |errors: &[Vec<Option<f64>>]| {
            let png = draw_bar_chart("t", &groups(), &series(), errors, "%", Text::none()).unwrap();
            let (_, _, pixels) = decode(&png);
            count_color(&pixels, BLACK)
        };
        let none = black(&[]);
        let one = black(&[vec![Some(5.0), None, None]]);
        let all = black(&[vec![Some(5.0); 3], vec![Some(5.0); 3]]);
        assert!(one > none, "{one} <= {none}");
        assert!(all > one, "{all} <= {one}");
        // A zero or non-finite half-width draws nothing.
        assert_eq!(black(&[vec![Some(0.0), Some(f64::NAN), None]]), none);
    }

    #[test]
    fn bar_chart_draws_one_color_per_series() {
        let png_bytes = draw_bar_chart("t", &groups(), &series(), &[], "%", Text::none()).unwrap();
        let (width, height, pixels) = decode(&png_bytes);
        assert!(width >= 560 && height == 480, "{width}x{height}");
        let first = count_color(&pixels, color(0));
        let second = count_color(&pixels, color(1));
        assert!(first > 1000, "series 0 has {first} pixels");
        assert!(second > 1000, "series 1 has {second} pixels");
        // Series 0's bars sum to 62 points, series 1's to 95.3: bar area follows the values.
        assert!(second > first, "{second} <= {first}");
    }

    #[test]
    fn bar_chart_is_deterministic() {
        let (text, _) = Text::from_font();
        let first = draw_bar_chart("Accuracy", &groups(), &series(), &[], "%", text).unwrap();
        let second = draw_bar_chart("Accuracy", &groups(), &series(), &[], "%", text).unwrap();
        assert_eq!(first, second);
        let other = vec![(
            "start".into(),
            vec![Some(13.0), Some(30.0), Some(4.0), None],
        )];
        let changed = draw_bar_chart("Accuracy", &groups(), &other, &[], "%", text).unwrap();
        assert_ne!(first, changed);
    }

    #[test]
    fn without_a_font_no_text_is_drawn() {
        // The no-font family is never registered: any text drawn would fail the render.
        let titled =
            draw_bar_chart("One title", &groups(), &series(), &[], "%", Text::none()).unwrap();
        let other =
            draw_bar_chart("Another", &groups(), &series(), &[], "acc", Text::none()).unwrap();
        assert_eq!(titled, other, "the title or axis label was drawn");
        let rows = [
            json!({"step": 0, "reward": 0.1}),
            json!({"step": 1, "reward": 0.4}),
        ];
        draw_training_curves("t", &rows, Text::none()).unwrap();
    }

    #[test]
    fn with_a_font_text_is_drawn() {
        if font().is_err() {
            eprintln!("skipped: no font on this machine ({:?})", font());
            return;
        }
        let plain =
            draw_bar_chart("Accuracy", &groups(), &series(), &[], "%", Text::none()).unwrap();
        let texted = draw_bar_chart(
            "Accuracy",
            &groups(),
            &series(),
            &[],
            "%",
            Text::with_font(),
        )
        .unwrap();
        let (_, _, plain) = decode(&plain);
        let (_, _, texted) = decode(&texted);
        // Labels, title, legend text and value labels add ink beyond axes and grid lines.
        assert!(
            ink(&texted, 2) > ink(&plain, 2) + 2000,
            "text adds too little ink: {} vs {}",
            ink(&texted, 2),
            ink(&plain, 2)
        );
        let chart = render_bar_chart("Accuracy", &groups(), &series(), "%").unwrap();
        assert_eq!(chart.warning, None);
    }

    #[test]
    fn bad_bar_data_is_rejected() {
        let short = vec![("start".to_string(), vec![Some(1.0)])];
        let error = draw_bar_chart("t", &groups(), &short, &[], "%", Text::none()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`start` has 1 values for 4 groups"),
            "{error}"
        );
        let nan = vec![("x".to_string(), vec![Some(f64::NAN), None, None, None])];
        let error = draw_bar_chart("t", &groups(), &nan, &[], "%", Text::none()).unwrap_err();
        assert!(error.to_string().contains("`deduction`"), "{error}");
        assert!(draw_bar_chart("t", &[], &[], &[], "%", Text::none()).is_err());
        let empty: Vec<(String, Vec<Option<f64>>)> =
            vec![("none".into(), vec![None, None, None, None])];
        draw_bar_chart("t", &groups(), &empty, &[], "%", Text::none()).unwrap();
    }

    fn metrics_rows() -> Vec<serde_json::Value> {
        (0..30)
            .map(|step| {
                let t = step as f64;
                json!({
                    "step": step,
                    "level": 1 + step / 10,
                    "reward": -0.5 + t / 30.0,
                    "accuracy": t / 40.0,
                    "kl": 0.001 * t,
                    "entropy": 2.0 - t / 30.0,
                    "response_length": 80.0 - t,
                    "rollout_tokens_per_second": 1500.0,
                    "phase": "train",
                })
            })
            .collect()
    }

    #[test]
    fn curves_take_numeric_fields_except_step_and_level() {
        let found = curves(&metrics_rows());
        let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, PREFERRED);
        let (_, reward) = &found[0];
        assert_eq!(reward.len(), 30);
        assert_eq!(reward[3], (3.0, -0.4));
        let extra = curves(&[json!({"zeta": 1, "alpha": 2.5, "reward": 0}), json!("junk")]);
        let names: Vec<&str> = extra.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["reward", "alpha", "zeta"]);
        assert_eq!(extra[1].1, [(0.0, 2.5)], "no step: the row index is x");
    }

    #[test]
    fn training_curves_draw_a_grid_deterministically() {
        let (text, _) = Text::from_font();
        let first = draw_training_curves("align-deduction", &metrics_rows(), text).unwrap();
        let second = draw_training_curves("align-deduction", &metrics_rows(), text).unwrap();
        assert_eq!(first, second);
        let (width, height, pixels) = decode(&first);
        // Six curves: a grid of 3 x 2 panels under the title's strip.
        assert_eq!((width, height), (3 * 420, 2 * 280 + 36));
        for index in 0..6 {
            assert!(
                count_color(&pixels, color(index)) > 50,
                "curve {index} is missing"
            );
        }
        // A constant curve and a single point still draw.
        draw_training_curves("t", &[json!({"step": 5, "reward": 1.0})], text).unwrap();
    }

    #[test]
    fn curves_show_units_levels_and_a_smoothed_line() {
        assert_eq!(unit("accuracy"), (100.0, Some("%")));
        assert_eq!(unit("rollout_tokens_per_second"), (1.0, Some("tokens/s")));
        assert_eq!(unit("mystery"), (1.0, None));
        // metrics_rows: level 1 for steps 0-9, 2 for 10-19, 3 for 20-29.
        assert_eq!(level_changes(&metrics_rows()), [(10.0, 2), (20.0, 3)]);
        assert!(level_changes(&[json!({"step": 1, "reward": 1})]).is_empty());
        assert_eq!(smoothing_window(9), None);
        assert_eq!(smoothing_window(30), Some(3));
        assert_eq!(smoothing_window(400), Some(40));
        let points = [(1.0, 1.0), (2.0, 3.0), (3.0, 5.0), (4.0, 7.0)];
        assert_eq!(
            moving_average(&points, 2),
            [(1.0, 1.0), (2.0, 2.0), (3.0, 4.0), (4.0, 6.0)]
        );
        // The accuracy panel is in percent: the chart changes when only the scale would.
        let grey = RGBColor(150, 150, 150);
        let png = draw_training_curves("t", &metrics_rows(), Text::none()).unwrap();
        let (_, _, pixels) = decode(&png);
        assert!(count_color(&pixels, grey) > 100, "no level lines");
        assert!(count_color(&pixels, light(color(0))) > 50, "no raw series");
        let flat: Vec<_> = metrics_rows()
            .into_iter()
            .map(|mut row| {
                row.as_object_mut().unwrap().remove("level");
                row
            })
            .collect();
        let png = draw_training_curves("t", &flat, Text::none()).unwrap();
        let (_, _, pixels) = decode(&png);
        assert_eq!(count_color(&pixels, grey), 0, "level lines without levels");
    }

    #[test]
    fn training_curves_need_a_numeric_field() {
        let error = render_training_curves("t", &[json!({"step": 1, "phase": "x"})]).unwrap_err();
        assert!(matches!(error, PlotError::BadInput(_)), "{error}");
        assert!(render_training_curves("t", &[]).is_err());
    }

    #[test]
    fn charts_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.png");
        let chart = bar_chart("Accuracy", &groups(), &series(), "%", &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), chart.png);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left behind");
        let curves_path = dir.path().join("curves.png");
        training_curves("t", &metrics_rows(), &curves_path).unwrap();
        assert!(std::fs::metadata(&curves_path).unwrap().len() > 1000);
        let missing = dir.path().join("no/such/folder/x.png");
        let error = bar_chart("t", &groups(), &series(), "%", &missing).unwrap_err();
        assert!(error.to_string().contains("no/such/folder"), "{error}");
    }
}
