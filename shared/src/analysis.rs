//! Vector analyses shared by the trainer (which writes their results) and the tests: cosine
//! similarity, cosine matrices, greedy axis removal (reference §6.7), stable rank (§7.4), and the
//! pair-layer relative-improvement maps (§6.5), and the box-plot statistics of the token-level
//! probability differences (§7.0).

/// Cosine similarity of two vectors; 0 when either is zero.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Row-wise cosines of two `[L, H]` matrices (given as rows).
pub fn rowwise_cosine(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| cosine(x, y)).collect()
}

/// The matrix `m[i][j] = cos(a_i, b_j)`.
pub fn cosine_matrix(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    a.iter()
        .map(|x| b.iter().map(|y| cosine(x, y)).collect())
        .collect()
}

/// Greedy axis removal (reference §6.7): starting from all H coordinates, repeatedly drop the
/// coordinate whose removal maximises the cosine of the remaining sub-vectors. Returns the cosine
/// with H, H−1, ..., 1 coordinates left (`out[k]` = cosine after removing k coordinates).
/// O(H²) using running sums, so H = 3584 is fine.
pub fn greedy_axis_removal(a: &[f64], b: &[f64]) -> Vec<f64> {
    let n = a.len().min(b.len());
    let mut alive = vec![true; n];
    let (mut dot, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        dot += a[i] * b[i];
        aa += a[i] * a[i];
        bb += b[i] * b[i];
    }
    let cos = |d: f64, x: f64, y: f64| {
        if x <= 0.0 || y <= 0.0 {
            0.0
        } else {
            d / (x.sqrt() * y.sqrt())
        }
    };
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    out.push(cos(dot, aa, bb));
    for _ in 1..n {
        let mut best: Option<(usize, f64)> = None;
        for i in (0..n).filter(|&i| alive[i]) {
            let c = cos(dot - a[i] * b[i], aa - a[i] * a[i], bb - b[i] * b[i]);
            if best.is_none_or(|(_, bc)| c > bc) {
                best = Some((i, c));
            }
        }
        let Some((i, c)) = best else { break };
        alive[i] = false;
        dot -= a[i] * b[i];
        aa -= a[i] * a[i];
        bb -= b[i] * b[i];
        out.push(c);
    }
    out
}

/// Stable rank `Σσ² / σ₁²` from singular values; 0 for none.
pub fn stable_rank(singular_values: &[f64]) -> f64 {
    let max = singular_values.iter().copied().fold(0.0f64, f64::max);
    if max == 0.0 {
        0.0
    } else {
        singular_values.iter().map(|s| s * s).sum::<f64>() / (max * max)
    }
}

/// Which relative-improvement map of reference §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relative {
    /// `(A[i,j] − d[j]) / (S − d[j])`.
    Prev,
    /// `(A[i,j] − d[i]) / (S − d[i])`.
    Next,
    /// `(A[i,j] − max(d[i], d[j])) / (S − max(d[i], d[j]))`.
    Max,
}

/// The relative-improvement map of an N×N grid `a` (None outside i ≤ j), with diagonal `d` and
/// the full-steering reference `s`. Cells whose anchor is missing or equals `s` are `None`.
pub fn relative_improvement(
    a: &[Vec<Option<f64>>],
    s: f64,
    which: Relative,
) -> Vec<Vec<Option<f64>>> {
    let n = a.len();
    let d: Vec<Option<f64>> = (0..n).map(|i| a[i].get(i).copied().flatten()).collect();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    let v = a[i].get(j).copied().flatten()?;
                    let anchor = match which {
                        Relative::Prev => d[j]?,
                        Relative::Next => d[i]?,
                        Relative::Max => d[i]?.max(d[j]?),
                    };
                    let den = s - anchor;
                    if den == 0.0 {
                        None
                    } else {
                        Some((v - anchor) / den)
                    }
                })
                .collect()
        })
        .collect()
}

/// The numbers of one box of a box plot, as matplotlib draws it: quartiles by linear
/// interpolation, whiskers at the furthest values within 1.5 × IQR of the box (reference §7.0).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BoxStats {
    /// Number of values.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// First quartile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q3: f64,
    /// Largest value.
    pub max: f64,
    /// Lower whisker: the smallest value ≥ q1 − 1.5 IQR.
    pub whisker_low: f64,
    /// Upper whisker: the largest value ≤ q3 + 1.5 IQR.
    pub whisker_high: f64,
}

impl BoxStats {
    /// The statistics of the finite values; `None` when there are none.
    pub fn from_values(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let quantile = |q: f64| {
            let pos = q * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        };
        let (q1, median, q3) = (quantile(0.25), quantile(0.5), quantile(0.75));
        let reach = 1.5 * (q3 - q1);
        let inside = v.iter().filter(|x| **x >= q1 - reach && **x <= q3 + reach);
        let (whisker_low, whisker_high) = inside
            .fold((f64::INFINITY, f64::NEG_INFINITY), |a, x| {
                (a.0.min(*x), a.1.max(*x))
            });
        Some(Self {
            count: v.len() as u64,
            mean: v.iter().sum::<f64>() / v.len() as f64,
            min: v[0],
            q1,
            median,
            q3,
            max: v[v.len() - 1],
            whisker_low,
            whisker_high,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 1.0 / 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        assert_eq!(
            cosine_matrix(&[vec![1.0, 0.0]], &[vec![0.0, 1.0], vec![2.0, 0.0]]),
            vec![vec![0.0, 1.0]]
        );
    }

    #[test]
    fn greedy_axis_removal_first_drops_the_disagreeing_axis() {
        // a = (1, 1, 1), b = (1, 1, −1): cos 1/3; dropping axis 2 gives 1.0, then stays 1.0
        let out = greedy_axis_removal(&[1.0, 1.0, 1.0], &[1.0, 1.0, -1.0]);
        assert_eq!(out.len(), 3);
        assert!((out[0] - 1.0 / 3.0).abs() < 1e-12);
        assert!((out[1] - 1.0).abs() < 1e-12 && (out[2] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn greedy_axis_removal_matches_brute_force_on_a_small_case() {
        let a = [0.3, -1.2, 0.7, 2.0, -0.1];
        let b = [0.5, 0.4, -0.9, 1.5, 0.2];
        let out = greedy_axis_removal(&a, &b);
        // brute force the first step
        let best = (0..5)
            .map(|k| {
                let (x, y): (Vec<f64>, Vec<f64>) =
                    (0..5).filter(|&i| i != k).map(|i| (a[i], b[i])).unzip();
                cosine(&x, &y)
            })
            .fold(f64::MIN, f64::max);
        assert!((out[1] - best).abs() < 1e-12);
        assert!(
            out.windows(2).all(|w| w[1] >= w[0] - 1e-12),
            "greedy removal never lowers the cosine here: {out:?}"
        );
    }

    #[test]
    fn relative_maps_match_hand_computed_cells() {
        // d = [10, 20], A[0][1] = 30, S = 40
        let a = vec![vec![Some(10.0), Some(30.0)], vec![None, Some(20.0)]];
        let prev = relative_improvement(&a, 40.0, Relative::Prev);
        let next = relative_improvement(&a, 40.0, Relative::Next);
        let max = relative_improvement(&a, 40.0, Relative::Max);
        assert_eq!(prev[0][1], Some(0.5)); // (30−20)/(40−20)
        assert_eq!(next[0][1], Some(20.0 / 30.0)); // (30−10)/(40−10)
        assert_eq!(max[0][1], Some(0.5));
        assert_eq!(prev[1][0], None);
        assert_eq!(prev[0][0], Some(0.0));
        assert_eq!(stable_rank(&[2.0, 1.0]), 1.25);
    }

    #[test]
    fn box_stats_follow_matplotlib_quartiles_and_whiskers() {
        // 1..=8 and an outlier 100: q1 = 3, median = 5, q3 = 7 (linear interpolation over 9
        // values), IQR 4, so the upper whisker stops at 8 and 100 is a flier
        let mut values: Vec<f64> = (1..=8).map(f64::from).collect();
        values.push(100.0);
        values.push(f64::NAN);
        let b = BoxStats::from_values(&values).unwrap();
        assert_eq!(b.count, 9);
        assert_eq!((b.q1, b.median, b.q3), (3.0, 5.0, 7.0));
        assert_eq!((b.whisker_low, b.whisker_high), (1.0, 8.0));
        assert_eq!((b.min, b.max), (1.0, 100.0));
        assert!((b.mean - 136.0 / 9.0).abs() < 1e-12);
        assert_eq!(BoxStats::from_values(&[f64::NAN]), None);
    }
}
