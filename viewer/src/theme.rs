//! Every colour the figures use, in one place (the reference's palette, §6.0–§6.7).

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// Parses `#RRGGBB` at compile time.
    pub const fn hex(v: u32) -> Self {
        Self((v >> 16) as u8, (v >> 8) as u8, v as u8)
    }

    /// As an egui colour.
    pub fn to_egui(self) -> egui::Color32 {
        egui::Color32::from_rgb(self.0, self.1, self.2)
    }

    /// Linear interpolation towards `other` (t in [0, 1]).
    pub fn lerp(self, other: Rgb, t: f64) -> Rgb {
        let t = t.clamp(0.0, 1.0);
        let m = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
        Rgb(m(self.0, other.0), m(self.1, other.1), m(self.2, other.2))
    }

    /// `#rrggbb`.
    pub fn to_hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// The paper's orange (main curves, `#F28E2B`).
pub const ORANGE: Rgb = Rgb::hex(0xF28E2B);
/// The paper's blue (`#56B4E9`).
pub const BLUE: Rgb = Rgb::hex(0x56B4E9);
/// Grey (`#999999`).
pub const GREY: Rgb = Rgb::hex(0x999999);
/// Black, for baselines in paper figures.
pub const BLACK: Rgb = Rgb(0, 0, 0);
/// White.
pub const WHITE: Rgb = Rgb(255, 255, 255);
/// Matplotlib's C0 blue.
pub const C0: Rgb = Rgb::hex(0x1F77B4);
/// Matplotlib's C1 orange (the perf-diff bars of the seed-alignment figure).
pub const C1: Rgb = Rgb::hex(0xFF7F0E);

/// Baseline colours of the reference (`COLORS = [red, green, purple, orange, brown, yellow]`), with
/// dark grey instead of orange, which is the main curve's colour here.
pub const BASELINES: [Rgb; 6] = [
    Rgb(214, 39, 40),
    Rgb(44, 160, 44),
    Rgb(148, 103, 189),
    Rgb(85, 85, 85),
    Rgb(140, 86, 75),
    Rgb(188, 189, 34),
];

/// Series colours for several runs/seeds (matplotlib's tab10).
pub const SERIES: [Rgb; 10] = [
    Rgb::hex(0x1F77B4),
    Rgb::hex(0xFF7F0E),
    Rgb::hex(0x2CA02C),
    Rgb::hex(0xD62728),
    Rgb::hex(0x9467BD),
    Rgb::hex(0x8C564B),
    Rgb::hex(0xE377C2),
    Rgb::hex(0x7F7F7F),
    Rgb::hex(0xBCBD22),
    Rgb::hex(0x17BECF),
];

/// The i-th series colour (cycling).
pub fn series(i: usize) -> Rgb {
    SERIES[i % SERIES.len()]
}

/// The i-th baseline colour (cycling).
pub fn baseline(i: usize) -> Rgb {
    BASELINES[i % BASELINES.len()]
}

/// A colour map for heatmaps.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Colormap {
    /// Sequential: the lower half of seaborn `YlOrBr` (pair-layer grid, §6.5).
    YlOrBrLower,
    /// Sequential: matplotlib's default `viridis` (exchange heatmap, §6.2).
    Viridis,
    /// Diverging blue–white–orange with the centre at `center` (relative-improvement maps, §6.5).
    BlueWhiteOrange {
        /// The value drawn white.
        center: f64,
    },
    /// Diverging seaborn `vlag`-like blue–white–red (cosine matrices).
    Vlag {
        /// The value drawn white.
        center: f64,
    },
}

const YLORBR_LOWER: [Rgb; 5] = [
    Rgb::hex(0xFFFFE5),
    Rgb::hex(0xFFF7BC),
    Rgb::hex(0xFEE391),
    Rgb::hex(0xFEC44F),
    Rgb::hex(0xFE9929),
];
const VIRIDIS: [Rgb; 5] = [
    Rgb::hex(0x440154),
    Rgb::hex(0x3B528B),
    Rgb::hex(0x21918C),
    Rgb::hex(0x5EC962),
    Rgb::hex(0xFDE725),
];

fn ramp(stops: &[Rgb], t: f64) -> Rgb {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    stops[i].lerp(stops[i + 1], x - i as f64)
}

impl Colormap {
    /// The colour of `v` for the range `[vmin, vmax]` (a two-slope norm for diverging maps, like
    /// matplotlib's `TwoSlopeNorm`).
    pub fn color(self, v: f64, vmin: f64, vmax: f64) -> Rgb {
        let lin = |v: f64, a: f64, b: f64| if b > a { (v - a) / (b - a) } else { 0.5 };
        match self {
            Colormap::YlOrBrLower => ramp(&YLORBR_LOWER, lin(v, vmin, vmax)),
            Colormap::Viridis => ramp(&VIRIDIS, lin(v, vmin, vmax)),
            Colormap::BlueWhiteOrange { center } => diverging(BLUE, ORANGE, v, vmin, center, vmax),
            Colormap::Vlag { center } => diverging(
                Rgb::hex(0x2369BD),
                Rgb::hex(0xA9373B),
                v,
                vmin,
                center,
                vmax,
            ),
        }
    }

    /// Black or white text, whichever reads better on `background`.
    pub fn text_on(background: Rgb) -> Rgb {
        let l = 0.299 * f64::from(background.0)
            + 0.587 * f64::from(background.1)
            + 0.114 * f64::from(background.2);
        if l > 140.0 { BLACK } else { WHITE }
    }
}

fn diverging(low: Rgb, high: Rgb, v: f64, vmin: f64, center: f64, vmax: f64) -> Rgb {
    if !v.is_finite() {
        return WHITE;
    }
    if v < center {
        let t = if center > vmin {
            (center - v) / (center - vmin)
        } else {
            1.0
        };
        WHITE.lerp(low, t)
    } else {
        let t = if vmax > center {
            (v - center) / (vmax - center)
        } else {
            1.0
        };
        WHITE.lerp(high, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_map_is_white_at_the_centre_and_saturated_at_the_ends() {
        let m = Colormap::BlueWhiteOrange { center: 0.0 };
        assert_eq!(m.color(0.0, -2.0, 1.0), WHITE);
        assert_eq!(m.color(1.0, -2.0, 1.0), ORANGE);
        assert_eq!(m.color(-2.0, -2.0, 1.0), BLUE);
        assert_eq!(m.color(-1.0, -2.0, 1.0), WHITE.lerp(BLUE, 0.5));
        assert_eq!(Colormap::Viridis.color(0.0, 0.0, 1.0), VIRIDIS[0]);
        assert_eq!(Colormap::Viridis.color(1.0, 0.0, 1.0), VIRIDIS[4]);
    }
}
