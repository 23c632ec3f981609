//! Small statistics used everywhere: mean, population std (accuracies), n−1 std (lengths).

/// The arithmetic mean; `None` for an empty slice.
pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}

/// Population standard deviation (divisor n, numpy's default), used for accuracies (reference §6.0).
pub fn std_population(xs: &[f64]) -> Option<f64> {
    let m = mean(xs)?;
    Some((xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64).sqrt())
}

/// Sample standard deviation (divisor n−1), 0 for fewer than two values, used for lengths
/// (reference §6.0, §13.4 item 39).
pub fn std_sample(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// A mean with its spread over eval seeds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeanStd {
    /// The mean over seeds.
    pub mean: f64,
    /// The standard deviation over seeds.
    pub std: f64,
    /// How many seeds went in.
    pub n: usize,
}

impl MeanStd {
    /// Mean and population std of per-seed values; `None` when there are none.
    pub fn population(xs: &[f64]) -> Option<Self> {
        Some(Self {
            mean: mean(xs)?,
            std: std_population(xs)?,
            n: xs.len(),
        })
    }

    /// Mean and n−1 std of per-seed values, NaNs ignored; `None` when no finite value is left.
    pub fn sample_nan(xs: &[f64]) -> Option<Self> {
        let finite: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        Some(Self {
            mean: mean(&finite)?,
            std: std_sample(&finite),
            n: finite.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_and_sample_std_match_hand_computed_values() {
        // values 2, 4, 4, 4, 5, 5, 7, 9: mean 5, population variance 4, sample variance 32/7
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&xs), Some(5.0));
        assert_eq!(std_population(&xs), Some(2.0));
        assert!((std_sample(&xs) - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(std_sample(&[3.0]), 0.0);
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn nan_values_are_ignored_by_the_length_statistics() {
        let m = MeanStd::sample_nan(&[1.0, f64::NAN, 3.0]).unwrap();
        assert_eq!((m.mean, m.n), (2.0, 2));
        assert!(MeanStd::sample_nan(&[f64::NAN]).is_none());
    }
}
