//! The one drawing description of a figure. Every figure module turns its prepared data into a
//! [`Figure`]; the same `Figure` is drawn on screen ([`crate::draw_egui`]), into PNG/SVG files
//! ([`crate::draw_plotters`], native only) and into snapshot tests. Nothing here draws.

use crate::theme::{Colormap, Rgb};

/// A whole figure: panels on a grid, plus notes about missing data.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// A file-name-safe identifier (`layers-average`).
    pub id: String,
    /// The title (empty for none).
    pub title: String,
    /// The panels, row-major on a grid of `columns` columns.
    pub panels: Vec<Panel>,
    /// Grid columns (≥ 1).
    pub columns: usize,
    /// Size of one panel in pixels at scale 1.
    pub panel_size: (u32, u32),
    /// What is missing or was skipped ("layer 5: no seeds for aime25"), shown under the figure.
    pub notes: Vec<String>,
}

impl Figure {
    /// A figure with one panel.
    pub fn single(
        id: impl Into<String>,
        title: impl Into<String>,
        panel: Panel,
        size: (u32, u32),
    ) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            panels: vec![panel],
            columns: 1,
            panel_size: size,
            notes: vec![],
        }
    }

    /// Grid rows.
    pub fn rows(&self) -> usize {
        self.panels.len().div_ceil(self.columns.max(1))
    }

    /// The full size in pixels at scale 1 (title strip included).
    pub fn size(&self) -> (u32, u32) {
        let title = if self.title.is_empty() { 0 } else { 36 };
        let cols = self.columns.max(1).min(self.panels.len().max(1)) as u32;
        (
            self.panel_size.0 * cols,
            self.panel_size.1 * self.rows().max(1) as u32 + title,
        )
    }
}

/// One panel.
#[derive(Debug, Clone, PartialEq)]
pub enum Panel {
    /// Lines, bands, bars and reference lines on x/y axes.
    Plot(PlotPanel),
    /// A grid of coloured cells.
    Heatmap(HeatmapPanel),
    /// A table of text.
    Table(TablePanel),
}

/// Which y axis a series uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// The left axis.
    Left,
    /// The right (twin) axis.
    Right,
}

/// A plot panel.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotPanel {
    /// Panel title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Left y axis label.
    pub y_label: String,
    /// Right y axis label: present iff some series uses [`Axis::Right`].
    pub y2_label: Option<String>,
    /// Categorical x ticks (value, label); `None` for numeric ticks.
    pub x_ticks: Option<Vec<(f64, String)>>,
    /// Draw x increasing to the left (greedy axis removal).
    pub invert_x: bool,
    /// Fixed left y range.
    pub y_range: Option<(f64, f64)>,
    /// The series, drawn in order.
    pub series: Vec<Series>,
}

impl PlotPanel {
    /// An empty panel with labels.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            y2_label: None,
            x_ticks: None,
            invert_x: false,
            y_range: None,
            series: vec![],
        }
    }

    /// The x and y ranges of the data on `axis` (bands, bars and error bars included), padded.
    pub fn bounds(&self, axis: Axis) -> ((f64, f64), (f64, f64)) {
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        let mut see_x = |x: f64| {
            if x.is_finite() {
                x0 = x0.min(x);
                x1 = x1.max(x);
            }
        };
        for s in &self.series {
            match &s.kind {
                SeriesKind::Line { points, .. } => points.iter().for_each(|p| see_x(p.0)),
                SeriesKind::Bars { bars, width } => bars.iter().for_each(|b| {
                    see_x(b.x - width / 2.0);
                    see_x(b.x + width / 2.0);
                }),
                SeriesKind::HLine { .. } => {}
            }
        }
        let mut see_y = |y: f64| {
            if y.is_finite() {
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        };
        for s in self.series.iter().filter(|s| s.axis == axis) {
            match &s.kind {
                SeriesKind::Line { points, band, .. } => {
                    points.iter().for_each(|p| see_y(p.1));
                    band.iter().flatten().for_each(|b| {
                        see_y(b.1);
                        see_y(b.2);
                    });
                }
                SeriesKind::HLine { y, band, .. } => {
                    see_y(*y);
                    if let Some((lo, hi)) = band {
                        see_y(*lo);
                        see_y(*hi);
                    }
                }
                SeriesKind::Bars { bars, .. } => bars.iter().for_each(|b| {
                    see_y(0.0);
                    see_y(b.height + b.err.unwrap_or(0.0));
                    see_y(b.height - b.err.unwrap_or(0.0));
                }),
            }
        }
        let bars_from_zero = y0 >= 0.0
            && self
                .series
                .iter()
                .any(|s| s.axis == axis && matches!(s.kind, SeriesKind::Bars { .. }));
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if !y0.is_finite() {
            (y0, y1) = (0.0, 1.0);
        }
        if axis == Axis::Left
            && let Some(r) = self.y_range
        {
            (y0, y1) = r;
        }
        let pad = |a: f64, b: f64, frac: f64| {
            let d = if b > a {
                (b - a) * frac
            } else {
                a.abs().max(1.0) * 0.1
            };
            (a - d, b + d)
        };
        let (x0, x1) = pad(x0, x1, 0.03);
        let (y0, y1) = if axis == Axis::Left && self.y_range.is_some() {
            (y0, y1)
        } else if bars_from_zero {
            (0.0, pad(y0, y1, 0.05).1)
        } else {
            pad(y0, y1, 0.05)
        };
        ((x0, x1), (y0, y1))
    }
}

/// A marker shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A filled circle.
    Circle,
    /// A filled square.
    Square,
}

/// One bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Centre x.
    pub x: f64,
    /// Height.
    pub height: f64,
    /// Error bar half-length.
    pub err: Option<f64>,
}

/// What a series draws.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesKind {
    /// A polyline with optional markers and a (x, low, high) band.
    Line {
        /// The points, in x order.
        points: Vec<(f64, f64)>,
        /// A shaded band.
        band: Option<Vec<(f64, f64, f64)>>,
        /// Dashed.
        dashed: bool,
        /// Markers at the points.
        marker: Option<Marker>,
        /// Line width in pixels at scale 1.
        width: f32,
    },
    /// A horizontal reference line across the panel, with an optional band.
    HLine {
        /// Its y.
        y: f64,
        /// A (low, high) band.
        band: Option<(f64, f64)>,
        /// Dashed.
        dashed: bool,
        /// Line width.
        width: f32,
        /// Text written at the right end of the line (the paper style's baseline labels).
        label: Option<String>,
    },
    /// Bars.
    Bars {
        /// The bars.
        bars: Vec<Bar>,
        /// Bar width in x units.
        width: f64,
    },
}

/// A named, coloured series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend name (empty: not in the legend).
    pub name: String,
    /// Colour.
    pub color: Rgb,
    /// Band/bar opacity in [0, 1].
    pub fill_alpha: f32,
    /// Which y axis.
    pub axis: Axis,
    /// What to draw.
    pub kind: SeriesKind,
}

impl Series {
    /// A line with circle markers and an optional ±band.
    pub fn line(
        name: impl Into<String>,
        color: Rgb,
        points: Vec<(f64, f64)>,
        band: Option<Vec<(f64, f64, f64)>>,
    ) -> Self {
        Self {
            name: name.into(),
            color,
            fill_alpha: 0.2,
            axis: Axis::Left,
            kind: SeriesKind::Line {
                points,
                band,
                dashed: false,
                marker: Some(Marker::Circle),
                width: 2.0,
            },
        }
    }

    /// A dashed horizontal reference line.
    pub fn hline(name: impl Into<String>, color: Rgb, y: f64, band: Option<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            color,
            fill_alpha: 0.1,
            axis: Axis::Left,
            kind: SeriesKind::HLine {
                y,
                band,
                dashed: true,
                width: 1.5,
                label: None,
            },
        }
    }

    /// Bars.
    pub fn bars(name: impl Into<String>, color: Rgb, bars: Vec<Bar>, width: f64) -> Self {
        Self {
            name: name.into(),
            color,
            fill_alpha: 0.85,
            axis: Axis::Left,
            kind: SeriesKind::Bars { bars, width },
        }
    }

    /// The same series on the right axis.
    pub fn on_right(mut self) -> Self {
        self.axis = Axis::Right;
        self
    }
}

/// A heatmap panel.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapPanel {
    /// Panel title.
    pub title: String,
    /// X axis label (columns).
    pub x_label: String,
    /// Y axis label (rows).
    pub y_label: String,
    /// Row labels, top to bottom.
    pub row_labels: Vec<String>,
    /// Column labels, left to right.
    pub col_labels: Vec<String>,
    /// `values[row][col]`; `None` cells are left blank.
    pub values: Vec<Vec<Option<f64>>>,
    /// Text written in each cell (empty: none).
    pub cell_text: Vec<Vec<String>>,
    /// Colour map.
    pub colormap: Colormap,
    /// Colour range (vmin, vmax).
    pub range: (f64, f64),
    /// Cells marked with an "X" (row, col).
    pub markers: Vec<(usize, usize)>,
    /// Colour-bar label (empty: no colour bar).
    pub colorbar_label: String,
    /// Draw only every k-th axis tick label (1 = all).
    pub tick_every: usize,
}

impl HeatmapPanel {
    /// The colour range of the finite values, `(0, 1)` if none.
    pub fn finite_range(values: &[Vec<Option<f64>>]) -> (f64, f64) {
        let it = values
            .iter()
            .flatten()
            .flatten()
            .copied()
            .filter(|v| v.is_finite());
        let (lo, hi) = it.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
    }
}

/// A table panel.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePanel {
    /// Panel title.
    pub title: String,
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

/// Pixel layout of a heatmap inside its panel (shared with the egui painter).
#[derive(Debug, Clone, Copy)]
pub struct HeatmapLayout {
    /// Left edge of the cells.
    pub x0: f64,
    /// Top edge of the cells.
    pub y0: f64,
    /// Cell width.
    pub cell_w: f64,
    /// Cell height.
    pub cell_h: f64,
    /// Left edge of the colour bar (if any).
    pub bar_x: f64,
}

/// Lays out a heatmap of `rows × cols` cells in a `w × h` panel (unscaled units).
pub fn heatmap_layout(h: &HeatmapPanel, w: f64, ht: f64) -> HeatmapLayout {
    let longest_row = h
        .row_labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(1) as f64;
    let left = 30.0 + (longest_row * 6.5).min(140.0);
    let longest_col = h
        .col_labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(1) as f64;
    let bottom = 34.0 + (longest_col * 5.0).min(110.0);
    let top = if h.title.is_empty() { 10.0 } else { 30.0 };
    let right = if h.colorbar_label.is_empty() {
        12.0
    } else {
        80.0
    };
    let rows = h.values.len().max(1) as f64;
    let cols = h.values.iter().map(Vec::len).max().unwrap_or(1).max(1) as f64;
    let cw = ((w - left - right) / cols).max(2.0);
    let ch = ((ht - top - bottom) / rows).max(2.0);
    HeatmapLayout {
        x0: left,
        y0: top,
        cell_w: cw,
        cell_h: ch,
        bar_x: left + cw * cols + 14.0,
    }
}

/// Number of colour steps in a colour bar.
pub const COLORBAR_STEPS: usize = 32;

/// A compact number format for axis ticks.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round())
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        // four significant digits, trailing zeros dropped
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 8) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    }
}
