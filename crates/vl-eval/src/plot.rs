//! Paper-style charts as SVG and PNG, in plain Rust: few-shot curves (accuracy against shots per
//! method, the CoOp paper's Figure 3) as a [`LineChart`], and base / novel / HM accuracies per
//! method as a grouped [`BarChart`]. Both formats are drawn from one layout: a chart is first laid
//! out as a list of primitives in pixel coordinates (polylines, rectangles, markers, text) with
//! "nice" ticks, gridlines, a legend, a title and axis labels, and that list is then written as
//! SVG 1.1 text or rasterised onto an [`image::RgbImage`] by a tiny anti-aliased rasteriser with
//! the 8x8 bitmap font of `font8x8`. Output is deterministic, 720x480, with the matplotlib tab10
//! palette. Non-finite values are skipped, an empty chart says "no data", and input that cannot
//! be drawn (x <= 0 on a log2 axis, values of the wrong shape, a range that overflows) is an
//! [`Error::Input`]. [`write_svg_png`] writes `<stem>.svg` and `<stem>.png` atomically.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::{ImageEncoder as _, RgbImage};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One line of a line chart: (x, mean, std) points; std drawn as error bars.
///
/// Points whose x or mean is not finite are skipped; a std that is not finite or is zero draws
/// no error bar (a negative std is taken by its magnitude). Points are joined in order of x.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The legend entry, e.g. `"CoOp (M=16)"`.
    pub name: String,
    /// `(x, mean, std)`, e.g. `(16.0, 72.5, 0.3)` for 16 shots.
    pub points: Vec<(f64, f64, f64)>,
}

/// Few-shot curves: accuracy against shots per method (the CoOp paper's Figure 3 style).
///
/// The y axis spans the data (means ± std) with a small margin and round ticks; with `log2_x`
/// the x axis is logarithmic with a tick at every x of the data (1, 2, 4, 8, 16 shots), else it
/// is linear with round ticks. Series are coloured and marked in order (tab10 colours; circle,
/// square, triangle, diamond markers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LineChart {
    /// Drawn centred above the plot; may be empty.
    pub title: String,
    /// Drawn under the x axis; may be empty.
    pub x_label: String,
    /// Drawn rotated left of the y axis; may be empty.
    pub y_label: String,
    /// The lines, in legend order.
    pub series: Vec<Series>,
    /// A log2 x axis (all finite x must then be > 0).
    pub log2_x: bool,
}

/// Grouped bars, e.g. base / novel / HM per method. `values[group][bar] = Some((mean, std))`
/// or `None` (missing, e.g. a linear probe has no novel accuracy).
///
/// Groups run along x with their names under them (truncated or rotated when long), bars are
/// coloured by bar index with a legend of bar names, std is drawn as a whisker. The y axis starts
/// at 0 (or below, for negative values) and ends at a round value at least the largest mean +
/// std: 100 when that is in (50, 100], as for accuracies in percent. A missing or non-finite
/// value leaves a gap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BarChart {
    /// Drawn centred above the plot; may be empty.
    pub title: String,
    /// Drawn rotated left of the y axis; may be empty.
    pub y_label: String,
    /// Group names along x, e.g. method names.
    pub groups: Vec<String>,
    /// Bar names within a group, e.g. `["Base", "Novel", "HM"]`; the legend.
    pub bars: Vec<String>,
    /// `values[group][bar]`: `values.len() == groups.len()`, every row `bars.len()` long.
    pub values: Vec<Vec<Option<(f64, f64)>>>,
}

impl LineChart {
    /// The chart as a standalone SVG 1.1 document.
    ///
    /// # Errors
    /// [`Error::Input`] if a finite x is <= 0 with `log2_x`, or the values span more than `f64`
    /// holds.
    pub fn to_svg(&self) -> Result<String> {
        Ok(render_svg(&self.layout()?))
    }

    /// The chart as a 720x480 RGB image, the same drawing as [`LineChart::to_svg`].
    ///
    /// # Errors
    /// As [`LineChart::to_svg`].
    pub fn to_png(&self) -> Result<RgbImage> {
        Ok(render_png(&self.layout()?))
    }
}

impl BarChart {
    /// The chart as a standalone SVG 1.1 document.
    ///
    /// # Errors
    /// [`Error::Input`] if `values` is not `groups.len()` rows of `bars.len()`, or the values
    /// span more than `f64` holds.
    pub fn to_svg(&self) -> Result<String> {
        Ok(render_svg(&self.layout()?))
    }

    /// The chart as a 720x480 RGB image, the same drawing as [`BarChart::to_svg`].
    ///
    /// # Errors
    /// As [`BarChart::to_svg`].
    pub fn to_png(&self) -> Result<RgbImage> {
        Ok(render_png(&self.layout()?))
    }
}

/// Writes `<stem>.svg` and `<stem>.png` atomically (the PNG is encoded in memory, then both go
/// through [`crate::write_atomic`]).
///
/// The extensions are appended, so a stem such as `fig/few_shot.v2` keeps its dots.
///
/// # Errors
/// [`Error::Image`] if the PNG cannot be encoded, [`Error::Io`] if a file cannot be written.
pub fn write_svg_png(stem: &Path, svg: &str, png: &RgbImage) -> Result<()> {
    let with_ext = |ext: &str| {
        let mut name = stem.as_os_str().to_owned();
        name.push(ext);
        PathBuf::from(name)
    };
    let png_path = with_ext(".png");
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(
            png.as_raw(),
            png.width(),
            png.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|source| Error::Image {
            path: png_path.clone(),
            source,
        })?;
    crate::write_atomic(&with_ext(".svg"), svg.as_bytes())?;
    crate::write_atomic(&png_path, &bytes)
}

// ---------------------------------------------------------------------------------------------
// Layout: charts as primitives in pixel coordinates.
// ---------------------------------------------------------------------------------------------

const WIDTH: u32 = 720;
const HEIGHT: u32 = 480;
/// matplotlib's tab10.
const PALETTE: [[u8; 3]; 10] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0x7f, 0x7f, 0x7f],
    [0xbc, 0xbd, 0x22],
    [0x17, 0xbe, 0xcf],
];
const SHAPES: [Shape; 4] = [
    Shape::Circle,
    Shape::Square,
    Shape::Triangle,
    Shape::Diamond,
];
const WHITE: [u8; 3] = [0xff, 0xff, 0xff];
const INK: [u8; 3] = [0x22, 0x22, 0x22];
const AXIS: [u8; 3] = [0x44, 0x44, 0x44];
const GRID: [u8; 3] = [0xdd, 0xdd, 0xdd];
const MUTED: [u8; 3] = [0x88, 0x88, 0x88];

/// Outer padding.
const PAD: f64 = 12.0;
/// Tick length, outside the plot area.
const TICK: f64 = 5.0;
/// Gap between a tick and its label, or a legend key and its name.
const GAP: f64 = 6.0;
/// Height of small text (one 8x8 glyph).
const SMALL_H: f64 = 8.0;
/// Height of a legend row.
const LEGEND_ROW: f64 = 18.0;
/// Width of a legend key.
const LEGEND_KEY: f64 = 24.0;
/// Longest legend name before truncation.
const LEGEND_CHARS: usize = 22;
/// Longest y tick label before truncation.
const Y_TICK_CHARS: usize = 12;
/// Longest rotated group name before truncation.
const ROTATED_CHARS: usize = 18;
/// Line width of series.
const LINE_W: f64 = 2.0;
/// Line width of error bars and whiskers.
const ERR_W: f64 = 1.5;
/// Marker radius.
const MARKER_R: f64 = 4.0;

/// Text size: PNG glyph scale and SVG font size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    /// 8x8 glyphs in the PNG.
    Small,
    /// 16x16 glyphs in the PNG.
    Large,
}

impl Size {
    fn scale(self) -> u32 {
        match self {
            Self::Small => 1,
            Self::Large => 2,
        }
    }

    /// Advance per character in the PNG, an upper bound for sans-serif in the SVG.
    fn char_w(self) -> f64 {
        8.0 * f64::from(self.scale())
    }

    fn svg_font_px(self) -> f64 {
        match self {
            Self::Small => 11.0,
            Self::Large => 18.0,
        }
    }
}

/// Which end of a text sits at its anchor point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// Marker shapes, cycled over series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
}

/// One drawing primitive; coordinates in pixels, y down.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// An open polyline of at least two points, round caps and joins.
    Path {
        points: Vec<(f64, f64)>,
        color: [u8; 3],
        width: f64,
    },
    /// A filled axis-aligned rectangle, `x0 <= x1`, `y0 <= y1`.
    Rect {
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        color: [u8; 3],
    },
    /// A filled marker centred at `(x, y)`.
    Marker {
        x: f64,
        y: f64,
        shape: Shape,
        color: [u8; 3],
    },
    /// One line of text, vertically centred on `y`; rotated text reads bottom to top and is
    /// horizontally centred on `x`, its anchor then along y.
    Text {
        x: f64,
        y: f64,
        text: String,
        size: Size,
        anchor: Anchor,
        rotated: bool,
        color: [u8; 3],
    },
}

/// A laid-out chart: what both renderers draw.
#[derive(Debug, Clone, PartialEq)]
struct Scene {
    items: Vec<Item>,
    /// The plot area `(x0, y0, x1, y1)`.
    plot: (f64, f64, f64, f64),
}

impl Scene {
    /// Adds a polyline if it has at least two points.
    fn path(&mut self, points: Vec<(f64, f64)>, color: [u8; 3], width: f64) {
        if points.len() >= 2 {
            self.items.push(Item::Path {
                points,
                color,
                width,
            });
        }
    }

    /// Adds unrotated ink text unless it is empty.
    fn text(&mut self, x: f64, y: f64, text: String, size: Size, anchor: Anchor) {
        if !text.is_empty() {
            self.items.push(Item::Text {
                x,
                y,
                text,
                size,
                anchor,
                rotated: false,
                color: INK,
            });
        }
    }
}

/// Pixel-centre coordinate for crisp one-pixel lines.
fn crisp(v: f64) -> f64 {
    v.floor() + 0.5
}

/// Control characters (not allowed in XML, not drawable) become spaces.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Width of `text` at `size` as laid out (the PNG's exact width).
fn text_w(text: &str, size: Size) -> f64 {
    text.chars().count() as f64 * size.char_w()
}

/// `text` cleaned and, if wider than `max_w`, cut with a trailing "...".
fn fit(text: &str, max_w: f64, size: Size) -> String {
    let text = clean(text.trim());
    let max_chars = (max_w / size.char_w()).floor().max(0.0) as usize;
    if text.chars().count() <= max_chars {
        return text;
    }
    if max_chars <= 3 {
        return text.chars().take(max_chars).collect();
    }
    let mut cut: String = text.chars().take(max_chars - 3).collect();
    cut.truncate(cut.trim_end().len());
    cut + "..."
}

/// A step of 1, 2, 2.5 or 5 times a power of ten giving about `target` intervals over `span`.
fn nice_step(span: f64, target: f64) -> Option<f64> {
    if !(span.is_finite() && span > 0.0) {
        return None;
    }
    let raw = span / target;
    let mag = 10f64.powf(raw.log10().floor());
    if !(mag.is_finite() && mag > 0.0) {
        return None;
    }
    // The candidate whose number of intervals is closest to the target, the larger on ties.
    let step = [10.0, 5.0, 2.5, 2.0, 1.0]
        .into_iter()
        .map(|m| m * mag)
        .min_by(|a, b| {
            let off = |s: f64| (span / s - target).abs();
            off(*a).total_cmp(&off(*b))
        })
        .unwrap_or(mag);
    (step.is_finite() && step > 0.0).then_some(step)
}

/// The multiples of `step` in `[lo, hi]` (at most 101 of them, else none).
fn multiples(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step - 1e-9).ceil();
    let last = (hi / step + 1e-9).floor();
    if !(first.is_finite() && last.is_finite()) || last < first || last - first > 100.0 {
        return Vec::new();
    }
    let n = (last - first) as usize;
    (0..=n)
        .map(|i| {
            let v = (first + i as f64) * step;
            if v.abs() < step * 1e-9 { 0.0 } else { v }
        })
        .collect()
}

/// Decimals that print every multiple of `step` exactly (at most 6).
fn decimals(step: f64) -> usize {
    (0..=6)
        .find(|&d| {
            let s = step * 10f64.powi(d as i32);
            (s - s.round()).abs() < 1e-6 * s.max(1.0)
        })
        .unwrap_or(6)
}

/// `v` with `decimals` decimals, never "-0".
fn fmt_fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// Round ticks in `[lo, hi]` with their labels.
fn ticks(lo: f64, hi: f64, target: f64) -> Vec<(f64, String)> {
    nice_step(hi - lo, target).map_or_else(Vec::new, |step| ticks_every(lo, hi, step))
}

/// The multiples of `step` in `[lo, hi]` with their labels.
fn ticks_every(lo: f64, hi: f64, step: f64) -> Vec<(f64, String)> {
    let d = decimals(step);
    multiples(lo, hi, step)
        .into_iter()
        .map(|v| (v, fmt_fixed(v, d)))
        .collect()
}

/// A data value as a short label: integers without decimals, else up to four decimals.
fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return fmt_fixed(v, 0);
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        format!("{v:.2e}")
    } else {
        s.to_string()
    }
}

/// `[min, max]` widened by `frac` of its span on both sides (by 5% of the value, or 0.5, when
/// the span is zero).
fn padded(what: &str, min: f64, max: f64, frac: f64) -> Result<(f64, f64)> {
    let pad = if max > min {
        (max - min) * frac
    } else if min != 0.0 {
        min.abs() * 0.05
    } else {
        0.5
    };
    let (lo, hi) = (min - pad, max + pad);
    if (hi - lo).is_finite() && hi > lo {
        Ok((lo, hi))
    } else {
        Err(Error::input(
            what,
            "a range of values that f64 can span",
            format!("[{min}, {max}]"),
        ))
    }
}

/// What a legend entry's key looks like.
#[derive(Debug, Clone, Copy)]
enum Key {
    Line(Shape),
    Box,
}

/// The frame shared by both charts: margins, title, y axis, legend, x label.
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    ylo: f64,
    yhi: f64,
}

impl Frame {
    /// Pixel y of data value `v`.
    fn sy(&self, v: f64) -> f64 {
        self.y1 - (v - self.ylo) / (self.yhi - self.ylo) * (self.y1 - self.y0)
    }
}

/// Left and right edges of the plot area and the fitted y tick labels and legend names.
struct Columns {
    x0: f64,
    x1: f64,
    y_ticks: Vec<(f64, String)>,
    legend: Vec<String>,
}

/// Lays out the horizontal margins: y label, y tick labels, plot area, legend.
fn columns(y_ticks: Vec<(f64, String)>, y_label: &str, legend: &[String]) -> Columns {
    let y_ticks: Vec<(f64, String)> = y_ticks
        .into_iter()
        .map(|(v, s)| (v, fit(&s, Y_TICK_CHARS as f64 * 8.0, Size::Small)))
        .collect();
    let tick_w = y_ticks
        .iter()
        .map(|(_, s)| text_w(s, Size::Small))
        .fold(0.0, f64::max);
    let label_w = if clean(y_label.trim()).is_empty() {
        0.0
    } else {
        SMALL_H + 10.0
    };
    let left = PAD + label_w + tick_w + GAP + TICK;
    let legend: Vec<String> = legend
        .iter()
        .map(|s| fit(s, LEGEND_CHARS as f64 * 8.0, Size::Small))
        .collect();
    let right = if legend.is_empty() {
        2.0 * PAD
    } else {
        let names_w = legend
            .iter()
            .map(|s| text_w(s, Size::Small))
            .fold(0.0, f64::max);
        2.0 * GAP + LEGEND_KEY + GAP + names_w + PAD
    };
    Columns {
        x0: crisp(left),
        x1: crisp(f64::from(WIDTH) - right),
        y_ticks,
        legend,
    }
}

/// Top and bottom of the plot area given the height of the x tick labels.
fn rows(title: &str, x_label: &str, x_ticks_h: f64) -> (f64, f64) {
    let top = if clean(title.trim()).is_empty() {
        2.0 * PAD
    } else {
        PAD + 16.0 + PAD
    };
    let label_h = if clean(x_label.trim()).is_empty() {
        0.0
    } else {
        10.0 + SMALL_H
    };
    let bottom = TICK + GAP + x_ticks_h + label_h + PAD;
    (crisp(top), crisp(f64::from(HEIGHT) - bottom))
}

/// Title, y gridlines, ticks and labels, x label and legend; the plot frame is drawn by
/// [`frame_box`] after the data's underlay.
fn chrome(
    scene: &mut Scene,
    f: &Frame,
    cols: &Columns,
    title: &str,
    x_label: &str,
    y_label: &str,
    keys: &[Key],
) {
    let w = f64::from(WIDTH);
    let h = f64::from(HEIGHT);
    let title = clean(title.trim());
    if !title.is_empty() {
        let (text, size) = if text_w(&title, Size::Large) <= w - 2.0 * PAD {
            (title, Size::Large)
        } else {
            (fit(&title, w - 2.0 * PAD, Size::Small), Size::Small)
        };
        scene.text(w / 2.0, PAD + 8.0, text, size, Anchor::Middle);
    }
    for (v, label) in &cols.y_ticks {
        let y = crisp(f.sy(*v));
        scene.path(vec![(f.x0, y), (f.x1, y)], GRID, 1.0);
        scene.path(vec![(f.x0 - TICK, y), (f.x0, y)], AXIS, 1.0);
        scene.text(
            f.x0 - TICK - GAP,
            y,
            label.clone(),
            Size::Small,
            Anchor::End,
        );
    }
    let y_label = fit(y_label, f.y1 - f.y0, Size::Small);
    if !y_label.is_empty() {
        scene.items.push(Item::Text {
            x: PAD + SMALL_H / 2.0,
            y: (f.y0 + f.y1) / 2.0,
            text: y_label,
            size: Size::Small,
            anchor: Anchor::Middle,
            rotated: true,
            color: INK,
        });
    }
    let x_label = fit(x_label, w - 2.0 * PAD, Size::Small);
    scene.text(
        (f.x0 + f.x1) / 2.0,
        h - PAD - SMALL_H / 2.0,
        x_label,
        Size::Small,
        Anchor::Middle,
    );
    // Legend, right of the plot area, as many rows as fit.
    let max_rows = (((f.y1 - f.y0) / LEGEND_ROW).floor() as usize).max(1);
    let n = cols.legend.len();
    let shown = if n > max_rows { max_rows - 1 } else { n };
    let lx = f.x1 + 2.0 * GAP;
    for (i, (name, key)) in cols.legend.iter().zip(keys).take(shown).enumerate() {
        let cy = f.y0 + LEGEND_ROW / 2.0 + i as f64 * LEGEND_ROW;
        let color = PALETTE[i % PALETTE.len()];
        match *key {
            Key::Line(shape) => {
                scene.path(vec![(lx, cy), (lx + LEGEND_KEY, cy)], color, LINE_W);
                scene.items.push(Item::Marker {
                    x: lx + LEGEND_KEY / 2.0,
                    y: cy,
                    shape,
                    color,
                });
            }
            Key::Box => scene.items.push(Item::Rect {
                x0: (lx + LEGEND_KEY / 2.0 - 6.0).round(),
                y0: (cy - 6.0).round(),
                x1: (lx + LEGEND_KEY / 2.0 + 6.0).round(),
                y1: (cy + 6.0).round(),
                color,
            }),
        }
        scene.text(
            lx + LEGEND_KEY + GAP,
            cy,
            name.clone(),
            Size::Small,
            Anchor::Start,
        );
    }
    if shown < n {
        let cy = f.y0 + LEGEND_ROW / 2.0 + shown as f64 * LEGEND_ROW;
        scene.text(
            lx,
            cy,
            format!("+{} more", n - shown),
            Size::Small,
            Anchor::Start,
        );
    }
}

/// The plot frame.
fn frame_box(scene: &mut Scene, f: &Frame) {
    scene.path(
        vec![
            (f.x0, f.y0),
            (f.x1, f.y0),
            (f.x1, f.y1),
            (f.x0, f.y1),
            (f.x0, f.y0),
        ],
        AXIS,
        1.0,
    );
}

/// The "no data" note in the middle of an empty plot.
fn no_data(scene: &mut Scene, f: &Frame) {
    scene.items.push(Item::Text {
        x: (f.x0 + f.x1) / 2.0,
        y: (f.y0 + f.y1) / 2.0,
        text: "no data".into(),
        size: Size::Small,
        anchor: Anchor::Middle,
        rotated: false,
        color: MUTED,
    });
}

/// A valid point of a line chart: x already transformed, std `None` when there is no bar.
struct Point {
    x: f64,
    raw_x: f64,
    mean: f64,
    std: Option<f64>,
}

impl LineChart {
    /// The drawable points of each series, sorted by x.
    fn points(&self) -> Result<Vec<Vec<Point>>> {
        self.series
            .iter()
            .map(|s| {
                let mut pts = Vec::new();
                for &(x, mean, std) in &s.points {
                    if !(x.is_finite() && mean.is_finite()) {
                        continue;
                    }
                    if self.log2_x && x <= 0.0 {
                        return Err(Error::input(
                            format!("line chart series {:?}: x", s.name),
                            "> 0 on a log2 x axis",
                            x.to_string(),
                        ));
                    }
                    let std = std.abs();
                    let std = (std.is_finite()
                        && std > 0.0
                        && (mean + std).is_finite()
                        && (mean - std).is_finite())
                    .then_some(std);
                    let tx = if self.log2_x { x.log2() } else { x };
                    pts.push(Point {
                        x: tx,
                        raw_x: x,
                        mean,
                        std,
                    });
                }
                pts.sort_by(|a, b| a.x.total_cmp(&b.x));
                Ok(pts)
            })
            .collect()
    }

    /// The chart as primitives.
    fn layout(&self) -> Result<Scene> {
        let series = self.points()?;
        let all = || series.iter().flatten();
        let has_data = all().next().is_some();
        let (mut xmin, mut xmax, mut ymin, mut ymax) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for p in all() {
            xmin = xmin.min(p.x);
            xmax = xmax.max(p.x);
            let s = p.std.unwrap_or(0.0);
            ymin = ymin.min(p.mean - s);
            ymax = ymax.max(p.mean + s);
        }
        let ((xlo, xhi), (ylo, yhi)) = if has_data {
            (
                padded("line chart x", xmin, xmax, 0.05)?,
                padded("line chart y", ymin, ymax, 0.06)?,
            )
        } else {
            ((0.0, 1.0), (0.0, 1.0))
        };

        let y_ticks = if has_data {
            ticks(ylo, yhi, 6.0)
        } else {
            Vec::new()
        };
        let names: Vec<String> = self.series.iter().map(|s| s.name.clone()).collect();
        let cols = columns(y_ticks, &self.y_label, &names);
        let (y0, y1) = rows(&self.title, &self.x_label, SMALL_H);
        let f = Frame {
            x0: cols.x0,
            x1: cols.x1,
            y0,
            y1,
            ylo,
            yhi,
        };
        let sx = |x: f64| f.x0 + (x - xlo) / (xhi - xlo) * (f.x1 - f.x0);
        let mut scene = Scene {
            items: Vec::new(),
            plot: (f.x0, f.y0, f.x1, f.y1),
        };

        // x ticks: the data's x values on a log2 axis, round values on a linear one.
        let x_ticks: Vec<(f64, String)> = if !has_data {
            Vec::new()
        } else if self.log2_x {
            let mut xs: Vec<(f64, f64)> = all().map(|p| (p.x, p.raw_x)).collect();
            xs.sort_by(|a, b| a.0.total_cmp(&b.0));
            xs.dedup_by(|a, b| a.1 == b.1);
            xs.into_iter().map(|(t, x)| (t, fmt_value(x))).collect()
        } else {
            ticks(xlo, xhi, 7.0)
        };
        let mut last_right = f64::NEG_INFINITY;
        for (v, label) in x_ticks {
            let x = crisp(sx(v));
            scene.path(vec![(x, f.y0), (x, f.y1)], GRID, 1.0);
            scene.path(vec![(x, f.y1), (x, f.y1 + TICK)], AXIS, 1.0);
            let label = fit(&label, 12.0 * 8.0, Size::Small);
            let half = text_w(&label, Size::Small) / 2.0;
            if x - half >= last_right + GAP {
                last_right = x + half;
                scene.text(
                    x,
                    f.y1 + TICK + GAP + SMALL_H / 2.0,
                    label,
                    Size::Small,
                    Anchor::Middle,
                );
            }
        }
        let keys: Vec<Key> = (0..self.series.len())
            .map(|i| Key::Line(SHAPES[i % SHAPES.len()]))
            .collect();
        chrome(
            &mut scene,
            &f,
            &cols,
            &self.title,
            &self.x_label,
            &self.y_label,
            &keys,
        );
        frame_box(&mut scene, &f);
        if !has_data {
            no_data(&mut scene, &f);
            return Ok(scene);
        }

        for (i, pts) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            for p in pts {
                if let Some(s) = p.std {
                    let (x, top, bottom) = (sx(p.x), f.sy(p.mean + s), f.sy(p.mean - s));
                    scene.path(vec![(x, top), (x, bottom)], color, ERR_W);
                    for y in [top, bottom] {
                        scene.path(vec![(x - 4.0, y), (x + 4.0, y)], color, ERR_W);
                    }
                }
            }
            scene.path(
                pts.iter().map(|p| (sx(p.x), f.sy(p.mean))).collect(),
                color,
                LINE_W,
            );
            for p in pts {
                scene.items.push(Item::Marker {
                    x: sx(p.x),
                    y: f.sy(p.mean),
                    shape: SHAPES[i % SHAPES.len()],
                    color,
                });
            }
        }
        Ok(scene)
    }
}

impl BarChart {
    /// The chart as primitives.
    fn layout(&self) -> Result<Scene> {
        let (n_groups, n_bars) = (self.groups.len(), self.bars.len());
        if self.values.len() != n_groups {
            return Err(Error::input(
                "bar chart values",
                format!("one row per group ({n_groups})"),
                format!("{} rows", self.values.len()),
            ));
        }
        if let Some((g, row)) = self
            .values
            .iter()
            .enumerate()
            .find(|(_, row)| row.len() != n_bars)
        {
            return Err(Error::input(
                format!("bar chart values of group {:?}", self.groups[g]),
                format!("one value per bar ({n_bars})"),
                format!("{} values", row.len()),
            ));
        }
        // Finite means, and std when it has a finite whisker.
        let cell = |v: &Option<(f64, f64)>| -> Option<(f64, Option<f64>)> {
            let (m, s) = (*v)?;
            if !m.is_finite() {
                return None;
            }
            let s = s.abs();
            let ok = s.is_finite() && s > 0.0 && (m + s).is_finite() && (m - s).is_finite();
            Some((m, ok.then_some(s)))
        };
        let (mut lo, mut hi) = (0.0f64, 0.0f64);
        let mut has_data = false;
        for (m, s) in self.values.iter().flatten().filter_map(cell) {
            has_data = true;
            let s = s.unwrap_or(0.0);
            lo = lo.min(m - s);
            hi = hi.max(m + s);
        }
        if !(hi - lo).is_finite() {
            return Err(Error::input(
                "bar chart values",
                "a range of values that f64 can span",
                format!("[{lo}, {hi}]"),
            ));
        }
        let (lo, hi) = if hi > lo { (lo, hi) } else { (0.0, 1.0) };
        let (ylo, yhi, y_ticks) = if lo == 0.0 && hi > 50.0 && hi <= 100.0 {
            (0.0, 100.0, ticks_every(0.0, 100.0, 20.0))
        } else {
            // Extended to multiples of a round step (a hair's tolerance for rounding).
            match nice_step(hi - lo, 6.0) {
                Some(step) if ((hi / step).ceil() * step).is_finite() => {
                    let ylo = (lo / step + 1e-9).floor().min(0.0) * step;
                    let yhi = (hi / step - 1e-9).ceil().max(0.0) * step;
                    (ylo, yhi, ticks_every(ylo, yhi, step))
                }
                _ => (lo, hi, ticks(lo, hi, 6.0)),
            }
        };
        let cols = columns(y_ticks, &self.y_label, &self.bars);
        let plot_w = cols.x1 - cols.x0;
        let slot = plot_w / n_groups.max(1) as f64;

        // Group names: horizontal when they fit or the slots are wide, else rotated.
        let names: Vec<String> = self.groups.iter().map(|g| clean(g.trim())).collect();
        let fits = names.iter().all(|g| text_w(g, Size::Small) <= slot - GAP);
        let rotated = !fits && slot < 12.0 * 8.0;
        let names: Vec<String> = names
            .iter()
            .map(|g| {
                if rotated {
                    fit(g, ROTATED_CHARS as f64 * 8.0, Size::Small)
                } else {
                    fit(g, slot - GAP, Size::Small)
                }
            })
            .collect();
        let ticks_h = if rotated {
            names
                .iter()
                .map(|g| text_w(g, Size::Small))
                .fold(0.0, f64::max)
        } else {
            SMALL_H
        };
        let (y0, y1) = rows(&self.title, "", ticks_h);
        let f = Frame {
            x0: cols.x0,
            x1: cols.x1,
            y0,
            y1,
            ylo,
            yhi,
        };
        let mut scene = Scene {
            items: Vec::new(),
            plot: (f.x0, f.y0, f.x1, f.y1),
        };
        let keys = vec![Key::Box; n_bars];
        chrome(&mut scene, &f, &cols, &self.title, "", &self.y_label, &keys);

        // Group names and ticks; rotated names are thinned when slots are narrower than a glyph.
        let mut last = f64::NEG_INFINITY;
        for (g, name) in names.into_iter().enumerate() {
            let cx = f.x0 + (g as f64 + 0.5) * slot;
            let x = crisp(cx);
            scene.path(vec![(x, f.y1), (x, f.y1 + TICK)], AXIS, 1.0);
            if rotated {
                if cx - SMALL_H / 2.0 < last + 2.0 || name.is_empty() {
                    continue;
                }
                last = cx + SMALL_H / 2.0;
                scene.items.push(Item::Text {
                    x: cx,
                    y: f.y1 + TICK + GAP,
                    text: name,
                    size: Size::Small,
                    anchor: Anchor::End,
                    rotated: true,
                    color: INK,
                });
            } else {
                scene.text(
                    cx,
                    f.y1 + TICK + GAP + SMALL_H / 2.0,
                    name,
                    Size::Small,
                    Anchor::Middle,
                );
            }
        }
        frame_box(&mut scene, &f);
        if !has_data {
            no_data(&mut scene, &f);
            return Ok(scene);
        }
        if ylo < 0.0 {
            let y = crisp(f.sy(0.0));
            scene.path(vec![(f.x0, y), (f.x1, y)], AXIS, 1.0);
        }

        // Bars: 80% of the slot, split evenly, a one-pixel gap between wide bars.
        let bar_w = slot * 0.8 / n_bars.max(1) as f64;
        let gap = if bar_w >= 6.0 { 1.0 } else { 0.0 };
        let mut whiskers = Vec::new();
        for (g, row) in self.values.iter().enumerate() {
            let left = f.x0 + (g as f64 + 0.1) * slot;
            for (b, v) in row.iter().enumerate() {
                let Some((m, s)) = cell(v) else { continue };
                let bx0 = (left + b as f64 * bar_w).round();
                let bx1 = ((left + (b + 1) as f64 * bar_w).round() - gap).max(bx0);
                let (ya, yb) = (f.sy(0.0).round(), f.sy(m).round());
                scene.items.push(Item::Rect {
                    x0: bx0,
                    y0: ya.min(yb),
                    x1: bx1,
                    y1: ya.max(yb),
                    color: PALETTE[b % PALETTE.len()],
                });
                if let Some(s) = s {
                    whiskers.push(((bx0 + bx1) / 2.0, m, s, (bx1 - bx0) * 0.3));
                }
            }
        }
        for (x, m, s, half) in whiskers {
            let (top, bottom) = (f.sy(m + s), f.sy(m - s));
            let half = half.min(6.0);
            scene.path(vec![(x, top), (x, bottom)], INK, ERR_W);
            for y in [top, bottom] {
                scene.path(vec![(x - half, y), (x + half, y)], INK, ERR_W);
            }
        }
        Ok(scene)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared geometry.
// ---------------------------------------------------------------------------------------------

/// The marker's outline, or `None` for a circle of radius [`MARKER_R`].
fn marker_polygon(shape: Shape, x: f64, y: f64) -> Option<Vec<(f64, f64)>> {
    let r = MARKER_R;
    match shape {
        Shape::Circle => None,
        Shape::Square => {
            let h = r * 0.85;
            Some(vec![
                (x - h, y - h),
                (x + h, y - h),
                (x + h, y + h),
                (x - h, y + h),
            ])
        }
        Shape::Diamond => {
            let d = r * 1.25;
            Some(vec![(x, y - d), (x + d, y), (x, y + d), (x - d, y)])
        }
        Shape::Triangle => {
            let t = r * 1.3;
            Some(vec![
                (x, y - t),
                (x + t * 0.866, y + t * 0.5),
                (x - t * 0.866, y + t * 0.5),
            ])
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SVG.
// ---------------------------------------------------------------------------------------------

/// A coordinate with at most two decimals, no trailing zeros, no "-0".
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// `#rrggbb`.
fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// Text content escaped for XML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// An SVG `points` attribute value.
fn points_attr(points: &[(f64, f64)]) -> String {
    points
        .iter()
        .map(|&(x, y)| format!("{},{}", num(x), num(y)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The scene as a standalone SVG 1.1 document.
fn render_svg(scene: &Scene) -> String {
    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="{}"/>"#,
        hex(WHITE)
    );
    for item in &scene.items {
        match item {
            Item::Path {
                points,
                color,
                width,
            } => {
                let style = format!(
                    r#"fill="none" stroke="{}" stroke-width="{}" stroke-linecap="round" stroke-linejoin="round""#,
                    hex(*color),
                    num(*width)
                );
                if let [(x1, y1), (x2, y2)] = points[..] {
                    let _ = writeln!(
                        s,
                        r#"<line x1="{}" y1="{}" x2="{}" y2="{}" {style}/>"#,
                        num(x1),
                        num(y1),
                        num(x2),
                        num(y2)
                    );
                } else {
                    let _ = writeln!(s, r#"<polyline points="{}" {style}/>"#, points_attr(points));
                }
            }
            Item::Rect {
                x0,
                y0,
                x1,
                y1,
                color,
            } => {
                let _ = writeln!(
                    s,
                    r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>"#,
                    num(*x0),
                    num(*y0),
                    num((x1 - x0).max(0.0)),
                    num((y1 - y0).max(0.0)),
                    hex(*color)
                );
            }
            Item::Marker { x, y, shape, color } => match marker_polygon(*shape, *x, *y) {
                None => {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{}" cy="{}" r="{}" fill="{}"/>"#,
                        num(*x),
                        num(*y),
                        num(MARKER_R),
                        hex(*color)
                    );
                }
                Some(poly) => {
                    let _ = writeln!(
                        s,
                        r#"<polygon points="{}" fill="{}"/>"#,
                        points_attr(&poly),
                        hex(*color)
                    );
                }
            },
            Item::Text {
                x,
                y,
                text,
                size,
                anchor,
                rotated,
                color,
            } => {
                let font = size.svg_font_px();
                let anchor = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                // The baseline sits about 0.35 em below the centre line.
                let transform = if *rotated {
                    format!(r#" transform="rotate(-90 {} {})""#, num(*x), num(*y))
                } else {
                    String::new()
                };
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}" font-size="{}" text-anchor="{anchor}" fill="{}"{transform}>{}</text>"#,
                    num(*x),
                    num(y + 0.35 * font),
                    num(font),
                    hex(*color),
                    escape(text)
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

// ---------------------------------------------------------------------------------------------
// PNG: a tiny rasteriser, every primitive clipped to the image.
// ---------------------------------------------------------------------------------------------

/// Pixel indices `[a, b)` whose pixels meet `[lo, hi]`, clipped to `0..n`; `None` if empty or
/// not finite.
fn pixel_span(lo: f64, hi: f64, n: u32) -> Option<(u32, u32)> {
    if !(lo.is_finite() && hi.is_finite()) {
        return None;
    }
    let a = lo.floor().max(0.0);
    let b = hi.ceil().min(f64::from(n));
    (a < b).then_some((a as u32, b as u32))
}

/// Blends `color` over the pixel with coverage `alpha` in `[0, 1]`.
fn blend(img: &mut RgbImage, x: u32, y: u32, color: [u8; 3], alpha: f64) {
    if alpha <= 0.0 || x >= img.width() || y >= img.height() {
        return;
    }
    let a = alpha.min(1.0);
    let p = img.get_pixel_mut(x, y);
    for (c, &t) in p.0.iter_mut().zip(&color) {
        *c = (f64::from(*c) * (1.0 - a) + f64::from(t) * a).round() as u8;
    }
}

/// Distance from `p` to the segment `ab`.
fn dist_to_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
    ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt()
}

/// An anti-aliased polyline with round caps: coverage is the largest over its segments, so
/// joins are not drawn twice.
fn draw_path(img: &mut RgbImage, points: &[(f64, f64)], color: [u8; 3], width: f64) {
    if points.iter().any(|p| !(p.0.is_finite() && p.1.is_finite())) || !width.is_finite() {
        return;
    }
    let reach = width / 2.0 + 1.0;
    let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| {
        points.iter().map(pick).fold(init, f)
    };
    let Some((xa, xb)) = pixel_span(
        fold(f64::min, f64::INFINITY, |p| p.0) - reach,
        fold(f64::max, f64::NEG_INFINITY, |p| p.0) + reach,
        img.width(),
    ) else {
        return;
    };
    let Some((ya, yb)) = pixel_span(
        fold(f64::min, f64::INFINITY, |p| p.1) - reach,
        fold(f64::max, f64::NEG_INFINITY, |p| p.1) + reach,
        img.height(),
    ) else {
        return;
    };
    let bw = (xb - xa) as usize;
    let mut cover = vec![0.0f64; bw * (yb - ya) as usize];
    for seg in points.windows(2) {
        let (a, b) = (seg[0], seg[1]);
        let Some((sxa, sxb)) = pixel_span(a.0.min(b.0) - reach, a.0.max(b.0) + reach, img.width())
        else {
            continue;
        };
        let Some((sya, syb)) = pixel_span(a.1.min(b.1) - reach, a.1.max(b.1) + reach, img.height())
        else {
            continue;
        };
        for y in sya.max(ya)..syb.min(yb) {
            for x in sxa.max(xa)..sxb.min(xb) {
                let d = dist_to_segment((f64::from(x) + 0.5, f64::from(y) + 0.5), a, b);
                let c = (width / 2.0 + 0.5 - d).clamp(0.0, 1.0);
                let slot = &mut cover[(y - ya) as usize * bw + (x - xa) as usize];
                *slot = slot.max(c);
            }
        }
    }
    for y in ya..yb {
        for x in xa..xb {
            blend(
                img,
                x,
                y,
                color,
                cover[(y - ya) as usize * bw + (x - xa) as usize],
            );
        }
    }
}

/// Pixels whose centres lie in `[x0, x1) x [y0, y1)`.
fn fill_rect(img: &mut RgbImage, (x0, y0, x1, y1): (f64, f64, f64, f64), color: [u8; 3]) {
    let Some((xa, xb)) = pixel_span((x0 - 0.5).ceil(), (x1 - 0.5).ceil(), img.width()) else {
        return;
    };
    let Some((ya, yb)) = pixel_span((y0 - 0.5).ceil(), (y1 - 0.5).ceil(), img.height()) else {
        return;
    };
    for y in ya..yb {
        for x in xa..xb {
            img.put_pixel(x, y, image::Rgb(color));
        }
    }
}

/// An anti-aliased circle or convex polygon, by signed distance.
fn draw_marker(img: &mut RgbImage, shape: Shape, x: f64, y: f64, color: [u8; 3]) {
    let poly = marker_polygon(shape, x, y);
    // Outward edge normals (unit) and offsets of a convex polygon, either orientation.
    let edges: Vec<(f64, f64, f64)> = poly
        .as_ref()
        .map(|p| {
            let area: f64 = (0..p.len())
                .map(|i| {
                    let (a, b) = (p[i], p[(i + 1) % p.len()]);
                    a.0 * b.1 - b.0 * a.1
                })
                .sum();
            let sign = if area > 0.0 { 1.0 } else { -1.0 };
            (0..p.len())
                .filter_map(|i| {
                    let (a, b) = (p[i], p[(i + 1) % p.len()]);
                    let (nx, ny) = (sign * (b.1 - a.1), -sign * (b.0 - a.0));
                    let len = (nx * nx + ny * ny).sqrt();
                    (len > 0.0).then(|| (nx / len, ny / len, (nx * a.0 + ny * a.1) / len))
                })
                .collect()
        })
        .unwrap_or_default();
    let reach = MARKER_R * 1.5 + 1.0;
    let Some((xa, xb)) = pixel_span(x - reach, x + reach, img.width()) else {
        return;
    };
    let Some((ya, yb)) = pixel_span(y - reach, y + reach, img.height()) else {
        return;
    };
    for py in ya..yb {
        for px in xa..xb {
            let (cx, cy) = (f64::from(px) + 0.5, f64::from(py) + 0.5);
            let sd = if poly.is_none() {
                ((cx - x).powi(2) + (cy - y).powi(2)).sqrt() - MARKER_R
            } else {
                edges
                    .iter()
                    .map(|&(nx, ny, d)| nx * cx + ny * cy - d)
                    .fold(f64::NEG_INFINITY, f64::max)
            };
            blend(img, px, py, color, (0.5 - sd).clamp(0.0, 1.0));
        }
    }
}

/// The 8x8 glyph of `c`, `?` for characters outside ASCII.
fn glyph(c: char) -> [u8; 8] {
    let i = if c.is_ascii() {
        c as usize
    } else {
        '?' as usize
    };
    font8x8::legacy::BASIC_LEGACY[i]
}

/// Text in the 8x8 font at `size`, clipped to the image.
fn draw_text(
    img: &mut RgbImage,
    (x, y): (f64, f64),
    text: &str,
    size: Size,
    anchor: Anchor,
    rotated: bool,
    color: [u8; 3],
) {
    if !(x.is_finite() && y.is_finite()) {
        return;
    }
    let s = i64::from(size.scale());
    let len = text.chars().count() as f64 * size.char_w();
    let before = match anchor {
        Anchor::Start => 0.0,
        Anchor::Middle => len / 2.0,
        Anchor::End => len,
    };
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    let clamp = |v: f64| v.clamp(-1e6, 1e6).round() as i64;
    // Pixel (u, v) of the text box (u along the text, v down the glyphs) lands at `at(u, v)`.
    let (ox, oy) = if rotated {
        (clamp(x - 4.0 * s as f64), clamp(y + before))
    } else {
        (clamp(x - before), clamp(y - 4.0 * s as f64))
    };
    let at = |u: i64, v: i64| {
        if rotated {
            (ox + v, oy - 1 - u)
        } else {
            (ox + u, oy + v)
        }
    };
    for (k, c) in text.chars().enumerate() {
        let rows = glyph(c);
        let k = k as i64;
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..8i64 {
                if (bits >> col) & 1 == 0 {
                    continue;
                }
                for dv in 0..s {
                    for du in 0..s {
                        let (px, py) = at((k * 8 + col) * s + du, r as i64 * s + dv);
                        if (0..w).contains(&px) && (0..h).contains(&py) {
                            img.put_pixel(px as u32, py as u32, image::Rgb(color));
                        }
                    }
                }
            }
        }
    }
}

/// The scene rasterised on white.
fn render_png(scene: &Scene) -> RgbImage {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, image::Rgb(WHITE));
    for item in &scene.items {
        match item {
            Item::Path {
                points,
                color,
                width,
            } => draw_path(&mut img, points, *color, *width),
            Item::Rect {
                x0,
                y0,
                x1,
                y1,
                color,
            } => fill_rect(&mut img, (*x0, *y0, *x1, *y1), *color),
            Item::Marker { x, y, shape, color } => draw_marker(&mut img, *shape, *x, *y, *color),
            Item::Text {
                x,
                y,
                text,
                size,
                anchor,
                rotated,
                color,
            } => draw_text(&mut img, (*x, *y), text, *size, *anchor, *rotated, *color),
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn few_shot() -> LineChart {
        let shots = [1.0, 2.0, 4.0, 8.0, 16.0];
        let curve = |base: f64, gain: f64| -> Vec<(f64, f64, f64)> {
            shots
                .iter()
                .map(|&k: &f64| (k, base + gain * k.log2(), 0.4 + 0.1 * k.log2()))
                .collect()
        };
        LineChart {
            title: "Few-shot learning on ImageNet".into(),
            x_label: "Number of labeled training examples per class".into(),
            y_label: "Score (%)".into(),
            series: vec![
                Series {
                    name: "CoOp <M=16> & end".into(),
                    points: curve(57.0, 1.9),
                },
                Series {
                    name: "Linear probe CLIP".into(),
                    points: curve(32.0, 5.5),
                },
                Series {
                    name: "Zero-shot CLIP".into(),
                    points: vec![(1.0, 58.2, 0.0), (16.0, 58.2, 0.0)],
                },
            ],
            log2_x: true,
        }
    }

    fn base_novel() -> BarChart {
        BarChart {
            title: "Base-to-novel generalisation, average over 11 datasets".into(),
            y_label: "Accuracy (%)".into(),
            groups: vec![
                "CLIP".into(),
                "CoOp".into(),
                "CoCoOp".into(),
                "Linear probe".into(),
            ],
            bars: vec!["Base".into(), "Novel".into(), "HM".into()],
            values: vec![
                vec![Some((69.34, 0.0)), Some((74.22, 0.0)), Some((71.70, 0.0))],
                vec![Some((82.69, 0.4)), Some((63.22, 1.2)), Some((71.66, 0.8))],
                vec![Some((80.47, 0.3)), Some((71.69, 0.9)), Some((75.83, 0.5))],
                vec![Some((79.40, 0.5)), None, None],
            ],
        }
    }

    /// Pixels of exactly `color`.
    fn pixels_of(img: &RgbImage, color: [u8; 3]) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|(_, _, p)| p.0 == color)
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    #[test]
    fn svg_contains_every_series_name_and_escapes_markup() {
        let svg = few_shot().to_svg().unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains(r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1""#));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("CoOp &lt;M=16&gt; &amp; end"));
        assert!(!svg.contains("<M=16>"));
        for name in [
            "Linear probe CLIP",
            "Zero-shot CLIP",
            "Few-shot learning on ImageNet",
        ] {
            assert!(svg.contains(name), "{name}");
        }
        // x ticks at the shots.
        for shot in ["1", "2", "4", "8", "16"] {
            assert!(svg.contains(&format!(">{shot}</text>")), "{shot}");
        }
        // Every '&' starts an entity, every tag is closed.
        for (i, _) in svg.match_indices('&') {
            let rest = &svg[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;"]
                    .iter()
                    .any(|e| rest.starts_with(e))
            );
        }
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
        let bars = base_novel().to_svg().unwrap();
        for name in ["Base", "Novel", "HM", "CoCoOp", "Linear probe"] {
            assert!(bars.contains(&format!(">{name}</text>")), "{name}");
        }
    }

    #[test]
    fn png_draws_inside_the_plot_area_and_is_deterministic() {
        let chart = few_shot();
        let img = chart.to_png().unwrap();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        assert_eq!(img, chart.to_png().unwrap());
        assert_eq!(chart.to_svg().unwrap(), chart.to_svg().unwrap());
        let (x0, y0, x1, y1) = chart.layout().unwrap().plot;
        let blue = pixels_of(&img, PALETTE[0]);
        let inside = blue
            .iter()
            .filter(|&&(x, y)| {
                (x0..=x1).contains(&f64::from(x)) && (y0..=y1).contains(&f64::from(y))
            })
            .count();
        assert!(inside > 200, "{inside} series pixels in the plot area");
        // Outside the plot area only the legend key, right of it.
        assert!(
            blue.iter()
                .all(|&(x, y)| f64::from(x) > x1 || (y0..=y1).contains(&f64::from(y)))
        );
        // Corners stay white, text is drawn in ink.
        assert_eq!(img.get_pixel(0, 0).0, WHITE);
        assert_eq!(img.get_pixel(WIDTH - 1, HEIGHT - 1).0, WHITE);
        assert!(pixels_of(&img, INK).len() > 500);
        let bars = base_novel();
        assert_eq!(bars.to_png().unwrap(), bars.to_png().unwrap());
        assert_eq!(bars.to_svg().unwrap(), bars.to_svg().unwrap());
    }

    #[test]
    fn nan_and_empty_series_do_not_panic() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let cases: Vec<Vec<Series>> = vec![
            vec![],
            vec![Series::default()],
            vec![Series {
                name: "all nan".into(),
                points: vec![(nan, nan, nan), (1.0, nan, 1.0), (nan, 3.0, 0.0)],
            }],
            vec![Series {
                name: "one point".into(),
                points: vec![(4.0, 50.0, 1.0)],
            }],
            vec![Series {
                name: "flat".into(),
                points: vec![(1.0, 0.0, 0.0), (2.0, 0.0, 0.0), (4.0, 0.0, 0.0)],
            }],
            vec![Series {
                name: "odd std\u{7}".into(),
                points: vec![(1.0, 10.0, -2.0), (2.0, 11.0, inf), (4.0, 12.0, nan)],
            }],
            vec![Series {
                name: "huge".into(),
                points: vec![(1.0, 1e300, 1e300), (2.0, -1e300, 0.0)],
            }],
            vec![Series {
                name: "tiny".into(),
                points: vec![(1.0, 1e15, 0.0), (2.0, 1e15 + 0.125, 0.0)],
            }],
        ];
        for log2_x in [false, true] {
            for series in &cases {
                let chart = LineChart {
                    series: series.clone(),
                    log2_x,
                    ..few_shot()
                };
                let svg = chart.to_svg().unwrap();
                let png = chart.to_png().unwrap();
                assert_eq!(png.dimensions(), (WIDTH, HEIGHT));
                if series.iter().all(|s| s.points.iter().all(|p| p.1.is_nan())) {
                    assert!(svg.contains(">no data</text>"));
                }
                assert!(!svg.contains('\u{7}'));
            }
        }
        let spanning = LineChart {
            series: vec![Series {
                name: "overflow".into(),
                points: vec![(1.0, f64::MAX, 0.0), (2.0, -f64::MAX, 0.0)],
            }],
            ..few_shot()
        };
        assert!(matches!(spanning.to_svg(), Err(Error::Input { .. })));
        let zero_shots = LineChart {
            series: vec![Series {
                name: "zero".into(),
                points: vec![(0.0, 50.0, 0.0), (1.0, 60.0, 0.0)],
            }],
            ..few_shot()
        };
        assert!(matches!(zero_shots.to_png(), Err(Error::Input { .. })));
        let empty_title = LineChart::default();
        assert!(empty_title.to_svg().unwrap().contains("no data"));

        // Bars: empty, all missing, all zero, negative, non-finite.
        let empty = BarChart::default();
        empty.to_svg().unwrap();
        empty.to_png().unwrap();
        for row in [
            vec![None, None],
            vec![Some((0.0, 0.0)), Some((0.0, 0.0))],
            vec![Some((-3.0, 1.0)), Some((2.0, nan))],
            vec![Some((nan, 1.0)), Some((inf, 1.0))],
            vec![Some((0.5, 0.01)), Some((0.25, inf))],
        ] {
            let chart = BarChart {
                groups: vec!["g".into()],
                bars: vec!["a".into(), "b".into()],
                values: vec![row],
                ..BarChart::default()
            };
            chart.to_svg().unwrap();
            chart.to_png().unwrap();
        }
    }

    #[test]
    fn bar_chart_missing_values_leave_gaps() {
        let chart = base_novel();
        let img = chart.to_png().unwrap();
        let (x0, y0, x1, y1) = chart.layout().unwrap().plot;
        let slot = (x1 - x0) / chart.groups.len() as f64;
        let in_slot = |g: usize, color: [u8; 3]| {
            pixels_of(&img, color)
                .into_iter()
                .filter(|&(x, y)| {
                    let (x, y) = (f64::from(x), f64::from(y));
                    x > x0 + g as f64 * slot && x < x0 + (g + 1) as f64 * slot && y > y0 && y < y1
                })
                .count()
        };
        for g in 0..3 {
            for (b, color) in PALETTE.iter().take(3).enumerate() {
                assert!(in_slot(g, *color) > 100, "group {g} bar {b}");
            }
        }
        // The linear probe has a base bar only.
        assert!(in_slot(3, PALETTE[0]) > 100);
        assert_eq!(in_slot(3, PALETTE[1]), 0);
        assert_eq!(in_slot(3, PALETTE[2]), 0);
        let svg = chart.to_svg().unwrap();
        assert_eq!(
            svg.matches(&format!(r#"fill="{}""#, hex(PALETTE[1])))
                .count(),
            3 + 1
        );
    }

    #[test]
    fn bar_chart_of_percentages_runs_from_zero_to_one_hundred() {
        let svg = base_novel().to_svg().unwrap();
        for tick in ["0", "20", "40", "60", "80", "100"] {
            assert!(svg.contains(&format!(">{tick}</text>")), "{tick}");
        }
        assert!(!svg.contains(">120</text>"));
        let fractions = BarChart {
            values: vec![vec![Some((0.62, 0.05)); 3]; 4],
            ..base_novel()
        };
        let svg = fractions.to_svg().unwrap();
        assert!(svg.contains(">0.7</text>") && !svg.contains(">100</text>"));
    }

    #[test]
    fn bar_chart_rejects_values_of_the_wrong_shape() {
        let mut chart = base_novel();
        chart.values.pop();
        assert!(matches!(chart.to_svg(), Err(Error::Input { .. })));
        let mut chart = base_novel();
        chart.values[1].push(None);
        let err = chart.to_png().unwrap_err().to_string();
        assert!(err.contains("CoOp"), "{err}");
    }

    #[test]
    fn long_group_names_are_rotated_or_cut_to_fit() {
        let groups: Vec<String> = (0..12)
            .map(|i| format!("A rather long method name number {i}"))
            .collect();
        let chart = BarChart {
            values: vec![vec![Some((50.0, 1.0)); 3]; groups.len()],
            groups,
            ..base_novel()
        };
        let svg = chart.to_svg().unwrap();
        assert!(svg.contains("rotate(-90"));
        assert!(svg.contains("A rather long m...</text>"));
        chart.to_png().unwrap();
        let few = BarChart {
            groups: vec!["A".repeat(60), "B".into()],
            values: vec![vec![None; 3]; 2],
            ..base_novel()
        };
        let svg = few.to_svg().unwrap();
        assert_eq!(svg.matches("rotate(-90").count(), 1, "only the y label");
        assert!(svg.contains("AAA...</text>"));
        assert!(!svg.contains(&"A".repeat(60)));
    }

    #[test]
    fn nice_ticks_are_round_numbers() {
        let t: Vec<String> = ticks(0.0, 100.0, 6.0).into_iter().map(|t| t.1).collect();
        assert_eq!(t, ["0", "20", "40", "60", "80", "100"]);
        let t: Vec<String> = ticks(31.2, 68.9, 6.0).into_iter().map(|t| t.1).collect();
        assert_eq!(t, ["35", "40", "45", "50", "55", "60", "65"]);
        let t: Vec<String> = ticks(-0.26, 0.26, 6.0).into_iter().map(|t| t.1).collect();
        assert_eq!(t, ["-0.2", "-0.1", "0.0", "0.1", "0.2"]);
        assert!(ticks(1.0, 1.0, 6.0).is_empty());
        assert!(ticks(f64::NAN, 1.0, 6.0).is_empty());
        assert_eq!(fmt_value(16.0), "16");
        assert_eq!(fmt_value(0.5), "0.5");
    }

    #[test]
    fn drawing_out_of_the_image_is_clipped() {
        let mut img = RgbImage::from_pixel(20, 10, image::Rgb(WHITE));
        draw_path(&mut img, &[(-1e9, -5.0), (1e9, 30.0)], INK, 2.0);
        draw_path(&mut img, &[(f64::NAN, 0.0), (3.0, 3.0)], INK, 2.0);
        fill_rect(&mut img, (-50.0, 5.0, 1e12, 1e12), INK);
        draw_marker(&mut img, Shape::Triangle, 19.5, -2.0, INK);
        draw_text(
            &mut img,
            (-3.0, 9.0),
            "clipped text \u{e9}",
            Size::Large,
            Anchor::Start,
            true,
            INK,
        );
        assert_eq!(img.get_pixel(10, 9).0, INK);
    }

    #[test]
    fn write_svg_png_writes_both_files_and_the_png_decodes() {
        let dir = tempfile::tempdir().unwrap();
        for (stem, chart) in [
            ("few_shot.v1", few_shot().to_svg()),
            ("bars", base_novel().to_svg()),
        ] {
            let stem = dir.path().join("figs").join(stem);
            let png = if stem.ends_with("bars") {
                base_novel().to_png().unwrap()
            } else {
                few_shot().to_png().unwrap()
            };
            write_svg_png(&stem, &chart.unwrap(), &png).unwrap();
            let name = stem.file_name().unwrap().to_string_lossy().into_owned();
            let svg = std::fs::read_to_string(stem.with_file_name(format!("{name}.svg"))).unwrap();
            assert!(svg.ends_with("</svg>\n"));
            let back = image::open(stem.with_file_name(format!("{name}.png")))
                .unwrap()
                .to_rgb8();
            assert_eq!(back, png);
        }
    }
}
