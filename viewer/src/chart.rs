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
    /// Lines, bands, bars, box plots and reference lines on x/y axes.
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
                SeriesKind::Boxes { boxes, width } => boxes.iter().for_each(|b| {
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
                SeriesKind::Boxes { boxes, .. } => boxes.iter().for_each(|b| {
                    see_y(b.stats.whisker_low);
                    see_y(b.stats.whisker_high);
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

/// One box of a box plot: box from q1 to q3, a median line, whiskers (matplotlib's style).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxMark {
    /// Centre x.
    pub x: f64,
    /// Its statistics.
    pub stats: shared::analysis::BoxStats,
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
    /// Box plots.
    Boxes {
        /// The boxes.
        boxes: Vec<BoxMark>,
        /// Box width in x units.
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

    /// Box plots.
    pub fn boxes(name: impl Into<String>, color: Rgb, boxes: Vec<BoxMark>, width: f64) -> Self {
        Self {
            name: name.into(),
            color,
            fill_alpha: 0.35,
            axis: Axis::Left,
            kind: SeriesKind::Boxes { boxes, width },
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

/// Cell texts of a grid: each value with `decimals` decimals, empty where there is none.
pub fn cell_texts(values: &[Vec<Option<f64>>], decimals: usize) -> Vec<Vec<String>> {
    values
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.map(|v| format!("{v:.decimals$}")).unwrap_or_default())
                .collect()
        })
        .collect()
}

/// The drawable points of a line: those with a finite y, with x multiplied by `x_sign` (−1 draws
/// an inverted x axis) and y mapped by `map_y` (the twin axis).
pub fn line_points(
    points: &[(f64, f64)],
    x_sign: f64,
    map_y: impl Fn(f64) -> f64,
) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|&(x, y)| (x_sign * x, map_y(y)))
        .collect()
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

impl HeatmapLayout {
    /// The cell (row, col) under a point of the panel, if any.
    pub fn cell_at(&self, h: &HeatmapPanel, x: f64, y: f64) -> Option<(usize, usize)> {
        let (c, r) = ((x - self.x0) / self.cell_w, (y - self.y0) / self.cell_h);
        let (r, c) = (r.floor(), c.floor());
        let rows = h.values.len();
        let cols = h.values.get(r.max(0.0) as usize).map_or(0, Vec::len);
        (r >= 0.0 && c >= 0.0 && (r as usize) < rows && (c as usize) < cols)
            .then_some((r as usize, c as usize))
    }
}

/// Where a text's anchor point lies along the text (horizontal before any rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HAlign {
    /// The text starts at the anchor.
    Left,
    /// The text is centred on the anchor.
    Center,
    /// The text ends at the anchor.
    Right,
}

/// Where a text's anchor point lies across the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VAlign {
    /// The anchor is at the top of the text.
    Top,
    /// The anchor is in the middle of the text.
    Center,
    /// The anchor is at the bottom of the text.
    Bottom,
}

/// One thing a painter draws, in panel coordinates (unscaled pixels, y down). Both the screen
/// ([`crate::draw_egui`]) and files ([`crate::draw_plotters`]) paint the same list.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A filled axis-aligned rectangle.
    Rect {
        /// Top-left corner.
        min: (f64, f64),
        /// Bottom-right corner.
        max: (f64, f64),
        /// Fill colour.
        color: Rgb,
    },
    /// A straight stroke.
    Segment {
        /// Start.
        from: (f64, f64),
        /// End.
        to: (f64, f64),
        /// Stroke width.
        width: f64,
        /// Stroke colour.
        color: Rgb,
    },
    /// A single line of text.
    Text {
        /// The text.
        text: String,
        /// The anchor point.
        at: (f64, f64),
        /// Font size in pixels.
        size: f64,
        /// Colour; `None` is the foreground colour of the surface (black on paper).
        color: Option<Rgb>,
        /// Anchor along the text.
        h: HAlign,
        /// Anchor across the text.
        v: VAlign,
        /// Rotated a quarter turn counter-clockwise (reads bottom to top).
        vertical: bool,
    },
}

fn text(
    text: impl Into<String>,
    at: (f64, f64),
    size: f64,
    color: Option<Rgb>,
    (h, v): (HAlign, VAlign),
    vertical: bool,
) -> Shape {
    Shape::Text {
        text: text.into(),
        at,
        size,
        color,
        h,
        v,
        vertical,
    }
}

/// Everything a heatmap panel of `w × ht` draws, in painting order: title, cells with their
/// text, X markers (a white stroke under a black one, reference §6.5), tick labels, axis labels,
/// colour bar.
pub fn heatmap_shapes(h: &HeatmapPanel, w: f64, ht: f64) -> Vec<Shape> {
    use HAlign as H;
    use VAlign as V;
    let l = heatmap_layout(h, w, ht);
    let mut out = Vec::new();
    if !h.title.is_empty() {
        out.push(text(
            &h.title,
            (w / 2.0, 15.0),
            14.0,
            None,
            (H::Center, V::Center),
            false,
        ));
    }
    let (vmin, vmax) = h.range;
    for (r, row) in h.values.iter().enumerate() {
        for (col, v) in row.iter().enumerate() {
            let Some(v) = v else { continue };
            let (x, y) = (l.x0 + l.cell_w * col as f64, l.y0 + l.cell_h * r as f64);
            let color = h.colormap.color(*v, vmin, vmax);
            out.push(Shape::Rect {
                min: (x, y),
                max: (x + l.cell_w, y + l.cell_h),
                color,
            });
            let cell = h.cell_text.get(r).and_then(|t| t.get(col));
            let lines: Vec<&str> = cell.map(|t| t.lines().collect()).unwrap_or_default();
            let longest = lines.iter().map(|t| t.len()).max().unwrap_or(1) as f64;
            let size = (l.cell_h * 0.32)
                .clamp(6.0, 12.0)
                .min(l.cell_w / (longest * 0.55));
            for (k, line) in lines.iter().enumerate() {
                let dy = (k as f64 - (lines.len() as f64 - 1.0) / 2.0) * size * 1.1;
                out.push(text(
                    *line,
                    (x + l.cell_w / 2.0, y + l.cell_h / 2.0 + dy),
                    size,
                    Some(Colormap::text_on(color)),
                    (H::Center, V::Center),
                    false,
                ));
            }
        }
    }
    for &(r, col) in &h.markers {
        let cx = l.x0 + l.cell_w * (col as f64 + 0.5);
        let cy = l.y0 + l.cell_h * (r as f64 + 0.5);
        let d = l.cell_w.min(l.cell_h) * 0.25;
        for (width, color) in [(4.0, crate::theme::WHITE), (2.0, crate::theme::BLACK)] {
            for (from, to) in [
                ((cx - d, cy - d), (cx + d, cy + d)),
                ((cx - d, cy + d), (cx + d, cy - d)),
            ] {
                out.push(Shape::Segment {
                    from,
                    to,
                    width,
                    color,
                });
            }
        }
    }
    let every = h.tick_every.max(1);
    for (r, label) in h.row_labels.iter().enumerate().step_by(every) {
        let at = (l.x0 - 4.0, l.y0 + l.cell_h * (r as f64 + 0.5));
        out.push(text(label, at, 11.0, None, (H::Right, V::Center), false));
    }
    let bottom = l.y0 + l.cell_h * h.values.len() as f64;
    let rotate = h.col_labels.iter().any(|c| c.chars().count() > 3);
    for (col, label) in h.col_labels.iter().enumerate().step_by(every) {
        let x = l.x0 + l.cell_w * (col as f64 + 0.5);
        out.push(if rotate {
            let y = bottom + 4.0 + label.chars().count() as f64 * 5.5;
            text(label, (x, y), 11.0, None, (H::Left, V::Center), true)
        } else {
            text(
                label,
                (x, bottom + 4.0),
                11.0,
                None,
                (H::Center, V::Top),
                false,
            )
        });
    }
    let centre_x = l.x0 + l.cell_w * h.col_labels.len() as f64 / 2.0;
    out.push(text(
        &h.x_label,
        (centre_x, ht - 10.0),
        13.0,
        None,
        (H::Center, V::Center),
        false,
    ));
    let centre_y = l.y0 + l.cell_h * h.values.len() as f64 / 2.0;
    out.push(text(
        &h.y_label,
        (10.0, centre_y),
        13.0,
        None,
        (H::Center, V::Center),
        true,
    ));
    if !h.colorbar_label.is_empty() {
        let step = (bottom - l.y0) / COLORBAR_STEPS as f64;
        for k in 0..COLORBAR_STEPS {
            let t = 1.0 - (k as f64 + 0.5) / COLORBAR_STEPS as f64;
            let y = l.y0 + step * k as f64;
            out.push(Shape::Rect {
                min: (l.bar_x, y),
                max: (l.bar_x + 12.0, y + step + 0.5),
                color: h.colormap.color(vmin + (vmax - vmin) * t, vmin, vmax),
            });
        }
        for (v, y) in [(vmax, l.y0), (vmin, bottom)] {
            let at = (l.bar_x + 15.0, y);
            out.push(text(
                fmt_num(v),
                at,
                10.0,
                None,
                (H::Left, V::Center),
                false,
            ));
        }
        let at = (l.bar_x + 55.0, (l.y0 + bottom) / 2.0);
        out.push(text(
            &h.colorbar_label,
            at,
            11.0,
            None,
            (H::Center, V::Center),
            true,
        ));
    }
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> HeatmapPanel {
        let values = vec![vec![Some(0.0), None], vec![Some(0.5), Some(1.0)]];
        HeatmapPanel {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            row_labels: vec!["0".into(), "1".into()],
            col_labels: vec!["0".into(), "1".into()],
            cell_text: cell_texts(&values, 1),
            values,
            colormap: Colormap::Viridis,
            range: (0.0, 1.0),
            markers: vec![(1, 1)],
            colorbar_label: "mean".into(),
            tick_every: 1,
        }
    }

    #[test]
    fn heatmap_shapes_have_a_rect_per_filled_cell_and_step_and_four_strokes_per_x() {
        let shapes = heatmap_shapes(&grid(), 300.0, 300.0);
        let rects = shapes
            .iter()
            .filter(|s| matches!(s, Shape::Rect { .. }))
            .count();
        assert_eq!(rects, 3 + COLORBAR_STEPS);
        let strokes = shapes
            .iter()
            .filter(|s| matches!(s, Shape::Segment { .. }))
            .count();
        assert_eq!(strokes, 4);
        let texts: Vec<&str> = shapes
            .iter()
            .filter_map(|s| match s {
                Shape::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        // title, 3 cell values, 2 + 2 tick labels, 2 axis labels, colour-bar min, max and label
        assert_eq!(texts.len(), 1 + 3 + 4 + 2 + 3);
        assert!(texts.contains(&"0.5") && !texts.contains(&""));
    }

    #[test]
    fn the_cell_under_a_point_is_found_and_points_outside_the_grid_have_none() {
        let h = grid();
        let l = heatmap_layout(&h, 300.0, 300.0);
        let centre = |r: f64, c: f64| (l.x0 + l.cell_w * (c + 0.5), l.y0 + l.cell_h * (r + 0.5));
        let (x, y) = centre(1.0, 0.0);
        assert_eq!(l.cell_at(&h, x, y), Some((1, 0)));
        assert_eq!(l.cell_at(&h, l.x0 - 1.0, y), None);
        let (x, y) = centre(2.0, 0.0);
        assert_eq!(l.cell_at(&h, x, y), None);
    }
}
