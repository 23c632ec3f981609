//! Draws a [`Figure`] with plotters into SVG text (both targets) or PNG bytes (native: plotters
//! cannot rasterise text on wasm32, where the browser rasterises the SVG instead, see
//! `web::download_png`). Natively the font is embedded (egui's Ubuntu-Light), so output is
//! identical on every machine and needs no fontconfig, no window and no GPU; in the browser text is
//! measured by the browser.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::chart::{
    Axis, Figure, HAlign, HeatmapPanel, Marker, Panel, PlotPanel, SeriesKind, Shape, TablePanel,
    VAlign, fmt_num, heatmap_shapes, line_points,
};
use crate::theme::{self, Rgb};

type Res = Result<(), String>;

const FONT: &str = "sans-serif";

fn register_fonts() {
    #[cfg(not(target_arch = "wasm32"))]
    static ONCE: std::sync::Once = std::sync::Once::new();
    #[cfg(not(target_arch = "wasm32"))]
    ONCE.call_once(|| {
        // The bytes are valid (they ship with egui); an error would only mean no text.
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

fn c(rgb: Rgb) -> RGBColor {
    RGBColor(rgb.0, rgb.1, rgb.2)
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Renders the figure as an SVG document. `scale` multiplies every size.
pub fn to_svg(fig: &Figure, scale: f64) -> Result<String, String> {
    register_fonts();
    let (w, h) = scaled(fig.size(), scale);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (w, h)).into_drawing_area();
        render(fig, &root, scale)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// Renders the figure as RGB pixels (width, height, bytes).
#[cfg(not(target_arch = "wasm32"))]
pub fn to_rgb(fig: &Figure, scale: f64) -> Result<(u32, u32, Vec<u8>), String> {
    register_fonts();
    let (w, h) = scaled(fig.size(), scale);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        render(fig, &root, scale)?;
        root.present().map_err(err)?;
    }
    Ok((w, h, buf))
}

/// Renders the figure as PNG bytes.
#[cfg(not(target_arch = "wasm32"))]
pub fn to_png(fig: &Figure, scale: f64) -> Result<Vec<u8>, String> {
    let (w, h, rgb) = to_rgb(fig, scale)?;
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(err)?;
        writer.write_image_data(&rgb).map_err(err)?;
    }
    Ok(out)
}

fn scaled((w, h): (u32, u32), s: f64) -> (u32, u32) {
    (
        ((f64::from(w) * s).round() as u32).max(16),
        ((f64::from(h) * s).round() as u32).max(16),
    )
}

fn px(v: f64, s: f64) -> i32 {
    (v * s).round() as i32
}

fn font(size: f64, s: f64) -> TextStyle<'static> {
    (FONT, size * s).into_font().color(&BLACK)
}

/// Draws the figure onto any plotters drawing area.
pub fn render<DB: DrawingBackend>(fig: &Figure, root: &DrawingArea<DB, Shift>, s: f64) -> Res {
    root.fill(&WHITE).map_err(err)?;
    let body = if fig.title.is_empty() {
        root.clone()
    } else {
        let (top, body) = root.split_vertically(px(36.0, s));
        let (w, _) = top.dim_in_pixel();
        top.draw(&Text::new(
            fig.title.clone(),
            (w as i32 / 2, px(18.0, s)),
            font(18.0, s).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(err)?;
        body
    };
    let cols = fig.columns.max(1).min(fig.panels.len().max(1));
    let areas = body.split_evenly((fig.rows().max(1), cols));
    for (panel, area) in fig.panels.iter().zip(areas.iter()) {
        match panel {
            Panel::Plot(p) => draw_plot(p, area, s)?,
            Panel::Heatmap(h) => draw_heatmap(h, area, s)?,
            Panel::Table(t) => draw_table(t, area, s)?,
        }
    }
    Ok(())
}

fn tick_label(ticks: &Option<Vec<(f64, String)>>, v: f64, invert: bool) -> String {
    let v = if invert { -v } else { v };
    if let Some(t) = ticks {
        return t
            .iter()
            .find(|(x, _)| (x - v).abs() < 1e-6)
            .map(|(_, l)| l.clone())
            .unwrap_or_default();
    }
    fmt_num(v)
}

fn draw_plot<DB: DrawingBackend>(p: &PlotPanel, area: &DrawingArea<DB, Shift>, s: f64) -> Res {
    let ((x0, x1), (y0, y1)) = p.bounds(Axis::Left);
    let sign = if p.invert_x { -1.0 } else { 1.0 };
    let (xa, xb) = if p.invert_x { (-x1, -x0) } else { (x0, x1) };
    let has_right = p.series.iter().any(|s| s.axis == Axis::Right);
    let mut cb = ChartBuilder::on(area);
    cb.margin(px(8.0, s))
        .x_label_area_size(px(44.0, s))
        .y_label_area_size(px(56.0, s));
    if !p.title.is_empty() {
        cb.caption(p.title.clone(), font(15.0, s));
    }
    if has_right {
        cb.right_y_label_area_size(px(56.0, s));
    }
    let chart = cb.build_cartesian_2d(xa..xb, y0..y1).map_err(err)?;
    let ((_, _), (r0, r1)) = p.bounds(Axis::Right);
    let mut chart = chart.set_secondary_coord(xa..xb, r0..r1);
    let ticks = p.x_ticks.clone();
    let invert = p.invert_x;
    let x_fmt = move |v: &f64| tick_label(&ticks, *v, invert);
    let n_x_labels = p.x_ticks.as_ref().map_or(10, |t| t.len().clamp(2, 30));
    chart
        .configure_mesh()
        .x_desc(p.x_label.clone())
        .y_desc(p.y_label.clone())
        .label_style(font(12.0, s))
        .axis_desc_style(font(13.0, s))
        .x_labels(n_x_labels)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|v| fmt_num(*v))
        .bold_line_style(RGBColor(220, 220, 220).stroke_width(px(1.0, s).max(1) as u32))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    if has_right {
        chart
            .configure_secondary_axes()
            .y_desc(p.y2_label.clone().unwrap_or_default())
            .label_style(font(12.0, s))
            .axis_desc_style(font(13.0, s))
            .y_label_formatter(&|v| fmt_num(*v))
            .draw()
            .map_err(err)?;
    }
    let lw = |w: f32| (f64::from(w) * s).round().max(1.0) as u32;
    for series in &p.series {
        let col = c(series.color);
        let fill = col.mix(f64::from(series.fill_alpha));
        let right = series.axis == Axis::Right;
        // Every element goes through one closure per axis, so both coordinate systems share code.
        macro_rules! draw {
            ($elems:expr, $label:expr) => {{
                let name: &str = $label;
                if right {
                    let a = chart.draw_secondary_series($elems).map_err(err)?;
                    if !name.is_empty() {
                        a.label(name).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(3))
                        });
                    }
                } else {
                    let a = chart.draw_series($elems).map_err(err)?;
                    if !name.is_empty() {
                        a.label(name).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(3))
                        });
                    }
                }
            }};
        }
        match &series.kind {
            SeriesKind::Line {
                points,
                band,
                dashed,
                marker,
                width,
            } => {
                let pts = line_points(points, sign, |y| y);
                if let Some(band) = band {
                    let mut poly: Vec<(f64, f64)> =
                        band.iter().map(|(x, lo, _)| (sign * x, *lo)).collect();
                    poly.extend(band.iter().rev().map(|(x, _, hi)| (sign * x, *hi)));
                    draw!(std::iter::once(Polygon::new(poly, fill.filled())), "");
                }
                let style = col.stroke_width(lw(*width));
                if *dashed {
                    draw!(
                        DashedLineSeries::new(pts.clone(), px(6.0, s), px(4.0, s), style),
                        &series.name
                    );
                } else {
                    draw!(LineSeries::new(pts.clone(), style), &series.name);
                }
                let r = px(3.5, s).max(1);
                match marker {
                    Some(Marker::Circle) => {
                        draw!(pts.iter().map(|p| Circle::new(*p, r, col.filled())), "")
                    }
                    Some(Marker::Square) => {
                        draw!(
                            pts.iter().map(|p| EmptyElement::at(*p)
                                + Rectangle::new([(-r, -r), (r, r)], col.filled())),
                            ""
                        )
                    }
                    None => {}
                }
            }
            SeriesKind::HLine {
                y,
                band,
                dashed,
                width,
                label,
            } => {
                if let Some((lo, hi)) = band {
                    draw!(
                        std::iter::once(Rectangle::new([(xa, *lo), (xb, *hi)], fill.filled())),
                        ""
                    );
                }
                let style = col.stroke_width(lw(*width));
                let line = vec![(xa, *y), (xb, *y)];
                if *dashed {
                    draw!(
                        DashedLineSeries::new(line, px(6.0, s), px(4.0, s), style),
                        &series.name
                    );
                } else {
                    draw!(LineSeries::new(line, style), &series.name);
                }
                if let Some(label) = label {
                    let style = font(12.0, s)
                        .color(&col)
                        .pos(Pos::new(HPos::Right, VPos::Bottom));
                    draw!(
                        std::iter::once(Text::new(label.clone(), (xb, *y), style)),
                        ""
                    );
                }
            }
            SeriesKind::Bars { bars, width } => {
                draw!(
                    bars.iter().map(|b| {
                        let x = sign * b.x;
                        Rectangle::new(
                            [(x - width / 2.0, 0.0), (x + width / 2.0, b.height)],
                            fill.filled(),
                        )
                    }),
                    &series.name
                );
                let errs: Vec<_> = bars
                    .iter()
                    .filter_map(|b| Some((sign * b.x, b.height, b.err?)))
                    .collect();
                draw!(
                    errs.iter().map(|(x, h, e)| PathElement::new(
                        vec![(*x, h - e), (*x, h + e)],
                        BLACK.stroke_width(1)
                    )),
                    ""
                );
            }
            SeriesKind::Boxes { boxes, width } => {
                let half = width / 2.0;
                draw!(
                    boxes.iter().map(|b| {
                        let x = sign * b.x;
                        Rectangle::new(
                            [(x - half, b.stats.q1), (x + half, b.stats.q3)],
                            fill.filled(),
                        )
                    }),
                    &series.name
                );
                let stroke = col.stroke_width(lw(1.5));
                let lines: Vec<Vec<(f64, f64)>> = boxes
                    .iter()
                    .flat_map(|b| {
                        let (x, st) = (sign * b.x, &b.stats);
                        [
                            vec![
                                (x - half, st.q1),
                                (x + half, st.q1),
                                (x + half, st.q3),
                                (x - half, st.q3),
                                (x - half, st.q1),
                            ],
                            vec![(x - half, st.median), (x + half, st.median)],
                            vec![(x, st.q3), (x, st.whisker_high)],
                            vec![(x, st.q1), (x, st.whisker_low)],
                            vec![
                                (x - half / 2.0, st.whisker_high),
                                (x + half / 2.0, st.whisker_high),
                            ],
                            vec![
                                (x - half / 2.0, st.whisker_low),
                                (x + half / 2.0, st.whisker_low),
                            ],
                        ]
                    })
                    .collect();
                draw!(lines.into_iter().map(|l| PathElement::new(l, stroke)), "");
            }
        }
    }
    if p.series.iter().any(|s| !s.name.is_empty()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(font(11.0, s))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

fn draw_heatmap<DB: DrawingBackend>(
    h: &HeatmapPanel,
    area: &DrawingArea<DB, Shift>,
    s: f64,
) -> Res {
    let (w, ht) = area.dim_in_pixel();
    let at = |(x, y): (f64, f64)| (px(x, s), px(y, s));
    for shape in heatmap_shapes(h, f64::from(w) / s, f64::from(ht) / s) {
        match shape {
            Shape::Rect { min, max, color } => {
                area.draw(&Rectangle::new([at(min), at(max)], c(color).filled()))
            }
            Shape::Segment {
                from,
                to,
                width,
                color,
            } => area.draw(&PathElement::new(
                vec![at(from), at(to)],
                c(color).stroke_width(px(width, s).max(1) as u32),
            )),
            Shape::Text {
                text,
                at: pos,
                size,
                color,
                h,
                v,
                vertical,
            } => {
                let hpos = match h {
                    HAlign::Left => HPos::Left,
                    HAlign::Center => HPos::Center,
                    HAlign::Right => HPos::Right,
                };
                let vpos = match v {
                    VAlign::Top => VPos::Top,
                    VAlign::Center => VPos::Center,
                    VAlign::Bottom => VPos::Bottom,
                };
                let color = c(color.unwrap_or(theme::BLACK));
                let mut style = font(size, s).color(&color);
                if vertical {
                    style = style.transform(FontTransform::Rotate270);
                }
                area.draw(&Text::new(text, at(pos), style.pos(Pos::new(hpos, vpos))))
            }
        }
        .map_err(err)?;
    }
    Ok(())
}

fn draw_table<DB: DrawingBackend>(t: &TablePanel, area: &DrawingArea<DB, Shift>, s: f64) -> Res {
    let (w, _) = area.dim_in_pixel();
    let w = f64::from(w) / s;
    let top = if t.title.is_empty() { 8.0 } else { 30.0 };
    if !t.title.is_empty() {
        area.draw(&Text::new(
            t.title.clone(),
            (px(w / 2.0, s), px(15.0, s)),
            font(14.0, s).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(err)?;
    }
    let ncols = t.headers.len().max(1);
    let widths: Vec<f64> = (0..ncols)
        .map(|k| {
            let len = std::iter::once(&t.headers[k])
                .chain(t.rows.iter().filter_map(|r| r.get(k)))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(1);
            len as f64 * 6.6 + 14.0
        })
        .collect();
    let total: f64 = widths.iter().sum();
    let shrink = if total > w - 16.0 {
        (w - 16.0) / total
    } else {
        1.0
    };
    let row_h = 20.0;
    let mut x = 8.0;
    for (k, header) in t.headers.iter().enumerate() {
        area.draw(&Text::new(
            header.clone(),
            (px(x + 4.0, s), px(top + row_h / 2.0, s)),
            font(11.5 * shrink.max(0.6), s).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
        x += widths[k] * shrink;
    }
    let line = |y: f64| {
        PathElement::new(
            vec![
                (px(8.0, s), px(y, s)),
                (px(8.0 + total * shrink, s), px(y, s)),
            ],
            BLACK.stroke_width(1),
        )
    };
    area.draw(&line(top)).map_err(err)?;
    area.draw(&line(top + row_h)).map_err(err)?;
    for (i, row) in t.rows.iter().enumerate() {
        let y = top + row_h * (i as f64 + 1.5);
        let mut x = 8.0;
        for (k, cell) in row.iter().enumerate().take(ncols) {
            area.draw(&Text::new(
                cell.clone(),
                (px(x + 4.0, s), px(y, s)),
                font(11.0 * shrink.max(0.6), s).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(err)?;
            x += widths[k] * shrink;
        }
    }
    area.draw(&line(top + row_h * (t.rows.len() as f64 + 1.0)))
        .map_err(err)?;
    Ok(())
}
