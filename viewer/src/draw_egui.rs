//! Draws a [`Figure`] on screen: plot panels with egui_plot (pan, zoom, hover values, a legend
//! whose entries toggle series), heatmaps and tables with egui's painter and grid.

use egui::{Color32, FontId, Pos2, Rect, Sense, Stroke, Vec2};
use egui_plot::{
    AxisHints, Bar as PBar, BarChart, BoxElem, BoxPlot, BoxSpread, FilledArea, HLine, HPlacement,
    Legend, Line, LineStyle, MarkerShape, Plot, PlotPoints, Points, Polygon,
};

use crate::chart::{
    Axis, Figure, HAlign, HeatmapPanel, Marker, Panel, PlotPanel, SeriesKind, Shape, TablePanel,
    VAlign, fmt_num, heatmap_layout, heatmap_shapes, line_points,
};
use crate::theme::Rgb;

fn col(rgb: Rgb) -> Color32 {
    rgb.to_egui()
}

fn col_alpha(rgb: Rgb, alpha: f32) -> Color32 {
    Color32::from_rgba_unmultiplied(rgb.0, rgb.1, rgb.2, (alpha.clamp(0.0, 1.0) * 255.0) as u8)
}

/// Draws the whole figure into the available width; `id` keeps plot memories apart.
pub fn show(ui: &mut egui::Ui, fig: &Figure, id: &str) {
    if !fig.title.is_empty() {
        ui.heading(&fig.title);
    }
    if let [Panel::Table(t)] = fig.panels.as_slice() {
        table(ui, t, id);
        for note in &fig.notes {
            ui.colored_label(ui.visuals().warn_fg_color, format!("⚠ {note}"));
        }
        return;
    }
    let cols = fig.columns.max(1).min(fig.panels.len().max(1));
    let width = ui.available_width();
    let panel_w = (width / cols as f32 - 8.0).max(200.0);
    let aspect = fig.panel_size.1 as f32 / fig.panel_size.0.max(1) as f32;
    let panel_h = (panel_w * aspect).clamp(180.0, 900.0);
    for (row_idx, row) in fig.panels.chunks(cols).enumerate() {
        ui.horizontal_top(|ui| {
            for (k, panel) in row.iter().enumerate() {
                let pid = format!("{id}/{}", row_idx * cols + k);
                ui.allocate_ui(Vec2::new(panel_w, panel_h), |ui| {
                    ui.vertical(|ui| match panel {
                        Panel::Plot(p) => plot(ui, p, &pid, panel_w, panel_h),
                        Panel::Heatmap(h) => heatmap(ui, h, panel_w, panel_h),
                        Panel::Table(t) => table(ui, t, &pid),
                    })
                });
            }
        });
    }
    for note in &fig.notes {
        ui.colored_label(ui.visuals().warn_fg_color, format!("⚠ {note}"));
    }
}

fn plot(ui: &mut egui::Ui, p: &PlotPanel, id: &str, w: f32, h: f32) {
    if !p.title.is_empty() {
        ui.label(egui::RichText::new(&p.title).strong());
    }
    let ((x0, x1), (l0, l1)) = p.bounds(Axis::Left);
    let (_, (r0, r1)) = p.bounds(Axis::Right);
    let has_right = p.series.iter().any(|s| s.axis == Axis::Right);
    // Right-axis values are mapped into left coordinates; the right axis labels map back.
    let to_left = move |y: f64| {
        if r1 > r0 {
            l0 + (y - r0) / (r1 - r0) * (l1 - l0)
        } else {
            y
        }
    };
    let to_right = move |y: f64| {
        if l1 > l0 {
            r0 + (y - l0) / (l1 - l0) * (r1 - r0)
        } else {
            y
        }
    };
    let mut hover: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for s in &p.series {
        if let SeriesKind::Line { points, band, .. } = &s.kind {
            let texts = points
                .iter()
                .enumerate()
                .map(|(i, (x, y))| {
                    let xl = p
                        .x_ticks
                        .as_ref()
                        .and_then(|t| t.iter().find(|(v, _)| v == x).map(|(_, l)| l.clone()))
                        .unwrap_or_else(|| fmt_num(*x));
                    match band.as_ref().and_then(|b| b.get(i)) {
                        Some((_, lo, hi)) => format!(
                            "{}\n{}: {}\n{:.2} ± {:.2}",
                            s.name,
                            p.x_label,
                            xl,
                            y,
                            (hi - lo) / 2.0
                        ),
                        None => format!("{}\n{}: {}\n{:.3}", s.name, p.x_label, xl, y),
                    }
                })
                .collect();
            hover.insert(s.name.clone(), texts);
        }
    }
    let ticks = p.x_ticks.clone();
    let mut plot = Plot::new(id)
        .width(w)
        .height(h - 24.0)
        .legend(Legend::default())
        .x_axis_label(p.x_label.clone())
        .y_axis_label(p.y_label.clone())
        .include_x(x0)
        .include_x(x1)
        .include_y(l0)
        .include_y(l1)
        .invert_x(p.invert_x)
        .label_formatter(move |hp: &egui_plot::HoverPosition<'_>| match hp {
            egui_plot::HoverPosition::NearDataPoint {
                plot_name,
                index,
                position,
            } => hover
                .get(*plot_name)
                .and_then(|v| v.get(*index).cloned())
                .or_else(|| Some(format!("{plot_name}\n{:.3}", position.y))),
            egui_plot::HoverPosition::Elsewhere { .. } => None,
        });
    if let Some(t) = ticks {
        plot = plot.x_axis_formatter(move |mark, _| {
            t.iter()
                .find(|(v, _)| (v - mark.value).abs() < 1e-6)
                .map(|(_, l)| l.clone())
                .unwrap_or_default()
        });
    }
    if has_right {
        let label = p.y2_label.clone().unwrap_or_default();
        plot = plot.custom_y_axes(vec![
            AxisHints::new_y().label(p.y_label.clone()),
            AxisHints::new_y()
                .label(label)
                .placement(HPlacement::Right)
                .formatter(move |mark, _| fmt_num(to_right(mark.value))),
        ]);
    }
    let series = p.series.clone();
    let tick_labels = p.x_ticks.clone().unwrap_or_default();
    // error bars in the text colour (black on paper, as the file export draws them)
    let foreground = ui.visuals().text_color();
    // colours that would vanish on the plot's background (the paper's black baselines on a dark
    // screen) are drawn in the text colour; the file export keeps them
    let background = Rgb::from_egui(ui.visuals().extreme_bg_color);
    let ink = move |c: Rgb| c.readable_on(background, Rgb::from_egui(foreground));
    let ticks_of = move |x: f64| {
        tick_labels
            .iter()
            .find(|(v, _)| (v - x).abs() < 1e-6)
            .map_or_else(|| fmt_num(x), |(_, l)| l.clone())
    };
    plot.show(ui, move |pu| {
        let (bx0, bx1) = (x0, x1);
        for s in &series {
            let map_y = |y: f64| if s.axis == Axis::Right { to_left(y) } else { y };
            let color = ink(s.color);
            match &s.kind {
                SeriesKind::Line {
                    points,
                    band,
                    dashed,
                    marker,
                    width,
                } => {
                    let pts: Vec<[f64; 2]> = line_points(points, 1.0, map_y)
                        .into_iter()
                        .map(|(x, y)| [x, y])
                        .collect();
                    let style = if *dashed {
                        LineStyle::dashed_loose()
                    } else {
                        LineStyle::Solid
                    };
                    pu.line(
                        Line::new(s.name.clone(), PlotPoints::new(pts.clone()))
                            .color(col(color))
                            .width(*width)
                            .style(style),
                    );
                    // bands have no name: the legend shows one entry per series, in its colour (egui_plot greys
                    // an entry whose items differ in colour)
                    if let Some(band) = band {
                        // a band is not convex: FilledArea fills it segment by segment
                        let xs: Vec<f64> = band.iter().map(|b| b.0).collect();
                        let lo: Vec<f64> = band.iter().map(|b| map_y(b.1)).collect();
                        let hi: Vec<f64> = band.iter().map(|b| map_y(b.2)).collect();
                        pu.add(
                            FilledArea::new("", &xs, &lo, &hi)
                                .fill_color(col_alpha(color, s.fill_alpha))
                                .allow_hover(false),
                        );
                    }
                    if let Some(m) = marker {
                        let shape = match m {
                            Marker::Circle => MarkerShape::Circle,
                            Marker::Square => MarkerShape::Square,
                        };
                        pu.points(
                            Points::new(s.name.clone(), PlotPoints::new(pts))
                                .shape(shape)
                                .radius(3.0)
                                .color(col(color))
                                .filled(true),
                        );
                    }
                }
                SeriesKind::HLine {
                    y,
                    band,
                    dashed,
                    width,
                    label,
                } => {
                    let style = if *dashed {
                        LineStyle::dashed_loose()
                    } else {
                        LineStyle::Solid
                    };
                    pu.hline(
                        HLine::new(s.name.clone(), map_y(*y))
                            .color(col(color))
                            .width(*width)
                            .style(style),
                    );
                    if let Some((lo, hi)) = band {
                        let poly = vec![
                            [bx0, map_y(*lo)],
                            [bx1, map_y(*lo)],
                            [bx1, map_y(*hi)],
                            [bx0, map_y(*hi)],
                        ];
                        pu.polygon(
                            Polygon::new("", PlotPoints::new(poly))
                                .fill_color(col_alpha(color, s.fill_alpha))
                                .stroke(Stroke::NONE)
                                .allow_hover(false),
                        );
                    }
                    if let Some(label) = label {
                        let text = egui::RichText::new(label.clone()).color(col(color));
                        pu.text(
                            egui_plot::Text::new(
                                s.name.clone(),
                                egui_plot::PlotPoint::new(bx1, map_y(*y)),
                                text,
                            )
                            .anchor(egui::Align2::RIGHT_BOTTOM),
                        );
                    }
                }
                SeriesKind::Bars { bars, width } => {
                    let bs: Vec<PBar> = bars
                        .iter()
                        .map(|b| {
                            let name = match b.err {
                                Some(e) => format!("{}: {:.3} ± {:.3}", ticks_of(b.x), b.height, e),
                                None => format!("{}: {:.3}", ticks_of(b.x), b.height),
                            };
                            PBar::new(b.x, map_y(b.height) - map_y(0.0))
                                .base_offset(map_y(0.0))
                                .width(*width)
                                .name(name)
                        })
                        .collect();
                    pu.bar_chart(
                        BarChart::new(s.name.clone(), bs).color(col_alpha(color, s.fill_alpha)),
                    );
                    for b in bars {
                        let Some(e) = b.err else { continue };
                        let ends = vec![[b.x, map_y(b.height - e)], [b.x, map_y(b.height + e)]];
                        pu.line(
                            Line::new("", PlotPoints::new(ends))
                                .color(foreground)
                                .width(1.0)
                                .allow_hover(false),
                        );
                    }
                }
                SeriesKind::Boxes { boxes, width } => {
                    let elems = boxes
                        .iter()
                        .map(|b| {
                            let st = &b.stats;
                            let spread = BoxSpread::new(
                                map_y(st.whisker_low),
                                map_y(st.q1),
                                map_y(st.median),
                                map_y(st.q3),
                                map_y(st.whisker_high),
                            );
                            let label = ticks_of(b.x);
                            BoxElem::new(b.x, spread)
                                .box_width(*width)
                                .whisker_width(*width / 2.0)
                                .fill(col_alpha(color, s.fill_alpha))
                                .stroke(Stroke::new(1.5, col(color)))
                                .name(format!(
                                    "{label}\nn = {}, mean {:.4}\nmedian {:.4}, max {:.4}",
                                    st.count, st.mean, st.median, st.max
                                ))
                        })
                        .collect();
                    pu.box_plot(BoxPlot::new(s.name.clone(), elems).color(col(color)));
                }
            }
        }
    });
}

fn heatmap(ui: &mut egui::Ui, h: &HeatmapPanel, w: f32, ht: f32) {
    let (response, painter) = ui.allocate_painter(Vec2::new(w, ht), Sense::hover());
    let origin = response.rect.min;
    let at = |(x, y): (f64, f64)| Pos2::new(origin.x + x as f32, origin.y + y as f32);
    let foreground = ui.visuals().text_color();
    painter.rect_filled(response.rect, 0.0, ui.visuals().extreme_bg_color);
    for shape in heatmap_shapes(h, f64::from(w), f64::from(ht)) {
        match shape {
            Shape::Rect { min, max, color } => {
                painter.rect_filled(Rect::from_min_max(at(min), at(max)), 0.0, col(color));
            }
            Shape::Segment {
                from,
                to,
                width,
                color,
            } => {
                painter.line_segment([at(from), at(to)], Stroke::new(width as f32, col(color)));
            }
            Shape::Text {
                text,
                at: pos,
                size,
                color,
                h: along,
                v: across,
                vertical,
            } => {
                let color = color.map_or(foreground, col);
                let galley = painter.layout_no_wrap(text, FontId::proportional(size as f32), color);
                let (tw, th) = (galley.size().x, galley.size().y);
                let along = match along {
                    HAlign::Left => 0.0,
                    HAlign::Center => 0.5,
                    HAlign::Right => 1.0,
                };
                let across = match across {
                    VAlign::Top => 0.0,
                    VAlign::Center => 0.5,
                    VAlign::Bottom => 1.0,
                };
                let anchor = at(pos);
                // the galley's top-left corner; a vertical text is turned about that corner
                let (corner, angle) = if vertical {
                    let c = anchor + Vec2::new(-across * th, along * tw);
                    (c, -std::f32::consts::FRAC_PI_2)
                } else {
                    (anchor - Vec2::new(along * tw, across * th), 0.0)
                };
                painter.add(egui::epaint::TextShape::new(corner, galley, color).with_angle(angle));
            }
        }
    }
    let layout = heatmap_layout(h, f64::from(w), f64::from(ht));
    let hovered = response.hover_pos().and_then(|p| {
        let local = p - origin;
        layout.cell_at(h, f64::from(local.x), f64::from(local.y))
    });
    if let Some((r, c)) = hovered {
        let row = h.row_labels.get(r).cloned().unwrap_or_default();
        let colname = h.col_labels.get(c).cloned().unwrap_or_default();
        let value = match h.values[r][c] {
            Some(v) => h
                .cell_text
                .get(r)
                .and_then(|t| t.get(c))
                .filter(|t| !t.is_empty())
                .cloned()
                .unwrap_or_else(|| format!("{v:.4}")),
            None => "no data".into(),
        };
        response.on_hover_text(format!(
            "{}: {row}\n{}: {colname}\n{value}",
            h.y_label, h.x_label
        ));
    }
}

fn table(ui: &mut egui::Ui, t: &TablePanel, id: &str) {
    if !t.title.is_empty() {
        ui.label(egui::RichText::new(&t.title).strong());
    }
    egui::ScrollArea::horizontal().id_salt(id).show(ui, |ui| {
        egui::Grid::new(id)
            .striped(true)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                for h in &t.headers {
                    ui.label(egui::RichText::new(h).strong());
                }
                ui.end_row();
                for row in &t.rows {
                    for cell in row {
                        ui.label(cell);
                    }
                    ui.end_row();
                }
            });
    });
}

/// Encodes an egui screenshot (RGBA) as PNG bytes.
pub fn encode_png(image: &egui::ColorImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, image.size[0] as u32, image.size[1] as u32);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| e.to_string())?;
        writer
            .write_image_data(image.as_raw())
            .map_err(|e| e.to_string())?;
    }
    Ok(out)
}
