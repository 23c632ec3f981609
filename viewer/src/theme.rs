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

    /// The colour part of an egui colour (its alpha dropped).
    pub fn from_egui(c: egui::Color32) -> Self {
        Self(c.r(), c.g(), c.b())
    }

    /// Perceived brightness, 0 (black) to 255 (white): ITU-R BT.601 luma.
    pub fn luma(self) -> f64 {
        0.299 * f64::from(self.0) + 0.587 * f64::from(self.1) + 0.114 * f64::from(self.2)
    }

    /// This colour, or `fallback` where it would hardly show on `background` (lumas closer than
    /// [`MIN_CONTRAST`]): the paper's black baselines drawn on a dark screen.
    pub fn readable_on(self, background: Rgb, fallback: Rgb) -> Rgb {
        if (self.luma() - background.luma()).abs() < MIN_CONTRAST {
            fallback
        } else {
            self
        }
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

/// The least luma difference between a stroke and its background for the stroke to show
/// ([`Rgb::readable_on`]); the darkest colour drawn on screen, the dark grey baseline (85), stays.
pub const MIN_CONTRAST: f64 = 48.0;

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
        if background.luma() > 140.0 {
            BLACK
        } else {
            WHITE
        }
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

    #[test]
    fn black_on_a_dark_background_becomes_the_fallback_and_other_colours_stay() {
        // egui's dark theme: plot background grey 10, text grey 140
        let (dark, text) = (Rgb(10, 10, 10), Rgb(140, 140, 140));
        assert_eq!(BLACK.readable_on(dark, text), text);
        assert_eq!(Rgb(30, 30, 30).readable_on(dark, text), text);
        for c in [ORANGE, BLUE, GREY, C0, C1]
            .into_iter()
            .chain(BASELINES)
            .chain(SERIES)
        {
            assert_eq!(c.readable_on(dark, text), c, "{}", c.to_hex());
        }
        // on paper, black stays black and white would vanish
        assert_eq!(BLACK.readable_on(WHITE, BLACK), BLACK);
        assert_eq!(WHITE.readable_on(WHITE, BLACK), BLACK);
    }
}
